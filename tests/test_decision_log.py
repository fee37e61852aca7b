"""The decision log's schema (docs/decision-log.schema.json) against records the controller really builds.

Records come from the controller's own record builders fed by the real policies:

* reactive scaling: scale-up, recommendation, stabilized hold, rate-limited scale-up, hold on
  missing metrics, fallback (``_record`` and ``plan_reactive``);
* predictive scaling: the predictive decide step (``plan_predictive``, its forecasting loop and
  ``decide_predictive``) over a fake Prometheus and a fake pod listing, on each path: forecast,
  reactive (capacity not learned yet), hold (load history missing) and limit (rate-limited);
* circuit breaking and routing: the cycles' record builders fed by ``decide_breakers`` and
  ``decide_routing``.

The operator's own lines (a predictive policy driving the simulated fleet) are checked end to end
in tests/test_observability_e2e.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import pathlib
import re
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import jsonschema
import pytest
import yaml

from controller.actuators import ScaleObservation
from controller.actuators.objects import LiveObject
from controller.actuators.weights import RouteObservation
from controller.clients.kube import Kube
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool, RangeSamples
from controller.clients.refs import ObjectRef
from controller.observability import OperatorMetrics
from controller.observability.decisions import DecisionRecord
from controller.reconcile.cycle import Deps, PolicySnapshot
from controller.scaling.cycle import _record
from controller.scaling.forecast_loop import ForecastSession
from controller.scaling.observe import MetricReading, observe_predictive, read_instant
from controller.scaling.plan import plan_reactive
from controller.scaling.predictive import plan_predictive
from controller.scaling.spec import parse_scaling_policy
from controller.traffic import circuit_breakers as circuit_breaking
from controller.traffic import routing_weights as routing
from controller.traffic.cycle import backend_inputs
from controller.traffic.decide import RoutingStep, routing_inputs
from controller.traffic.signals import BackendReading
from controller.traffic.spec import parse_circuit_breaker_policy, parse_routing_policy
from devtools.apiserver import merge_patch
from policies import (
    BackendSignals,
    BreakerInputs,
    RoutingState,
    ScalingState,
    decide_breakers,
    decide_routing,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs/decision-log.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
NOW = 1_800_000_000.0


def scaling_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
        "minReplicas": 1,
        "maxReplicas": 8,
        "mode": "Auto",
        "prometheus": {"url": "http://prometheus:9090"},
        "metrics": [
            {"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 4}}
        ],
        **overrides,
    }


def decide(
    raw_spec: dict[str, Any],
    replicas: int,
    value: float | None,
    *,
    state: ScalingState | None = None,
    error: MetricError | None = None,
    now: float = NOW,
) -> tuple[DecisionRecord, ScalingState]:
    """One cycle's record as reconcile_scaling builds it, without the cluster around it."""
    spec = parse_scaling_policy(raw_spec)
    policy = PolicySnapshot("ScalingPolicy", "demo", "vllm", "uid", 1, raw_spec, {})
    observed = ScaleObservation(ObjectRef("apps/v1", "Deployment", "demo", "vllm"), replicas, replicas, "")
    readings = [MetricReading(m, "query", value, error) for m in spec.metrics]
    plan = plan_reactive(spec, observed, readings, state or ScalingState(), now)
    applied = spec.mode == "Auto" and plan.desired != replicas
    return _record(policy, spec, observed, readings, plan, applied, now), plan.state


def scale_up() -> DecisionRecord:
    return decide(scaling_spec(), 1, 11.0)[0]


def recommendation() -> DecisionRecord:
    return decide(scaling_spec(mode="Recommend"), 1, 20.0)[0]


def stabilized_hold() -> DecisionRecord:
    spec = scaling_spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    _, state = decide(spec, 4, 16.0)
    return decide(spec, 4, 0.0, state=state, now=NOW + 10)[0]


