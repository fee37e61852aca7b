"""What a policy author can make the operator send, and what comes back to them.

Issue 12, finding 1: ``bearerTokenSecretRef`` could name any Secret of the namespace (a database
password went out as a bearer token), ``#`` in the URL chose the path the token went to, the body
of a 400/422 answer (any text the server chose) was copied into the condition and Event, and
``Credentials`` printed its token in a repr.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pathlib

import pytest
from kubernetes import client

from controller.clients.credentials import read_credentials
from controller.clients.kube import Kube, load_configuration
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec, SecretKeyRef
from controller.errors import SpecError
from controller.reconcile.spec import parse_prometheus
from tests.harness.faults import Answer, Behaviour, FaultyPrometheus, Garbage, Refuse

REPO = pathlib.Path(__file__).resolve().parent.parent
LEAK = "LEAKED-FROM-THE-RESPONSE-BODY"


def test_credentials_never_print_their_token() -> None:
    credentials = Credentials(bearer_token="s3cr3t-t0ken", ca_pem="-----BEGIN CERTIFICATE-----")
    assert "s3cr3t-t0ken" not in repr(credentials)
    assert "s3cr3t-t0ken" not in str(credentials)


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.monitoring.svc:9090/#",
        "http://prometheus.monitoring.svc:9090/admin?x=",
        "http://user:password@prometheus.monitoring.svc:9090",
        "http://prometheus.monitoring.svc:9090/ x",
    ],
    ids=["fragment", "query", "userinfo", "space"],
)
def test_the_url_cannot_carry_a_path_of_its_own_choosing(url: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_prometheus({"url": url})
    assert caught.value.reason == "InvalidPrometheus"


async def test_the_api_path_is_always_the_query_path() -> None:
    with FaultyPrometheus(Answer(1.0)) as server:
        pool = PrometheusPool()
        with contextlib.suppress(MetricError):  # refusing the URL is as good as querying the right path
            await pool.query(PrometheusSpec(url=f"{server.url}/private/flag#"), Credentials(), "up")
        assert {r.path for r in server.requests} <= {"/private/flag/api/v1/query"}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Refuse(400, "bad_data", LEAK), id="400"),
        pytest.param(Refuse(422, "execution", LEAK), id="422"),
        pytest.param(Refuse(503, "unavailable", LEAK), id="503"),
        pytest.param(Refuse(403, LEAK, LEAK), id="403-error-type-is-free-text"),
        pytest.param(Garbage(LEAK.encode(), "text/plain"), id="not-json"),
        pytest.param(
            Garbage(
                json.dumps({"status": "success", "data": {"result": [{"value": LEAK}]}}).encode(), "application/json"
            ),
            id="wrong-shape",
        ),
        pytest.param(
            Garbage(
                json.dumps(
                    {"status": "success", "data": {"result": [{"metric": {"x": LEAK}}, {"metric": {"y": LEAK}}]}}
                ).encode(),
                "application/json",
            ),
            id="two-series-labels",
        ),
    ],
)
async def test_no_response_body_reaches_the_error(answer: Behaviour) -> None:
    with FaultyPrometheus(answer) as server:
        pool = PrometheusPool()
        with pytest.raises(MetricError) as caught:
            await pool.query(PrometheusSpec(url=server.url, timeout_s=2.0), Credentials(), "sum(up)")
    error = caught.value
    assert LEAK not in error.message and LEAK not in str(error)
    chained = error.__cause__ or error.__context__
    assert chained is None or LEAK not in str(chained), "a logged traceback would print the chained exception"


async def test_a_rejected_query_says_the_status_and_prometheus_error_type() -> None:
    with FaultyPrometheus(Refuse(400, "bad_data", LEAK)) as server:
        pool = PrometheusPool()
        with pytest.raises(MetricError) as caught:
            await pool.query(PrometheusSpec(url=server.url, timeout_s=2.0), Credentials(), "sum(rate(x[1m])")
    assert (caught.value.reason, caught.value.rejected) == ("QueryRejected", True)
    assert "400" in caught.value.message and "bad_data" in caught.value.message


def secret(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> client.V1Secret:
    encoded: dict[str, bytes | str] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name, labels=labels), data=encoded)


async def test_a_secret_that_did_not_opt_in_is_never_credentials(
    kube: client.ApiClient, kubeconfig: pathlib.Path, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(namespace, secret("database", {"password": "hunter2"}))
    core.create_namespaced_secret(
        namespace, secret("prometheus", {"token": "t0ken"}, {"infercast.io/prometheus-credentials": "true"})
    )

    def spec(name: str, key: str) -> PrometheusSpec:
        return PrometheusSpec(url="http://prometheus.monitoring.svc:9090", bearer_token=SecretKeyRef(name, key))

    async with Kube(load_configuration(str(kubeconfig))) as operator_kube:
        with pytest.raises(SpecError) as caught:
            await read_credentials(operator_kube, namespace, spec("database", "password"))
        assert caught.value.reason == "SecretNotOptedIn"
        assert "hunter2" not in caught.value.message
        assert "infercast.io/prometheus-credentials" in caught.value.message, "says how to opt in"
        credentials = await read_credentials(operator_kube, namespace, spec("prometheus", "token"))
    assert credentials.bearer_token == "t0ken"
