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
import os
import pathlib
import time
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.cli import main
from controller.clients.credentials import read_credentials
from controller.clients.kube import Kube, load_api_client
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec, SecretKeyRef
from controller.clients.tenancy import PrometheusAccess, UrlPattern, parse_access
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
    operator_kube = Kube(load_api_client(str(kubeconfig)))

    def spec(name: str, key: str) -> PrometheusSpec:
        return PrometheusSpec(url="http://prometheus.monitoring.svc:9090", bearer_token=SecretKeyRef(name, key))

    with pytest.raises(SpecError) as caught:
        await read_credentials(operator_kube, namespace, spec("database", "password"))
    assert caught.value.reason == "SecretNotOptedIn"
    assert "hunter2" not in caught.value.message
    assert "infercast.io/prometheus-credentials" in caught.value.message, "says how to opt in"
    credentials = await read_credentials(operator_kube, namespace, spec("prometheus", "token"))
    assert credentials.bearer_token == "t0ken"


# --- The admin's rules: allowed URLs, endpoints, the config file -------------------------------------------------

DEFAULTS = PrometheusAccess()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://prometheus-operated.monitoring.svc:9090", True),
        ("https://thanos-querier.monitoring.svc.cluster.local:9091/prometheus", True),
        ("http://prometheus.monitoring.svc", True),
        ("http://prometheus-operated.monitoring:9090", False),  # SERVICE.NAMESPACE may also be an Internet name
        ("http://evil.example/x.svc:9090", False),
        ("http://a.b.c.svc:9090", False),
        ("http://localhost:8080", False),
        ("http://169.254.169.254", False),
        ("ftp://prometheus.monitoring.svc", False),
    ],
)
def test_by_default_a_policy_may_name_in_cluster_services_only(url: str, allowed: bool) -> None:
    assert any(pattern.matches(url) for pattern in DEFAULTS.allowed_urls) is allowed


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("https://thanos.example.com", "https://thanos.example.com", True),
        ("https://thanos.example.com", "https://thanos.example.com:443/", True),
        ("https://thanos.example.com", "https://thanos.example.com:8443", False),
        ("https://thanos.example.com:*", "https://thanos.example.com:8443", True),
        ("https://*.example.com", "https://eu.example.com", True),
        ("https://*.example.com", "https://a.eu.example.com", False),
        ("https://*.example.com", "https://example.com", False),
        ("https://thanos.example.com/tenant-a", "https://thanos.example.com/tenant-a/prometheus", True),
        ("https://thanos.example.com/tenant-a", "https://thanos.example.com/tenant-ab", False),
        ("http://*:*", "http://10.0.0.7:9090", True),
        ("http://*:*", "https://10.0.0.7:9090", False),
        ("http://[::1]:9090", "http://[::1]:9090", True),
    ],
)
def test_url_patterns(pattern: str, url: str, matches: bool) -> None:
    assert UrlPattern.parse(pattern).matches(url) is matches


@pytest.mark.parametrize(
    "raw",
    [
        {"allowedURL": []},
        {"allowedURLs": ["prometheus.monitoring.svc"]},
        {"allowedURLs": ["http://*.svc:port"]},
        {"allowedURLs": ["http://p.svc/#"]},
        {"endpoints": [{"name": "a"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc"}, {"name": "a", "url": "http://b.svc"}]},
        {"endpoints": [{"name": "A", "url": "http://a.svc"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc/#"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc", "namespaceParameter": "query"}]},
        {"endpoints": [{"name": "a", "url": "https://a.svc", "caFile": "/ca", "insecureSkipVerify": True}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc", "token": "inline"}]},
        {"credentialSecretLabel": "no-value"},
        {"maxConnectionsPerEndpoint": 0},
    ],
)
def test_a_wrong_config_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_access(raw)


def test_an_empty_list_allows_named_endpoints_only() -> None:
    assert parse_access({"allowedURLs": []}).allowed_urls == ()
    assert parse_access({}).allowed_urls == DEFAULTS.allowed_urls


async def test_an_endpoint_resolves_to_the_admins_url_credentials_and_namespace(
    tmp_path: pathlib.Path, kubeconfig: pathlib.Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    access = parse_access(
        {
            "endpoints": [
                {"name": "shared", "url": "https://thanos.monitoring.svc:9092", "bearerTokenFile": str(token)},
                {"name": "tenants", "url": "https://thanos.monitoring.svc:9092", "namespaceParameter": "namespace"},
            ],
            "allowedURLs": [],
        }
    )
    kube = Kube(load_api_client(str(kubeconfig)))
    spec = parse_prometheus({"endpoint": "shared", "timeout": 2})
    resolved, credentials = await access.resolve(kube, "team-a", spec)
    assert (resolved.url, resolved.timeout_s, resolved.params) == ("https://thanos.monitoring.svc:9092", 2.0, ())
    assert credentials.bearer_token == "first"
    token.write_text("rotated\n")
    os.utime(token, ns=(0, time.time_ns() + 10**9))  # a new modification time, as a projected token's rotation
    assert (await access.resolve(kube, "team-a", spec))[1].bearer_token == "rotated", "re-read when it changes"
    resolved, credentials = await access.resolve(kube, "team-b", parse_prometheus({"endpoint": "tenants"}))
    assert resolved.params == (("namespace", "team-b"),) and credentials == Credentials()
    with pytest.raises(SpecError) as caught:
        await access.resolve(kube, "team-a", parse_prometheus({"endpoint": "other"}))
    assert caught.value.reason == "UnknownPrometheusEndpoint" and "shared, tenants" in caught.value.message
    with pytest.raises(SpecError) as caught:
        await access.resolve(kube, "team-a", parse_prometheus({"url": "https://thanos.monitoring.svc:9092"}))
    assert caught.value.reason == "PrometheusURLNotAllowed"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"url": "http://p.monitoring.svc", "endpoint": "shared"},
        {"endpoint": "shared", "bearerTokenSecretRef": {"name": "s", "key": "k"}},
        {"endpoint": "shared", "caSecretRef": {"name": "s", "key": "k"}},
        {"endpoint": "shared", "insecureSkipVerify": True},
    ],
    ids=["neither", "both", "endpoint-with-token", "endpoint-with-ca", "endpoint-insecure"],
)
def test_an_endpoint_brings_its_own_credentials(raw: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_prometheus(raw)
    assert caught.value.reason == "InvalidPrometheus"


def test_the_operator_refuses_to_start_on_a_wrong_config(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "access.yaml"
    config.write_text("allowedURLs: [prometheus.monitoring.svc]\n")
    assert main(["run", "--prometheus-config", str(config)]) == 2


def test_the_shipped_install_reads_the_documented_defaults() -> None:
    """deploy/ mounts the ConfigMap where the operator's --prometheus-config points, and it says the defaults."""
    docs = [d for f in sorted(REPO.glob("deploy/*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("prometheus-access")
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = pathlib.PurePosixPath(container["args"][container["args"].index("--prometheus-config") + 1])
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == config_map["metadata"]["name"]]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert str(path.parent) == mount["mountPath"] and path.name in config_map["data"]
    assert parse_access(yaml.safe_load(config_map["data"][path.name])) == DEFAULTS