def rate_limited_scale_up() -> DecisionRecord:
    spec = scaling_spec(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    return decide(spec, 1, 40.0)[0]


def metrics_missing() -> DecisionRecord:
    return decide(scaling_spec(), 3, None, error=MetricError("Unreachable", "cannot reach Prometheus"))[0]


def fallback() -> DecisionRecord:
    spec = scaling_spec(fallback={"onMetricsUnavailable": "Fallback", "replicas": 4})
    return decide(spec, 2, None, error=MetricError("NoData", "query returned no series"))[0]


# -- predictive scaling: plan_predictive over fakes of Prometheus and the pod listing ---------------

STEP_S = 5
INTERVAL_S = 5


class InlineExecutor(Executor):
    """Runs a refit at once in the caller, so that the next cycle finds it done (no worker, no wait)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn(*args, **kwargs))
        return done


@dataclass
class FakePrometheus:
    """The load as a function of time (``None``: unreachable), and the server's latency and queue."""

    load: Callable[[float], float] | None
    latency_s: float | None = 0.4
    queue: float | None = 0.0

    async def query(self, spec: Any, credentials: Any, promql: str) -> float:
        value = {"time_to_first_token": self.latency_s, "num_requests_waiting": self.queue}
        found = [v for name, v in value.items() if name in promql]
        if not found or found[0] is None:
            raise MetricError("NoData", "query returned no series")
        return found[0]

    async def query_each(self, spec: Any, credentials: Any, queries: dict[str, str]) -> dict[str, float | MetricError]:
        values: dict[str, float | MetricError] = {}
        for name, promql in queries.items():
            try:
                values[name] = await self.query(spec, credentials, promql)
            except MetricError as exc:
                values[name] = exc
        return values

    async def range_query(
        self, spec: Any, credentials: Any, promql: str, *, start: float, end: float, step_s: float
    ) -> RangeSamples:
        if self.load is None:
            raise MetricError("Unreachable", "cannot reach Prometheus")
        times = tuple(float(t) for t in range(math.ceil(start), math.floor(end) + 1, int(step_s)))
        return RangeSamples(step_s, times, tuple(self.load(t) for t in times))


@dataclass
class PodListing:
    """The target's pod listing; empty: the lead time stays the spec's default."""

    pods: list[dict[str, Any]] = field(default_factory=list)

    async def list(self, resource: Any, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        return self.pods


def predictive_spec(**forecast: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "leadTimeSeconds": 20,
        "stepSeconds": STEP_S,
        "historySeconds": 600,
        "refitIntervalSeconds": 60,
        "model": "Linear",
        "capacity": {"unit": "RequestsPerSecond", "perReplica": 100},
    }
    return scaling_spec(interval=INTERVAL_S, forecast={**base, **forecast})


def predictive_run(
    raw_spec: dict[str, Any],
    prometheus: FakePrometheus,
    cycles: int,
    replicas: int = 2,
    statuses: list[dict[str, Any]] | None = None,
    metrics: OperatorMetrics | None = None,
    pods: list[dict[str, Any]] | None = None,
) -> list[DecisionRecord]:
    """The records of ``cycles`` consecutive cycles, each built as reconcile_scaling builds it.

    ``statuses``, when given, receives the status each cycle wrote; ``metrics`` sees the refits;
    ``pods`` are the target's pods.
    """

    async def run() -> list[DecisionRecord]:
        spec = parse_scaling_policy(raw_spec)
        deps = Deps(
            # Duck-typed fakes: they answer the few calls a predictive cycle makes.
            kube=cast(Kube, PodListing(pods or [])),
            prometheus=cast(PrometheusPool, prometheus),
            decision_sinks=(),
            metrics=metrics or OperatorMetrics(),
            selection_processes=InlineExecutor(),
        )
        session, records = ForecastSession(), []
        status: dict[str, Any] = {}
        observed = ScaleObservation(ObjectRef("apps/v1", "Deployment", "demo", "vllm"), replicas, replicas, "app=vllm")
        for cycle in range(cycles):
            now = NOW + cycle * INTERVAL_S
            policy = PolicySnapshot("ScalingPolicy", "demo", "vllm", "uid", 1, raw_spec, status)
            readings = [MetricReading(m, "query", 1.0, None) for m in spec.metrics]
            state = ScalingState.from_dict(status.get("history"))
            reads = await read_instant(deps.prometheus, "demo", spec, Credentials())
            signals = await observe_predictive(policy, spec, observed, Credentials(), deps, session, now, reads)
            plan = plan_predictive(spec, observed, readings, signals, state, status, session, now)
            record = _record(policy, spec, observed, readings, plan, False, now)
            records.append(record)
            status = {**plan.status, "history": plan.state.to_dict()}
            if statuses is not None:
                statuses.append(status)
            await asyncio.sleep(0)  # the refit's completion callback runs
        return records

    return asyncio.run(run())


def test_auto_reports_the_model_its_selection_chose_in_the_record_the_status_and_the_refit_metric() -> None:
    statuses: list[dict[str, Any]] = []
    metrics = OperatorMetrics()
    records = predictive_run(
        predictive_spec(model="Auto"), FakePrometheus(rising_load), 3, statuses=statuses, metrics=metrics
    )
    # The first cycle starts the selection in the worker: nothing chosen yet, the setting is shown.
    assert records[0].inputs["forecast"]["model"] == statuses[0]["forecast"]["model"] == "Auto"
    chosen = records[-1].inputs["forecast"]["model"]
    assert chosen in {"SeasonalNaive", "DampedTrend", "Linear"}, chosen
    assert statuses[-1]["forecast"]["model"] == chosen
    count = metrics.registry.get_sample_value
    assert count("infercast_model_refit_duration_seconds_count", {"model": chosen}) == 1
    assert count("infercast_model_refit_duration_seconds_count", {"model": "Auto"}) is None


@dataclass
class LateLoad(FakePrometheus):
    """Unreachable for the load history before ``until``, then answering."""

    until: float = NOW

    async def range_query(
        self, spec: Any, credentials: Any, promql: str, *, start: float, end: float, step_s: float
    ) -> RangeSamples:
        if end < self.until:
            raise MetricError("Unreachable", "cannot reach Prometheus")
        return await super().range_query(spec, credentials, promql, start=start, end=end, step_s=step_s)


def test_a_forecast_error_leaves_the_status_once_the_load_is_read_again() -> None:
    """Status is written as a merge patch, which keeps what it does not name: the error must be nulled."""
    statuses: list[dict[str, Any]] = []
    predictive_run(predictive_spec(), LateLoad(rising_load, until=NOW + INTERVAL_S), 3, statuses=statuses)
    assert statuses[0]["forecast"]["error"].startswith("Unreachable")
    stored: dict[str, Any] = {}
    for status in statuses:
        stored = merge_patch(stored, status)  # as the API server applies each cycle's patch
    assert "error" not in stored["forecast"], stored["forecast"]


# 50 replicas of 100 requests/s and a load rising 8/s: the observed (burst-aware, smoothed) load of
# the cycle after the first refit is still within their 5000/s while the forecast for the next 25 s
# is above it: the forecast asks for more replicas before the load does.
RISING = 50


def rising_load(t: float) -> float:
    return 5300.0 + 8.0 * (t - NOW)


def forecast_scale_up() -> DecisionRecord:
    spec = predictive_spec() | {"maxReplicas": 100}
    return predictive_run(spec, FakePrometheus(rising_load), cycles=2, replicas=RISING)[-1]


def forecast_rate_limited() -> DecisionRecord:
    spec = predictive_spec() | {
        "maxReplicas": 100,
        "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
    }
    return predictive_run(spec, FakePrometheus(rising_load), cycles=2, replicas=RISING)[-1]


def capacity_unknown() -> DecisionRecord:
    spec = predictive_spec(capacity={"unit": "RequestsPerSecond"})
    return predictive_run(spec, FakePrometheus(lambda t: 150.0, latency_s=None), cycles=1)[0]


def load_missing() -> DecisionRecord:
    return predictive_run(predictive_spec(), FakePrometheus(None), cycles=1)[0]


def gpu_nodes_short() -> DecisionRecord:
    """A replica Unschedulable for 40 s (no free GPU node): the record shows it and its wait in the lead time."""
    created = datetime.fromtimestamp(NOW - 40, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    pending = {"metadata": {"creationTimestamp": created}, "status": {"conditions": [unschedulable]}}
    return predictive_run(predictive_spec(), FakePrometheus(lambda t: 150.0), cycles=1, pods=[pending])[0]


PREDICTIVE_DECISIONS = {
    "forecast": forecast_scale_up,
    "limit": forecast_rate_limited,
    "capacity-unknown": capacity_unknown,
    "load-missing": load_missing,
    "gpu-nodes-short": gpu_nodes_short,
}


# -- circuit breaking and routing: the cycles' record builders fed by the pure policies -------------

HEALTH = {"maxErrorRate": 0.05, "maxTTFTSeconds": 4}


def traffic_spec(kind: str, **spec: Any) -> dict[str, Any]:
    api = "networking.istio.io/v1"
    target = {"CircuitBreakerPolicy": "DestinationRule", "RoutingPolicy": "VirtualService"}[kind]
    return {
        "targetRef": {"apiVersion": api, "kind": target, "name": "vllm"},
        "prometheus": {"url": "http://prometheus:9090"},
        "health": HEALTH,
        "backends": [
            {
                "name": name,
                "subset": name,
                "requestsPerReplica": 10,
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            }
            for name in ("h100", "l4")
        ],
        **spec,
    }


def readings(error_rates: dict[str, float | None]) -> list[BackendReading]:
    """Each backend as read: its request rate and ready replicas."""
    return [BackendReading(name, {"request_rate": 12.0}, 4) for name in error_rates]


def signals(error_rates: dict[str, float | None]) -> tuple[BackendSignals, ...]:
    """Each backend's signals; a failing one has a high error rate and failure score."""
    return tuple(
        BackendSignals(name, failure_score=None if rate is None else min(1.0, rate * 10), error_rate=rate,
                       ttft_s=0.5, ready_replicas=4)
        for name, rate in error_rates.items()
    )  # fmt: skip


def breaker_record(error_rates: dict[str, float | None]) -> DecisionRecord:
    raw = traffic_spec("CircuitBreakerPolicy")
    spec = parse_circuit_breaker_policy(raw)
    policy = PolicySnapshot("CircuitBreakerPolicy", "demo", "vllm", "uid", 1, raw, {})
    seen = signals(error_rates)
    inputs = BreakerInputs(seen, {}, spec.bounds, spec.health.limits)
    decision = decide_breakers(inputs, {}, NOW)
    logged = backend_inputs(seen, readings(error_rates))
    return circuit_breaking._record(policy, spec, decision, {}, True, True, logged, NOW)


def routing_record(error_rates: dict[str, float | None], weights: dict[str, int], **spec_fields: Any) -> DecisionRecord:
    raw = traffic_spec("RoutingPolicy", **spec_fields)
    spec = parse_routing_policy(raw)
    policy = PolicySnapshot("RoutingPolicy", "demo", "vllm", "uid", 1, raw, {})
    seen = signals(error_rates)
    ref = ObjectRef("networking.istio.io/v1", "VirtualService", "demo", "vllm")
    live = {k: float(v) for k, v in weights.items()}
    observed = RouteObservation(LiveObject(ref, {}), live, 100, {}, {})
    decision = decide_routing(routing_inputs(spec, seen, live, 100, "1", {}), RoutingState(), NOW)
    changed = dict(decision.weights) != weights
    step = RoutingStep(decision, seen)
    return routing._record(policy, spec, step, observed, changed, changed, readings(error_rates), NOW)


TRAFFIC_DECISIONS: dict[str, Callable[[], DecisionRecord]] = {
    "breaker-tighten": lambda: breaker_record({"h100": 0.3, "l4": 0.0}),
    "breaker-signals-missing": lambda: breaker_record({"h100": None, "l4": 0.0}),
    "routing-shift": lambda: routing_record({"h100": 0.3, "l4": 0.0}, {"h100": 50, "l4": 50}),
    "routing-canary": lambda: routing_record(
        {"h100": 0.0, "l4": 0.0},
        {"h100": 100, "l4": 0},
        strategy="Canary",
        canary={"stable": "h100", "canary": "l4", "stepPercent": 25},
    ),
}


SCALING_DECISIONS = {
    "scale-up": scale_up,
    "recommendation": recommendation,
    "stabilized-hold": stabilized_hold,
    "rate-limited": rate_limited_scale_up,
    "metrics-missing": metrics_missing,
    "fallback": fallback,
}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


ALL_DECISIONS = {**SCALING_DECISIONS, **PREDICTIVE_DECISIONS, **TRAFFIC_DECISIONS}


@pytest.mark.parametrize("build", ALL_DECISIONS.values(), ids=ALL_DECISIONS.keys())
def test_every_decision_line_matches_the_schema(build: Any) -> None:
    line = json.loads(json.dumps(build().to_log(), allow_nan=False))  # what a reader of the log gets back
    VALIDATOR.validate(line)


CRD_FILES = {
    "ScalingPolicy": "crds/scalingpolicies.yaml",
    "CircuitBreakerPolicy": "crds/circuitbreakerpolicies.yaml",
    "RoutingPolicy": "crds/routingpolicies.yaml",
}


def last_decision_schema(kind: str) -> dict[str, Any]:
    (crd,) = [d for d in yaml.safe_load_all((REPO / CRD_FILES[kind]).read_text()) if d]
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["lastDecision"]
    return schema


@pytest.mark.parametrize("build", ALL_DECISIONS.values(), ids=ALL_DECISIONS.keys())
def test_status_keeps_the_path_of_a_predictive_decision_in_fields_the_crd_declares(build: Any) -> None:
    record = build()
    status = record.to_status()
    assert status.get("path") == record.output.get("path"), "the path when the record has one, else none"
    declared = last_decision_schema(record.kind)["properties"]
    # The API server prunes undeclared status fields: each one written must be declared, with its values.
    assert set(status) <= set(declared), set(status) - set(declared)
    if "path" in status:
        assert status["path"] in declared["path"]["enum"]
    assert "path" not in record.to_log(), "the log line has it once, in its output"


def test_the_predictive_scenarios_cover_every_path_with_its_forecast() -> None:
    """Guards the predictive table: each scenario must still reach the path it stands for."""
    records = {name: build() for name, build in PREDICTIVE_DECISIONS.items()}
    assert {name: r.output["path"] for name, r in records.items()} == {
        "forecast": "forecast",
        "limit": "limit",
        "capacity-unknown": "reactive",
        "load-missing": "hold",
        "gpu-nodes-short": "reactive",
    }
    short = records["gpu-nodes-short"].inputs["forecast"]
    assert (short["pendingReplicas"], short["schedulingDelaySeconds"], short["leadTimeSeconds"]) == (1, 40, 60)
    assert "pendingReplicas" not in records["forecast"].inputs["forecast"], "shown only while GPU nodes are short"
    up, limited = records["forecast"], records["limit"]
    assert (up.action, up.from_, up.reason) == ("ScaleUp", RISING, "ForecastScaleUp") and up.to > RISING + 1
    forecast = up.inputs["forecast"]
    assert forecast["observedLoad"] < RISING * 100 < forecast["quantile"], "the forecast asked, not the load of now"
    assert up.output["recommendedReplicas"] == up.to, "the paths' ask, not the reactive policy's"
    assert (limited.to, limited.reasons[-1]) == (RISING + 1, "ScaleUpRateLimited")
    assert limited.output["recommendedReplicas"] == up.to, "recommended differs exactly when a rule limited"
    assert records["capacity-unknown"].reason == "CapacityUnknown"
    assert "capacityPerReplica" not in records["capacity-unknown"].inputs["forecast"]
    missing = records["load-missing"].inputs["forecast"]
    assert (missing["error"], missing["observedLoad"]) == ("Unreachable", None)


def test_the_traffic_scenarios_cover_their_actions() -> None:
    records = {name: build() for name, build in TRAFFIC_DECISIONS.items()}
    assert records["breaker-tighten"].action == "Tighten" and records["breaker-tighten"].to == 1
    assert records["breaker-signals-missing"].inputs["backends"][0]["failureScore"] is None
    assert records["routing-shift"].action == "Shift"
    assert records["routing-shift"].output["weights"]["h100"] < 50
    assert records["routing-canary"].action == "Step" and records["routing-canary"].to == 25


def test_the_scenarios_cover_each_action_and_the_limiting_rules() -> None:
    """Guards the table above: a scenario that stopped producing its decision would prove nothing."""
    records = {name: build() for name, build in SCALING_DECISIONS.items()}
    assert {r.action for r in records.values()} == {"ScaleUp", "Hold"}
    assert (records["scale-up"].action, records["scale-up"].to, records["scale-up"].applied) == ("ScaleUp", 3, True)
    assert records["recommendation"].applied is False and records["recommendation"].to == 5
    assert records["stabilized-hold"].reasons[-1] == "ScaleDownStabilized"
    assert records["rate-limited"].reasons[-1] == "ScaleUpRateLimited" and records["rate-limited"].to == 2
    assert records["metrics-missing"].inputs["metrics"][0]["value"] is None
    assert records["fallback"].reasons[0] == "FallbackReplicas" and records["fallback"].to == 4


def test_a_scale_down_line_matches_the_schema() -> None:
    spec = scaling_spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    record = decide(spec, 4, 4.0)[0]
    assert record.action == "ScaleDown"
    VALIDATOR.validate(record.to_log())


@pytest.mark.parametrize(
    ("change", "where"),
    [
        pytest.param(lambda d: d.update(action="Eject"), "action", id="action-of-another-kind"),
        pytest.param(lambda d: d.update(unknown=1), "", id="unknown-field"),
        pytest.param(lambda d: d["inputs"].pop("readyReplicas"), "inputs", id="scaling-input-missing"),
        pytest.param(lambda d: d["inputs"]["metrics"][0].update(value="12"), "inputs", id="value-as-text"),
        pytest.param(lambda d: d.update(time="2026-11-12 09:14:05"), "time", id="time-not-rfc3339"),
        pytest.param(lambda d: d.update(policy="vllm"), "policy", id="policy-without-namespace"),
    ],
)
def test_the_schema_rejects_malformed_lines(change: Any, where: str) -> None:
    line = copy.deepcopy(scale_up().to_log())
    change(line)
    errors = list(VALIDATOR.iter_errors(line))
    assert errors, "the malformed line was accepted"
    assert any(where in "/".join(map(str, e.absolute_path)) for e in errors)


DOC = (REPO / "docs/decision-log.md").read_text()


def test_every_example_in_the_documentation_matches_the_schema() -> None:
    examples = re.findall(r"```json\n(.*?)\n```", DOC, flags=re.DOTALL)
    assert len(examples) >= 3
    for example in examples:
        VALIDATOR.validate(json.loads(example))


def test_the_documentation_describes_every_field() -> None:
    documented = set(re.findall(r"`(\w+)(?:\[\])?`", DOC))
    for fields in (
        SCHEMA["properties"],
        SCHEMA["$defs"]["scalingInputs"]["properties"],
        SCHEMA["$defs"]["scalingOutput"]["properties"],
        SCHEMA["$defs"]["forecast"]["properties"],
        SCHEMA["$defs"]["trafficInputs"]["properties"],
        SCHEMA["$defs"]["trafficInputs"]["properties"]["backends"]["items"]["properties"],
        SCHEMA["$defs"]["breakerOutput"]["properties"],
        SCHEMA["$defs"]["breakerOutput"]["properties"]["backends"]["items"]["properties"],
        SCHEMA["$defs"]["routingOutput"]["properties"],
        SCHEMA["$defs"]["routingOutput"]["properties"]["backends"]["items"]["properties"],
    ):
        assert set(fields) <= documented, set(fields) - documented
