"""The simulated vLLM fleet as a process: against the dev API server, scraped by a real Prometheus."""

from __future__ import annotations

import contextlib
import pathlib
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client

from devtools.prometheus_server import Prometheus
from tests.harness.fleet import FleetProcess, running_fleet, write_trace
from tests.harness.kube import deployment
from tests.harness.polling import wait_until

pytestmark = pytest.mark.integration

COLD_START_S = 3.0
DEPLOYMENT = "vllm"
POD_NAME = re.compile(rf"^{DEPLOYMENT}-[0-9a-f]{{10}}-[a-z0-9]{{5}}$")


def start_fleet(
    apiserver: str, kube: client.ApiClient, namespace: str, tmp_path: pathlib.Path, *options: str
) -> contextlib.AbstractContextManager[FleetProcess]:
    """The fleet for a one-replica Deployment, replaying a steady 2 requests/s."""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment(DEPLOYMENT, replicas=1))
    trace = tmp_path / "trace.csv"
    write_trace(trace, requests_per_s=2, seconds=600)
    cold_start = ("--cold-start", str(COLD_START_S))
    return running_fleet(apiserver, namespace, DEPLOYMENT, trace, tmp_path, *cold_start, *options)


@pytest.fixture
def fleet(apiserver: str, kube: client.ApiClient, namespace: str, tmp_path: pathlib.Path) -> Iterator[FleetProcess]:
    with start_fleet(apiserver, kube, namespace, tmp_path) as fleet:
        yield fleet


