"""The real operator (``infercast run``, Kopf) over HTTP against the emulated API server and real Prometheus.

Every test owns a namespace, a vLLM-like Deployment whose load it sets on the session's exporter,
and its own operator process watching only that namespace. A :class:`ReadyFollower` plays the
Deployment controller (there is none behind the emulated API server).
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.core import GaugeMetricFamily

from controller.observability.explain import decision_records
from devtools.processes import ManagedProcess, operator_argv
from devtools.prometheus_server import Prometheus
from tests.conftest import EXPORTER_JOB, OPERATOR_USER, OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.kube import events_for
from tests.harness.polling import stays, wait_until
from tests.harness.replicas import Workload
from tests.harness.workload import ReadyFollower

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "infercast.io", "v1alpha1", "scalingpolicies"
WAITING = "vllm:num_requests_waiting"
INTERVAL_S = 5
# A decision takes up to one interval to come, plus Prometheus' 1 s scrape and the watch latency.
DECISION_TIMEOUT_S = 3 * INTERVAL_S + 5


class Fleet(Workload):
    """One vLLM Deployment in the test's namespace, the load it reports, and its ScalingPolicies."""

    def condition_with_status(self, policy: str, type_: str, status: str) -> dict[str, Any] | None:
        """The condition if it has ``status``, else ``None`` (for polling)."""
        condition = self.condition(type_, policy)
        return condition if condition.get("status") == status else None

    def event_reasons(self, name: str) -> list[str | None]:
        return [e.reason for e in events_for(client.CoreV1Api(self.kube), self.namespace, name)]


@pytest.fixture
def fleet(namespace: str, kube: client.ApiClient, exporter: Exporter, prometheus: Prometheus) -> Fleet:
    return Fleet(namespace=namespace, name="vllm", kube=kube, exporter=exporter)


@pytest.fixture
def follower(fleet: Fleet) -> Iterator[ReadyFollower]:
    with ReadyFollower(fleet.apps, fleet.namespace, fleet.name) as running:
        yield running


def start_operator(operator: OperatorFactory, namespace: str) -> ManagedProcess:
    # The operator's own metrics are tested in test_observability_e2e.py; here they stay off.
    return operator(operator_argv(namespace, "--metrics-port", "0"))


def decision_lines(process: ManagedProcess) -> list[dict[str, Any]]:
    """The operator's decision log: one JSON object per line, among Kopf's own log lines."""
    return decision_records(process.log_text().splitlines())


def stabilized(process: ManagedProcess) -> list[dict[str, Any]]:
    """The decisions that held a scale-down back for the stabilization window."""
    return [d for d in decision_lines(process) if "ScaleDownStabilized" in d["reasons"]]


def decided_at(decision: dict[str, Any]) -> float:
    """When the operator decided, by its own clock (whole seconds, as logged)."""
    return datetime.fromisoformat(decision["time"]).timestamp()


def test_scales_up_on_load_and_reports_the_decision(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower
) -> None:
    fleet.create(replicas=1)
    fleet.set_waiting(40)  # 4x the target of 10 per replica
    process = start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="vllm")

    wait_until(lambda: fleet.replicas() == 4, timeout=DECISION_TIMEOUT_S)

    last = wait_until(lambda: fleet.status("vllm").get("lastDecision"), timeout=DECISION_TIMEOUT_S)
    logged = wait_until(lambda: [d for d in decision_lines(process) if d["action"] == "ScaleUp"], timeout=5)[0]
    assert (logged["from"], logged["to"], logged["applied"]) == (1, 4, True)
    assert logged["policy"] == f"{fleet.namespace}/vllm" and logged["target"] == "Deployment/vllm"
    assert logged["inputs"]["metrics"][0]["value"] == 40
    assert logged["output"]["desiredReplicas"] == 4
    assert last["id"], "status carries the decision id"
    assert "ScaleUp" in fleet.event_reasons("vllm"), "an Event on the policy"
    assert "InfercastRescale" in fleet.event_reasons(fleet.name), "an Event on the scaled workload"
    status = fleet.status("vllm")
    assert status["lastScaleTime"]
    assert fleet.condition_with_status("vllm", "Ready", "True")
    assert fleet.condition_with_status("vllm", "MetricsAvailable", "True")


