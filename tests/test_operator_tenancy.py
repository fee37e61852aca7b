"""The real operator in a shared cluster: what a namespace's policy author can and cannot make it do.

Issue 12, findings 1 and 2, end to end (``infercast run`` against the emulated API server and
fault-injecting Prometheus servers from ``tests/harness/faults.py``):

* a policy cannot send a Secret that did not opt in, nor send any Secret to a URL the admin did
  not allow, and no Secret value appears in a status, an Event or the log;
* a policy may read an admin-defined endpoint by name, with the admin's token and its namespace
  passed to a tenancy proxy;
* policies reading a dripping Prometheus do not stop the others from deciding on schedule.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.observability.explain import decision_records
from devtools.processes import ManagedProcess, operator_argv
from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.faults import Answer, Drip, FaultyPrometheus, Forward, by_token
from tests.harness.kube import custom_object, deployment, events_for
from tests.harness.polling import wait_until

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "infercast.io", "v1alpha1", "scalingpolicies"
INTERVAL_S = 5
DECISION_TIMEOUT_S = 3 * INTERVAL_S + 5
OPT_IN = {"infercast.io/prometheus-credentials": "true"}


def create_policy(kube: client.ApiClient, namespace: str, name: str, prometheus: dict[str, Any], query: str) -> None:
    """A ScalingPolicy on a Deployment of its own name (one replica, ready), created with it."""
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, deployment(name, replicas=1))
    apps.patch_namespaced_deployment_status(name, namespace, {"status": {"replicas": 1, "readyReplicas": 1}})
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 10,
            "interval": INTERVAL_S,
            "prometheus": {"timeout": 1, **prometheus},
            "metrics": [{"name": "load", "query": query, "target": {"type": "Value", "value": 10}}],
        },
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def create_secret(kube: client.ApiClient, namespace: str, name: str, data: dict[str, str], **labels: str) -> None:
    encoded: dict[str, bytes | str] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name, labels=labels or None), data=encoded)
    client.CoreV1Api(kube).create_namespaced_secret(namespace, secret)


def ready_condition(kube: client.ApiClient, namespace: str, policy: str) -> dict[str, Any] | None:
    obj = custom_object(client.CustomObjectsApi(kube), GROUP, VERSION, namespace, PLURAL, policy)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def decisions_of(process: ManagedProcess, namespace: str, policy: str) -> list[dict[str, Any]]:
    return [d for d in decision_records(process.log_text().splitlines()) if d["policy"] == f"{namespace}/{policy}"]


@pytest.fixture
def capture() -> Iterator[FaultyPrometheus]:
    """A server that answers every query healthily and records what it was sent."""
    with FaultyPrometheus(Answer(1.0)) as server:
        yield server


def test_a_policy_cannot_send_a_secret_it_was_not_given(
    namespace: str, kube: client.ApiClient, operator: OperatorFactory, capture: FaultyPrometheus
) -> None:
    create_secret(kube, namespace, "database", {"password": "hunter2"})
    create_secret(kube, namespace, "prometheus", {"token": "t0ken-for-prometheus"}, **OPT_IN)
    port = capture.url.rsplit(":", 1)[1]
    # The Secret did not opt in: it is a database password, whatever the URL.
    stolen = {"url": capture.url, "bearerTokenSecretRef": {"name": "database", "key": "password"}}
    create_policy(kube, namespace, "password", stolen, "sum(up)")
    # The Secret opted in, but the URL (another name of the capture server) is not one the admin allows.
    redirected = {"url": f"http://localhost:{port}", "bearerTokenSecretRef": {"name": "prometheus", "key": "token"}}
    create_policy(kube, namespace, "elsewhere", redirected, "sum(up)")
    process = operator(operator_argv(namespace, "--metrics-port", "0"))

    expected = {"password": "SecretNotOptedIn", "elsewhere": "PrometheusURLNotAllowed"}
    ready = {p: wait_until(partial(ready_condition, kube, namespace, p), timeout=DECISION_TIMEOUT_S) for p in expected}
    assert capture.tokens_seen() <= {None}, "no Secret left the operator"
    assert {p: (c["status"], c["reason"]) for p, c in ready.items()} == {p: ("False", r) for p, r in expected.items()}
    events = [e.message or "" for e in events_for(client.CoreV1Api(kube), namespace, "password")]
    statuses = [
        json.dumps(custom_object(client.CustomObjectsApi(kube), GROUP, VERSION, namespace, PLURAL, p)) for p in expected
    ]
    for text in (*events, *statuses, process.log_text()):
        assert "hunter2" not in text and "t0ken-for-prometheus" not in text


def test_a_policy_reads_an_admin_endpoint_by_name(
    namespace: str,
    kube: client.ApiClient,
    operator: OperatorFactory,
    prometheus: Prometheus,
    tmp_path: pathlib.Path,
) -> None:
    # A tenancy proxy in front of the real Prometheus: it serves the admin's token only.
    with FaultyPrometheus(by_token({"admin-token": Forward(prometheus.url)})) as proxy:
        token_file = tmp_path / "token"
        token_file.write_text("admin-token\n")
        config = {
            "endpoints": [
                {"name": "shared", "url": proxy.url, "bearerTokenFile": str(token_file), "namespaceParameter": "ns"}
            ],
            "allowedURLs": [],
        }
        config_file = tmp_path / "prometheus-access.yaml"
        config_file.write_text(yaml.safe_dump(config))
        create_policy(kube, namespace, "named", {"endpoint": "shared"}, "vector(35)")
        # With no URL allowed, a policy's own URL is refused, even the real Prometheus'.
        create_policy(kube, namespace, "own-url", {"url": prometheus.url}, "vector(35)")
        process = operator(operator_argv(namespace, "--metrics-port", "0", "--prometheus-config", str(config_file)))
        wait_until(lambda: decisions_of(process, namespace, "named"), timeout=DECISION_TIMEOUT_S)
        ready = wait_until(lambda: ready_condition(kube, namespace, "own-url"), timeout=DECISION_TIMEOUT_S)
        assert (ready["status"], ready["reason"]) == ("False", "PrometheusURLNotAllowed")
        decision = decisions_of(process, namespace, "named")[0]
        assert decision["to"] == 4, "35 against a target of 10: the value came through the endpoint"
        assert proxy.tokens_seen() == {"Bearer admin-token"}
        assert {r.params.get("ns") for r in proxy.requests} == {namespace}, "the proxy is told whose query it is"
        assert "admin-token" not in process.log_text()


def test_a_dripping_prometheus_does_not_stall_the_other_policies(
    namespace: str, kube: client.ApiClient, operator: OperatorFactory, prometheus: Prometheus, tmp_path: pathlib.Path
) -> None:
    # Few Kubernetes connections, as with many more dripping policies on the default 32.
    with FaultyPrometheus(Drip(every_s=0.2)) as drip:
        for i in range(4):
            create_policy(kube, namespace, f"drip-{i}", {"url": drip.url}, f"sum(up{{n='{i}'}})")
        create_policy(kube, namespace, "healthy", {"url": prometheus.url}, "vector(4)")
        process = operator(operator_argv(namespace, "--metrics-port", "0"), env={"INFERCAST_KUBE_CONNECTIONS": "2"})
        first = wait_until(lambda: decisions_of(process, namespace, "healthy"), timeout=DECISION_TIMEOUT_S)[0]
        assert first["action"] == "Hold"
        # On schedule: three more decisions in three intervals (plus one of slack).
        try:
            wait_until(lambda: len(decisions_of(process, namespace, "healthy")) >= 4, timeout=4 * INTERVAL_S)
        except TimeoutError:
            made = len(decisions_of(process, namespace, "healthy"))
            pytest.fail(f"the healthy policy made {made} decision(s) in {4 * INTERVAL_S}s after its first")
        assert drip.requests, "the dripping server was queried all along"