def pods(kube: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    return [kube.sanitize_for_serialization(pod) for pod in items]


def exactly(count: int, kube: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The pods if there are ``count`` of them, else nothing (for polling)."""
    found = pods(kube, namespace)
    return found if len(found) == count else []


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def deployment_status(kube: client.ApiClient, namespace: str) -> tuple[int, dict[str, Any]]:
    body = kube.sanitize_for_serialization(client.AppsV1Api(kube).read_namespaced_deployment(DEPLOYMENT, namespace))
    return body["metadata"]["generation"], body.get("status") or {}


def scale(kube: client.ApiClient, namespace: str, replicas: int) -> None:
    client.AppsV1Api(kube).patch_namespaced_deployment_scale(DEPLOYMENT, namespace, {"spec": {"replicas": replicas}})


def test_the_fleet_plays_replicaset_and_kubelet_for_the_deployment(fleet: FleetProcess, kube: client.ApiClient) -> None:
    namespace = fleet.namespace
    (first,) = wait_until(lambda: [p for p in pods(kube, namespace) if is_ready(p)], timeout=5)
    assert POD_NAME.match(first["metadata"]["name"])
    assert first["metadata"]["labels"]["app"] == DEPLOYMENT
    assert first["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"

    scaled_at = time.monotonic()
    scale(kube, namespace, 3)
    created = wait_until(lambda: exactly(3, kube, namespace), timeout=5)
    assert time.monotonic() - scaled_at < COLD_START_S, "pods should exist before their cold start ends"
    new = [p for p in created if p["metadata"]["name"] != first["metadata"]["name"]]
    assert len(new) == 2
    assert not any(is_ready(p) for p in new)
    assert all(POD_NAME.match(p["metadata"]["name"]) for p in new)

    wait_until(lambda: all(is_ready(p) for p in pods(kube, namespace)), timeout=COLD_START_S + 5)
    assert time.monotonic() - scaled_at >= COLD_START_S
    wait_until(lambda: deployment_status(kube, namespace)[1].get("readyReplicas") == 3, timeout=5)
    generation, status = deployment_status(kube, namespace)
    assert status["replicas"] == status["availableReplicas"] == status["updatedReplicas"] == 3
    assert status["observedGeneration"] == generation

    scale(kube, namespace, 1)
    (remaining,) = wait_until(lambda: exactly(1, kube, namespace), timeout=5)
    # The newest pods go first: the one that was there from the start stays.
    assert remaining["metadata"]["name"] == first["metadata"]["name"]
    wait_until(lambda: deployment_status(kube, namespace)[1].get("replicas") == 1, timeout=5)
    assert deployment_status(kube, namespace)[1]["readyReplicas"] == 1

    assert fleet.process.stop() == 0, "SIGTERM should end the fleet cleanly"


def condition(pod: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in pod["status"]["conditions"] if c["type"] == type_)


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


PROVISIONING_S = 4.0


def test_pods_beyond_the_free_gpu_nodes_stay_pending_until_a_node_is_provisioned(
    apiserver: str, kube: client.ApiClient, namespace: str, tmp_path: pathlib.Path
) -> None:
    options = ("--free-gpu-nodes", "1", "--node-provisioning-delay", str(PROVISIONING_S))
    with start_fleet(apiserver, kube, namespace, tmp_path, *options) as fleet:
        wait_until(lambda: [p for p in pods(kube, namespace) if is_ready(p)], timeout=5)
        scale(kube, namespace, 3)
        created = wait_until(lambda: exactly(3, kube, namespace), timeout=5)
        unschedulable = [p for p in created if condition(p, "PodScheduled")["status"] == "False"]
        (waiting,) = unschedulable  # the one free node took one of the two new pods
        assert condition(waiting, "PodScheduled")["reason"] == "Unschedulable"
        assert waiting["status"]["phase"] == "Pending"
        assert deployment_status(kube, namespace)[1]["replicas"] == 3

        wait_until(lambda: all(is_ready(p) for p in pods(kube, namespace)), timeout=PROVISIONING_S + COLD_START_S + 5)
        (served,) = [p for p in pods(kube, namespace) if p["metadata"]["name"] == waiting["metadata"]["name"]]
        scheduled, ready = condition(served, "PodScheduled"), condition(served, "Ready")
        waited = seconds_between(served["metadata"]["creationTimestamp"], scheduled["lastTransitionTime"])
        assert PROVISIONING_S - 1 <= waited <= PROVISIONING_S + 2, "scheduled once its node was provisioned"
        started = seconds_between(scheduled["lastTransitionTime"], ready["lastTransitionTime"])
        assert COLD_START_S - 1 <= started <= COLD_START_S + 2, "the cold start begins on the node"

        # Scale-down deletes the newest pods; the nodes stay, so a scale-up is scheduled at once
        # (once the draining replicas have finished their requests and left their nodes).
        scale(kube, namespace, 1)
        wait_until(lambda: exactly(1, kube, namespace), timeout=5)
        wait_until(lambda: scrape(fleet.metrics_url, "text/plain").count("\nvllm:num_requests_running{") == 1)
        scale(kube, namespace, 3)
        again = wait_until(lambda: exactly(3, kube, namespace), timeout=5)
        assert all(condition(p, "PodScheduled")["status"] == "True" for p in again)


def scrape(url: str, accept: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_metrics_keep_the_vllm_colon_names_whatever_the_accept_header(fleet: FleetProcess, accept: str) -> None:
    def running_series() -> list[str]:
        return re.findall(r"^vllm:num_requests_running\{.*\} .*$", scrape(fleet.metrics_url, accept), re.M)

    (line,) = wait_until(running_series, timeout=5)
    assert f'namespace="{fleet.namespace}"' in line
    assert 'model_name="' in line
    text = scrape(fleet.metrics_url, accept)
    for name in (
        "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket", "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total", "vllm:request_success_total",
    ):  # fmt: skip
        assert f"\n{name}{{" in text, name
    assert "vllm_num_requests" not in text


def test_prometheus_sees_one_series_per_serving_pod(
    fleet: FleetProcess, kube: client.ApiClient, tmp_path: pathlib.Path
) -> None:
    with Prometheus({"fleet": [fleet.address]}, workdir=tmp_path / "prometheus") as prometheus:
        selector = f'namespace="{fleet.namespace}", pod=~"{DEPLOYMENT}-.*"'
        prometheus.wait_for_series(f"vllm:num_requests_running{{{selector}}}", timeout=20)
        scale(kube, fleet.namespace, 2)
        wait_until(lambda: len([p for p in pods(kube, fleet.namespace) if is_ready(p)]) == 2, timeout=10)
        wait_until(
            lambda: prometheus.query(f"count(vllm:num_requests_running{{{selector}}})")[0]["value"][1] == "2",
            timeout=10,
        )
        pod_names = {p["metadata"]["name"] for p in pods(kube, fleet.namespace)}
        scraped = {s["metric"]["pod"] for s in prometheus.query(f"vllm:num_requests_waiting{{{selector}}}")}
        assert scraped == pod_names
        # The load is real: the replayed trace has already finished requests on the first pod.
        served = prometheus.query(f"sum(vllm:request_success_total{{{selector}}})")
        assert float(served[0]["value"][1]) > 0