def test_scales_down_only_after_the_stabilization_window(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower
) -> None:
    window = 20
    fleet.create(replicas=4)
    fleet.set_waiting(40)  # exactly the target: hold at 4
    start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="vllm", behavior={"scaleDown": {"stabilizationWindowSeconds": window}})
    wait_until(lambda: fleet.status("vllm").get("lastDecision"), timeout=DECISION_TIMEOUT_S)

    fleet.set_waiting(5)  # needs 1 replica now
    dropped_at = time.monotonic()
    wait_until(
        lambda: "ScaleDownStabilized" in (fleet.status("vllm").get("lastDecision") or {}).get("reasons", []),
        timeout=DECISION_TIMEOUT_S,
    )
    stays(lambda: fleet.replicas() == 4, seconds=window - (time.monotonic() - dropped_at) - 2)
    wait_until(lambda: fleet.replicas() == 1, timeout=window + DECISION_TIMEOUT_S)
    assert time.monotonic() - dropped_at >= window - 1


def test_holds_through_a_prometheus_outage_and_recovers_by_itself(
    fleet: Fleet, exporter: Exporter, operator: OperatorFactory, follower: ReadyFollower, tmp_path: pathlib.Path
) -> None:
    own = Prometheus({EXPORTER_JOB: [exporter.address]}, workdir=tmp_path / "prometheus")
    with own:
        own.wait_for_series(f'up{{job="{EXPORTER_JOB}"}} == 1', timeout=20)
        fleet.create(replicas=3)
        fleet.set_waiting(30)
        start_operator(operator, fleet.namespace)
        fleet.create_policy(own.url, name="vllm", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        wait_until(lambda: (fleet.condition("MetricsAvailable", "vllm") or {}).get("status") == "True", timeout=30)

        own.stop()
        fleet.set_waiting(0)  # were it seen, this would scale the fleet down to 1
        outage = wait_until(
            lambda: fleet.condition_with_status("vllm", "MetricsAvailable", "False"), timeout=DECISION_TIMEOUT_S
        )
        assert outage["reason"] in ("Unreachable", "BackingOff", "Timeout")
        stays(lambda: fleet.replicas() == 3, seconds=3 * INTERVAL_S)
        assert fleet.status("vllm")["lastDecision"]["action"] == "Hold"

        own.start()  # same port, same data
        wait_until(lambda: (fleet.condition("MetricsAvailable", "vllm") or {}).get("status") == "True", timeout=90)
        wait_until(lambda: fleet.replicas() == 1, timeout=DECISION_TIMEOUT_S)


def test_recommend_mode_reports_but_never_writes(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory
) -> None:
    fleet.create(replicas=1)
    fleet.set_waiting(60)
    process = start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="vllm", mode="Recommend")

    status = wait_until(lambda: (s := fleet.status("vllm")).get("desiredReplicas") == 5 and s, timeout=30)
    assert status["lastDecision"]["applied"] is False
    assert (fleet.condition("Ready", "vllm") or {}).get("reason") == "Recommending"
    stays(lambda: fleet.replicas() == 1, seconds=2 * INTERVAL_S)
    assert all(not d["applied"] for d in decision_lines(process))
    assert "InfercastRescale" not in fleet.event_reasons(fleet.name)


