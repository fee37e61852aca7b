"""CircuitBreakerPolicy and RoutingPolicy end to end: the real operator, the dev API server with the
upstream Istio CRDs, a real Prometheus, and the session exporter standing in for two GPU pools.

A :class:`Traffic` thread plays the mesh and the vLLM pods: twice a second it counts requests per
backend in ``istio_requests_total`` (with the backend's 5xx share) and observes its TTFT, so the
operator sees rates and quantiles move as they would in a cluster. Given the route's live weights,
it splits the requests by them, so a backend at weight 0 reports nothing, as a real one would.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.utils import floatToGoString

from controller.observability.explain import decision_records
from devtools.processes import ManagedProcess, operator_argv
from devtools.prometheus_server import Prometheus
from tests.conftest import EXPORTER_JOB, OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.kube import custom_object, deployment, events_for
from tests.harness.polling import wait_until
from tests.harness.traffic import (
    DESTINATION_RULES,
    HTTP_ROUTES,
    TTFT_BUCKETS,
    VIRTUAL_SERVICES,
    Backend,
    Traffic,
    destination_rule,
    http_route,
    register_upstream_crds,
    schema_errors,
    virtual_service,
)

pytestmark = pytest.mark.integration

INTERVAL_S = 5
CYCLE_TIMEOUT_S = 2 * INTERVAL_S + 4  # two cycles, plus a scrape, the rate window's first samples and the watch
HOST = "vllm.svc.cluster.local"


def calm_history(namespace: str, address: str, names: list[str], start: float, end: float) -> str:
    """OpenMetrics text of what :class:`Traffic` reports for calm, evenly weighted ``names``, from
    ``start`` to ``end`` every 2 s, with the live exporter's series' labels (so that they join)."""
    rng = random.Random(11)
    target = Prometheus.instance_labels(EXPORTER_JOB, address)
    lines = []

    def family(name: str, series: dict[str, dict[str, str]], counts: dict[str, list[float]]) -> None:
        lines.append(f"# TYPE {name} gauge")  # counters by value: the type is not stored, the name is what rate() reads
        for key, labels in series.items():
            text = ",".join(f'{k}="{v}"' for k, v in {**labels, **target}.items())
            lines.extend(f"{name}{{{text}}} {total:g} {t:.3f}" for t, total in zip(times, counts[key], strict=True))

    times = [start + 2 * i for i in range(int((end - start) / 2))]
    requests, buckets, sums, totals = {}, {}, {}, {}
    for name in names:
        istio = {"destination_workload": f"vllm-{name}", "destination_workload_namespace": namespace}
        requests[name] = {"reporter": "destination", **istio, "response_code": "200"}
        pod = {"namespace": namespace, "pod": f"vllm-{name}-7d4b9c6f5d-pod00", "model_name": "llama"}
        ttfts = [[rng.uniform(0.2, 0.4) for _ in range(20)] for _ in times]  # 5 per half second, as live
        for le in (*TTFT_BUCKETS, float("inf")):
            key = f"{name}/{le}"
            buckets[key] = {**pod, "le": floatToGoString(le)}
            totals[key] = cumulative([sum(v <= le for v in batch) for batch in ttfts])
        sums[name], totals[f"{name}/sum"] = pod, cumulative([sum(batch) for batch in ttfts])
        totals[f"{name}/count"] = cumulative([len(batch) for batch in ttfts])
        totals[name] = cumulative([80] * len(times))  # 20 per half second, no 5xx
    family("istio_requests_total", requests, totals)
    family("vllm:time_to_first_token_seconds_bucket", buckets, totals)
    family("vllm:time_to_first_token_seconds_sum", sums, {n: totals[f"{n}/sum"] for n in names})
    family("vllm:time_to_first_token_seconds_count", sums, {n: totals[f"{n}/count"] for n in names})
    return "\n".join([*lines, "# EOF"])


def cumulative(increments: list[float]) -> list[float]:
    total, out = 0.0, []
    for increment in increments:
        total += increment
        out.append(total)
    return out


@dataclass
class Mesh:
    namespace: str
    kube: client.ApiClient
    prometheus_url: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    def create_pools(self, *names: str, replicas: int = 4) -> None:
        apps = client.AppsV1Api(self.kube)
        for name in names:
            apps.create_namespaced_deployment(self.namespace, deployment(f"vllm-{name}", replicas=replicas))
            apps.patch_namespaced_deployment_status(
                f"vllm-{name}", self.namespace, {"status": {"replicas": replicas, "readyReplicas": replicas}}
            )

    def create(self, obj: dict[str, Any]) -> None:
        group, version = obj["apiVersion"].split("/")
        self.custom.create_namespaced_custom_object(group, version, self.namespace, _plural(obj["kind"]), obj)

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any]:
        group, version = api_version.split("/")
        return custom_object(self.custom, group, version, self.namespace, _plural(kind), name)

    def patch_policy(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            "infercast.io", "v1alpha1", self.namespace, _plural(kind), name, {"spec": spec}
        )

    def policy(self, kind: str, name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "infercast.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"interval": INTERVAL_S, "prometheus": {"url": self.prometheus_url, "timeout": 1}, **spec},
        }

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get("infercast.io/v1alpha1", kind, name).get("status") or {})

    def outlier(self, subset: str) -> dict[str, Any]:
        rule = self.get("networking.istio.io/v1", "DestinationRule", "vllm")
        assert schema_errors(DESTINATION_RULES, rule) == []
        (found,) = [s for s in rule["spec"]["subsets"] if s["name"] == subset]
        return dict((found.get("trafficPolicy") or {}).get("outlierDetection") or {})

    def weights(self) -> dict[str, int]:
        service = self.get("networking.istio.io/v1", "VirtualService", "vllm")
        assert schema_errors(VIRTUAL_SERVICES, service) == []
        return {r["destination"]["subset"]: r["weight"] for r in service["spec"]["http"][0]["route"]}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _plural(kind: str) -> str:
    return {
        "DestinationRule": "destinationrules",
        "VirtualService": "virtualservices",
        "CircuitBreakerPolicy": "circuitbreakerpolicies",
        "RoutingPolicy": "routingpolicies",
        "HTTPRoute": "httproutes",
    }[kind]


def backend(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "subset": name,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"vllm-{name}"},
        **extra,
    }


HEALTH = {"maxErrorRate": 0.05, "maxTTFTSeconds": 4, "recoveryHoldSeconds": 20, "rateWindow": "10s"}


@pytest.fixture
def mesh(namespace: str, kube: client.ApiClient, prometheus: Prometheus) -> Mesh:
    register_upstream_crds(kube)
    return Mesh(namespace, kube, prometheus.url)


def start_operator(operator: OperatorFactory, namespace: str) -> ManagedProcess:
    return operator(operator_argv(namespace, "--metrics-port", "0"))


def decisions(process: ManagedProcess, kind: str) -> list[dict[str, Any]]:
    return [d for d in decision_records(process.log_text().splitlines()) if d["kind"] == kind]


def canary_ttft(mesh: Mesh) -> float | None:
    inputs = mesh.status("RoutingPolicy", "vllm")["lastDecision"]["inputs"]
    ttft: float | None = next(b["ttftSeconds"] for b in inputs["backends"] if b["name"] == "canary")
    return ttft


def two_pools_in_a_mesh(mesh: Mesh) -> dict[str, Backend]:
    """Pools h100 and l4, subsets of one DestinationRule and half the traffic each of one VirtualService."""
    mesh.create_pools("h100", "l4")
    mesh.create(destination_rule("vllm", HOST, ["h100", "l4"]))
    mesh.create(virtual_service("vllm", HOST, {"h100": 50, "l4": 50}))
    return {"h100": Backend(), "l4": Backend()}


def create_breaker_and_router(mesh: Mesh, health: dict[str, Any], **routing: Any) -> None:
    """A CircuitBreakerPolicy on the DestinationRule (h100 serves twice what l4 does per replica)
    and a RoutingPolicy on the VirtualService, both named ``vllm`` and judging by ``health``."""
    mesh.create(
        mesh.policy(
            "CircuitBreakerPolicy",
            "vllm",
            targetRef={"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "name": "vllm"},
            backends=[backend("h100", requestsPerReplica=20), backend("l4", requestsPerReplica=10)],
            health=health,
        )
    )
    mesh.create(
        mesh.policy(
            "RoutingPolicy",
            "vllm",
            targetRef={"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"},
            backends=[backend("h100"), backend("l4")],
            health=health,
            **routing,
        )
    )


def test_a_failing_pool_is_tightened_and_drained_then_recovers_without_flapping(
    mesh: Mesh, exporter: Exporter, operator: OperatorFactory
) -> None:
    pools = two_pools_in_a_mesh(mesh)
    with Traffic(mesh.namespace, exporter, pools):
        process = start_operator(operator, mesh.namespace)
        create_breaker_and_router(mesh, HEALTH, maxStepPercent=20, probePercent=5)
        relaxed = wait_until(lambda: mesh.outlier("h100").get("consecutive5xxErrors"), timeout=30)
        assert relaxed == 10 and mesh.outlier("l4")["consecutive5xxErrors"] == 10
        wait_until(lambda: mesh.status("RoutingPolicy", "vllm").get("lastDecision"), timeout=CYCLE_TIMEOUT_S)
        assert mesh.weights() == {"h100": 50, "l4": 50}

        pools["h100"].error_rate, pools["h100"].ttft = 0.5, (6.0, 8.0)  # a 5xx burst and a growing TTFT
        wait_until(lambda: mesh.outlier("h100").get("consecutive5xxErrors") == 3, timeout=CYCLE_TIMEOUT_S)
        tight = mesh.outlier("h100")
        assert (tight["interval"], tight["baseEjectionTime"]) == ("5s", "60s")
        # 40 requests/s need 2 of h100's 4 replicas: half may go. l4 needs all 4, so only the one host
        # Envoy always lets go from a pool within its SLO; its relaxed 20 % lets exactly that one go
        # (one of four is 25 %). The caps follow the measured request rate, which reaches 40/s only
        # once the 10 s rate window is full.
        wait_until(
            lambda: (mesh.outlier("h100")["maxEjectionPercent"], mesh.outlier("l4")["maxEjectionPercent"]) == (50, 20),
            timeout=CYCLE_TIMEOUT_S,
        )
        assert mesh.outlier("l4")["consecutive5xxErrors"] == 10, "the healthy pool stays relaxed"
        wait_until(lambda: mesh.weights()["h100"] < 50, timeout=CYCLE_TIMEOUT_S)
        assert sum(mesh.weights().values()) == 100
        assert "Tighten" in [e.reason for e in events_for(client.CoreV1Api(mesh.kube), mesh.namespace, "vllm")]
        wait_until(lambda: mesh.weights()["h100"] == 5, timeout=4 * INTERVAL_S)  # drained to the probe weight

        pools["h100"].error_rate, pools["h100"].ttft = 0.01, (0.2, 0.9)  # recovered, with noise
        recovering = len(decisions(process, "RoutingPolicy"))
        # The rate window forgets the burst (10 s), then the score must stay calm for the hold (20 s).
        wait_until(lambda: mesh.outlier("h100").get("consecutive5xxErrors") == 10, timeout=10 + 20 + 3 * INTERVAL_S)
        wait_until(lambda: mesh.weights()["h100"] == 50, timeout=5 * INTERVAL_S)
        wait_until(lambda: len(decisions(process, "RoutingPolicy")) >= recovering + 10, timeout=5 * INTERVAL_S)

    routed = [d["output"]["weights"]["h100"] for d in decisions(process, "RoutingPolicy")[recovering:]]
    assert routed == sorted(routed), f"the weight only came back, never away again: {routed}"
    actions = [d["action"] for d in decisions(process, "CircuitBreakerPolicy")]
    assert actions.count("Tighten") == 1 and actions.count("Relax") == 1, actions
    assert mesh.status("CircuitBreakerPolicy", "vllm")["flaggedBackends"] == 0


def test_a_stalled_replica_tightens_its_healthy_pool_until_it_steps_again(
    mesh: Mesh, exporter: Exporter, operator: OperatorFactory
) -> None:
    """A hung engine answers nothing: its pool's 5xx share and TTFT stay healthy, but its sequences
    stay running and its token counter stops, which tightens its pool's outlier detection (Envoy
    ejects it at its first gateway timeout) without flagging the pool or moving its traffic."""
    pools = two_pools_in_a_mesh(mesh)
    with Traffic(mesh.namespace, exporter, pools):
        process = start_operator(operator, mesh.namespace)
        create_breaker_and_router(mesh, HEALTH)
        wait_until(lambda: mesh.outlier("h100").get("consecutiveGatewayErrors") == 10, timeout=30)

        pools["h100"].stalled = True
        wait_until(lambda: mesh.outlier("h100").get("consecutiveGatewayErrors") == 3, timeout=CYCLE_TIMEOUT_S)
        assert mesh.outlier("l4")["consecutiveGatewayErrors"] == 10, "the other pool stays relaxed"
        stalled = mesh.status("CircuitBreakerPolicy", "vllm")["lastDecision"]
        assert "ReplicasStalled" in stalled["reasons"] and "h100: BackendHealthy" in stalled["message"]
        counts = {b["name"]: (b["stalledReplicas"], b["failingReplicas"]) for b in stalled["inputs"]["backends"]}
        assert counts == {"h100": (1, 1), "l4": (0, 0)}
        assert mesh.status("CircuitBreakerPolicy", "vllm")["flaggedBackends"] == 0
        assert mesh.weights() == {"h100": 50, "l4": 50}, "routing does not drain a pool for one hung replica"
        events = events_for(client.CoreV1Api(mesh.kube), mesh.namespace, "vllm")
        assert any("ReplicasStalled" in (e.message or "") for e in events), [e.message for e in events]

        pools["h100"].stalled = False
        wait_until(lambda: mesh.outlier("h100").get("consecutiveGatewayErrors") == 10, timeout=CYCLE_TIMEOUT_S)
    assert "ReplicasStalled" in {r for d in decisions(process, "CircuitBreakerPolicy") for r in d["reasons"]}


def test_a_worse_canary_is_rolled_back_and_an_as_good_one_is_promoted(
    mesh: Mesh, exporter: Exporter, operator: OperatorFactory
) -> None:
    pools = {"stable": Backend(), "canary": Backend(ttft=(2.0, 3.0))}
    mesh.create_pools("stable", "canary")
    mesh.create(virtual_service("vllm", HOST, {"stable": 100, "canary": 0}))
    with Traffic(mesh.namespace, exporter, pools, weights=mesh.weights):
        process = start_operator(operator, mesh.namespace)
        canary = {"stable": "stable", "canary": "canary", "stepPercent": 25, "stepIntervalSeconds": INTERVAL_S}
        mesh.create(
            mesh.policy(
                "RoutingPolicy",
                "vllm",
                targetRef={"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"},
                backends=[backend("stable"), backend("canary")],
                health=HEALTH,
                strategy="Canary",
                canary=canary,
            )
        )
        wait_until(
            lambda: mesh.status("RoutingPolicy", "vllm").get("canary", {}).get("phase") == "RolledBack",
            timeout=3 * CYCLE_TIMEOUT_S,
        )
        assert mesh.weights() == {"stable": 100, "canary": 0}
        steps = [(d["action"], d["to"]) for d in decisions(process, "RoutingPolicy") if d["action"] != "Hold"]
        assert steps[:2] == [("Step", 25), ("Rollback", 0)]

        # A new revision runs new pods (new series: a reused counter would skew the quantile by
        # Prometheus' extrapolation); wait until the rolled-back ones' samples left the rate window.
        pools["canary"].ttft, pools["canary"].pod = pools["stable"].ttft, "pod01"
        wait_until(lambda: canary_ttft(mesh) is None, timeout=10 + CYCLE_TIMEOUT_S)
        mesh.patch_policy("RoutingPolicy", "vllm", {"canary": {**canary, "stepPercent": 34}})
        wait_until(lambda: mesh.weights() == {"stable": 0, "canary": 100}, timeout=5 * CYCLE_TIMEOUT_S)
    promoted = [(d["action"], d["to"]) for d in decisions(process, "RoutingPolicy") if d["action"] != "Hold"][2:]
    assert promoted == [("Step", 34), ("Step", 68), ("Promote", 100)]
    assert mesh.status("RoutingPolicy", "vllm")["canary"]["phase"] == "Promoted"


DETECTOR_HEALTH = {**HEALTH, "maxErrorRate": 0.5, "maxTTFTSeconds": 20}  # limits the failure below never reaches


def test_warmed_detectors_tighten_and_drain_a_failure_the_spec_limits_miss(
    mesh: Mesh, exporter: Exporter, prometheus: Prometheus, operator: OperatorFactory
) -> None:
    now = time.time()
    # As much history as a warm-up asks for (WARMUP_POINTS at the 5 s interval) and a little more.
    prometheus.backfill(calm_history(mesh.namespace, exporter.address, ["h100", "l4"], now - 2700, now - 60))
    pools = two_pools_in_a_mesh(mesh)
    with Traffic(mesh.namespace, exporter, pools):
        # Live samples for a whole rate window, so that the first live points look like the history.
        prometheus.wait_for_series(
            f'count_over_time(istio_requests_total{{destination_workload_namespace="{mesh.namespace}"}}[12s]) >= 10',
            min_series=2,
            timeout=30,
        )
        process = start_operator(operator, mesh.namespace)
        create_breaker_and_router(mesh, DETECTOR_HEALTH)
        wait_until(lambda: len(decisions(process, "RoutingPolicy")) >= 2, timeout=30)
        warmed = [int(n) for n in re.findall(r"detectors of backend h100 warmed from (\d+) points", process.log_text())]
        assert len(warmed) == 2 and min(warmed) >= 2 * 150, (
            f"both daemons replayed the error and TTFT history: {warmed}"
        )
        assert mesh.outlier("h100")["consecutive5xxErrors"] == 10 and mesh.weights() == {"h100": 50, "l4": 50}

        pools["h100"].error_rate, pools["h100"].ttft = 0.2, (1.0, 1.5)  # a 5xx burst and a growing TTFT
        wait_until(lambda: mesh.outlier("h100").get("consecutive5xxErrors") == 3, timeout=CYCLE_TIMEOUT_S)
        wait_until(lambda: mesh.weights()["h100"] < 50, timeout=CYCLE_TIMEOUT_S)

    (tightened,) = [d for d in decisions(process, "CircuitBreakerPolicy") if d["action"] == "Tighten"]
    (h100,) = [b for b in tightened["inputs"]["backends"] if b["name"] == "h100"]
    assert h100["failureScore"] >= 0.5, "the detector's score flagged the backend"
    assert h100["errorRate"] < 0.5 and h100["ttftSeconds"] < 20, "every signal was under its spec limit"
    assert mesh.outlier("l4")["consecutive5xxErrors"] == 10, "the healthy pool stays relaxed"


def without_subset(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "subset"}


VS_TARGET = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"}


def test_a_second_routing_policy_on_one_virtual_service_is_a_conflict_until_the_first_goes(
    mesh: Mesh, operator: OperatorFactory
) -> None:
    mesh.create_pools("h100", "l4")
    mesh.create(virtual_service("vllm", HOST, {"h100": 50, "l4": 50}))
    spec = {"targetRef": VS_TARGET, "backends": [backend("h100"), backend("l4")], "health": HEALTH}
    mesh.create(mesh.policy("RoutingPolicy", "first", **spec))
    # Created in the same second or later, "second" loses either way: the name breaks a tie.
    mesh.create(mesh.policy("RoutingPolicy", "second", **spec))
    start_operator(operator, mesh.namespace)

    conflict = wait_until(lambda: condition(mesh.status("RoutingPolicy", "second"), "Conflict") or None, timeout=20)
    assert (conflict["status"], conflict["reason"]) == ("True", "PolicyConflict")
    assert f"RoutingPolicy {mesh.namespace}/first" in conflict["message"]
    assert condition(mesh.status("RoutingPolicy", "second"), "Ready")["status"] == "False"
    assert "PolicyConflict" in [e.reason for e in events_for(client.CoreV1Api(mesh.kube), mesh.namespace, "second")]
    wait_until(
        lambda: condition(mesh.status("RoutingPolicy", "first"), "Conflict").get("status") == "False",
        timeout=CYCLE_TIMEOUT_S,
    )

    mesh.custom.delete_namespaced_custom_object("infercast.io", "v1alpha1", mesh.namespace, "routingpolicies", "first")
    wait_until(
        lambda: condition(mesh.status("RoutingPolicy", "second"), "Conflict").get("status") == "False",
        timeout=CYCLE_TIMEOUT_S,
    )


def test_a_failing_backend_is_drained_on_an_http_route(
    mesh: Mesh, exporter: Exporter, operator: OperatorFactory
) -> None:
    pools = {"h100": Backend(), "l4": Backend()}
    mesh.create_pools("h100", "l4")
    pool_ref = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "vllm-h100"}
    mesh.create(http_route("vllm", [{**pool_ref, "weight": 50}, {"name": "vllm-l4", "port": 8000, "weight": 50}]))

    def weights() -> dict[str, int]:
        route = mesh.get("gateway.networking.k8s.io/v1", "HTTPRoute", "vllm")
        assert schema_errors(HTTP_ROUTES, route) == []
        return {r["name"].removeprefix("vllm-"): r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}

    with Traffic(mesh.namespace, exporter, pools):
        start_operator(operator, mesh.namespace)
        mesh.create(
            mesh.policy(
                "RoutingPolicy",
                "vllm",
                targetRef={"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "vllm"},
                backends=[
                    {**without_subset(backend("h100")), "backendRef": pool_ref},
                    {**without_subset(backend("l4")), "backendRef": {"name": "vllm-l4"}},
                ],
                health=HEALTH,
                maxStepPercent=50,
            )
        )
        wait_until(lambda: mesh.status("RoutingPolicy", "vllm").get("lastDecision"), timeout=20)
        assert weights() == {"h100": 50, "l4": 50}
        pools["h100"].error_rate = 0.5
        wait_until(lambda: weights()["h100"] == 5, timeout=2 * CYCLE_TIMEOUT_S)  # drained to the probe weight
    assert weights()["l4"] == 95