def test_invalid_policies_are_refused_and_the_others_keep_working(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower
) -> None:
    fleet.create(replicas=1)
    fleet.set_waiting(30)
    process = start_operator(operator, fleet.namespace)
    other = Fleet(namespace=fleet.namespace, name="other", kube=fleet.kube, exporter=fleet.exporter)
    other.create(replicas=1)

    def target(name: str, kind: str = "Deployment", api_version: str = "apps/v1") -> dict[str, Any]:
        # Each refused policy claims its own workload: the one-writer rule is not what is tested here.
        return {"targetRef": {"apiVersion": api_version, "kind": kind, "name": name}}

    # The API server refuses what the CRD's rules state (as a cluster does, at kubectl apply time) ...
    with pytest.raises(client.ApiException) as refused:
        fleet.create_policy(prometheus.url, name="bounds", **target("b"), minReplicas=5, maxReplicas=2)
    assert refused.value.status == 422
    assert refused.value.body is not None and "minReplicas must not exceed maxReplicas" in refused.value.body
    # ... and the operator refuses what only it can judge, each with a condition and one Event.
    bad = {
        "refit": (
            {**target("b"), "forecast": {"refitIntervalSeconds": 120, "stepSeconds": 300}},
            "InvalidForecast",
        ),
        "promql": (
            {
                **target("other"),
                "metrics": [{"name": "q", "query": "sum(rate(x[1m])", "target": {"type": "Value", "value": 1}}],
            },
            "QueryRejected",
        ),
        "missing": (target("nope"), "TargetNotFound"),
        "noscale": (target("cm", kind="ConfigMap", api_version="v1"), "NoScaleSubresource"),
    }
    for name, (spec, _) in bad.items():
        fleet.create_policy(prometheus.url, name=name, **spec)
    fleet.create_policy(prometheus.url, name="good")

    for name, (_, reason) in bad.items():
        ready = wait_until(partial(fleet.condition, "Ready", name), timeout=DECISION_TIMEOUT_S)
        assert (ready["status"], ready["reason"]) == ("False", reason), name
        assert ready["message"]
        assert reason in fleet.event_reasons(name), f"a Warning Event explains {name}"
    wait_until(lambda: fleet.replicas() == 3, timeout=DECISION_TIMEOUT_S)
    assert process.running(), "the operator keeps running"
    stays(lambda: fleet.event_reasons("refit").count("InvalidForecast") == 1, seconds=INTERVAL_S + 1)


def test_one_writer_per_workload(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, kube: client.ApiClient
) -> None:
    fleet.create(replicas=1)
    fleet.set_waiting(50)
    autoscaling = client.AutoscalingV2Api(kube)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "vllm-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": fleet.name},
            "minReplicas": 1,
            "maxReplicas": 4,
        },
    }
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        fleet.namespace, client.V2HorizontalPodAutoscaler.model_validate(hpa)
    )
    start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="first")
    conflict = wait_until(lambda: fleet.condition("Conflict", "first"), timeout=DECISION_TIMEOUT_S)
    assert (conflict["status"], conflict["reason"]) == ("True", "HPAConflict")
    assert "vllm-hpa" in conflict["message"]
    stays(lambda: fleet.replicas() == 1, seconds=INTERVAL_S)

    autoscaling.delete_namespaced_horizontal_pod_autoscaler("vllm-hpa", fleet.namespace)
    wait_until(lambda: fleet.replicas() == 5, timeout=DECISION_TIMEOUT_S)
    fleet.create_policy(prometheus.url, name="second")
    second = wait_until(lambda: fleet.condition("Conflict", "second"), timeout=DECISION_TIMEOUT_S)
    assert (second["status"], second["reason"]) == ("True", "PolicyConflict")
    assert (fleet.condition("Conflict", "first") or {}).get("status") == "False"


def test_an_operator_restart_keeps_the_stabilization_state(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower
) -> None:
    window = 30
    fleet.create(replicas=4)
    fleet.set_waiting(40)
    first = start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="vllm", behavior={"scaleDown": {"stabilizationWindowSeconds": window}})
    wait_until(lambda: fleet.status("vllm").get("history", {}).get("recommendations"), timeout=DECISION_TIMEOUT_S)

    fleet.set_waiting(5)
    # Two holds of the low load: the first operator's last recommendation of 4 is then over an interval old.
    wait_until(lambda: len(stabilized(first)) >= 2, timeout=DECISION_TIMEOUT_S + INTERVAL_S)
    first.stop()
    last_high = [d for d in decision_lines(first) if d["output"]["recommendedReplicas"] == 4][-1]
    second = start_operator(operator, fleet.namespace)

    held = wait_until(lambda: decision_lines(second), timeout=DECISION_TIMEOUT_S)[0]
    assert decided_at(held) - decided_at(last_high) < window, "the second operator first decided after the window"
    assert (held["from"], held["to"]) == (4, 4) and "ScaleDownStabilized" in held["reasons"], held["message"]
    assert fleet.replicas() == 4
    scaled = wait_until(
        lambda: [d for d in decision_lines(second) if d["to"] == 1], timeout=window + DECISION_TIMEOUT_S
    )[0]
    # The window counts from the first operator's last recommendation of 4, across the restart; a lost history
    # would count it from the second operator's first look (the policy seeds an empty history with the count).
    assert decided_at(scaled) - decided_at(last_high) >= window
    assert decided_at(scaled) - decided_at(held) < window, "the history did not survive the restart"
    wait_until(lambda: fleet.replicas() == 1, timeout=DECISION_TIMEOUT_S)


def policy_reads(audit_log: pathlib.Path, namespace: str, name: str) -> list[float]:
    """When the operator read the policy (GET, not the status subresource), from the API server's audit log."""
    entries = (json.loads(line) for line in audit_log.read_text().splitlines() if line)
    return [
        e["time"]
        for e in entries
        if e["user"] == OPERATOR_USER
        and (e.get("verb"), e.get("resource"), e.get("namespace")) == ("get", PLURAL, namespace)
        and e["path"].endswith(f"/{name}")
    ]


def test_cycles_read_the_policy_from_the_api_only_after_someone_elses_write(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower, audit_log: pathlib.Path
) -> None:
    """While the watch shows the policy as the operator's own last status write left it, a cycle starts
    from the watch's copy; a write by anyone else makes the next cycle read the policy again."""
    fleet.create(replicas=2)
    fleet.set_waiting(20)  # exactly the target: hold at 2
    process = start_operator(operator, fleet.namespace)
    fleet.create_policy(prometheus.url, name="vllm")
    wait_until(lambda: len(decision_lines(process)) >= 4, timeout=4 * INTERVAL_S + DECISION_TIMEOUT_S)
    cycles, reads = len(decision_lines(process)), policy_reads(audit_log, fleet.namespace, "vllm")
    assert 1 <= len(reads) <= cycles // 2, (len(reads), cycles)

    # Right after a cycle's status write, so that the write lands between two cycles, not within one.
    last = fleet.status("vllm")["lastDecision"]["id"]
    wait_until(lambda: fleet.status("vllm")["lastDecision"]["id"] != last, timeout=DECISION_TIMEOUT_S)
    written = time.time()
    fleet.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, fleet.namespace, PLURAL, "vllm", {"status": {"desiredReplicas": 7}}
    )
    wait_until(
        lambda: [t for t in policy_reads(audit_log, fleet.namespace, "vllm") if t > written],
        timeout=INTERVAL_S + DECISION_TIMEOUT_S,
    )
    wait_until(lambda: fleet.status("vllm")["desiredReplicas"] == 2, timeout=DECISION_TIMEOUT_S)


class LaggingGauge:
    """A collector whose one sample always carries a timestamp ``lag_s`` in the past.

    Samples with explicit timestamps are exempt from Prometheus' staleness markers, so the
    value stays queryable for five minutes: exactly the case ``maxStaleness`` exists for.
    """

    def __init__(self, name: str, labels: dict[str, str], value: float, lag_s: float) -> None:
        self.name, self.labels, self.value, self.lag_s = name, labels, value, lag_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, "a sample that lags behind", labels=list(self.labels))
        family.add_metric(list(self.labels.values()), self.value, timestamp=time.time() - self.lag_s)
        yield family


def test_a_stale_metric_is_missing_and_never_scales_down(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, follower: ReadyFollower
) -> None:
    fleet.create(replicas=3)
    fleet.set_waiting(1)  # fresh, and low enough to scale down to 1
    lagging = LaggingGauge(
        "vllm:kv_cache_usage_perc",
        {"namespace": fleet.namespace, "pod": f"{fleet.name}-7d4b9c6f5d-pod00", "model_name": "llama"},
        value=0.1,
        lag_s=60,
    )
    fleet.exporter.registry.register(lagging)
    try:
        start_operator(operator, fleet.namespace)
        fleet.create_policy(
            prometheus.url,
            name="vllm",
            prometheus={"url": prometheus.url, "timeout": 1, "maxStaleness": 20},
            behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
            metrics=[
                {"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 10}},
                {"name": "kv", "preset": "vllm-kv-cache-usage", "target": {"type": "AverageValue", "value": 0.8}},
            ],
        )
        stale = wait_until(
            lambda: fleet.condition_with_status("vllm", "MetricsAvailable", "False"), timeout=DECISION_TIMEOUT_S
        )
        assert stale["reason"] == "Stale" and "kv" in stale["message"]
        stays(lambda: fleet.replicas() == 3, seconds=2 * INTERVAL_S)
        assert "MetricMissing" in fleet.status("vllm")["lastDecision"]["reasons"]
    finally:
        fleet.exporter.registry.unregister(lagging)
