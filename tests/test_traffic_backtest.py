"""Our traffic policies in the traffic backtest: what they read of a simulation (the Prometheus view),
how their settings become the judge's (one mapping table), and that the backtest runs the operator's
own decide step, closed loop. Hand-made scenarios only (tests/harness/traffic_backtest.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from controller.backtest.traffic import policy as backtest_policy
from controller.backtest.traffic.mapping import FIELDS, WEIGHT, judge_values, live_breakers
from controller.backtest.traffic.observe import HostWindow, Observation, SubsetWindow
from controller.backtest.traffic.policy import CIRCUIT_BREAKER, ROUTING, PolicyDocument, TrafficPolicies
from controller.backtest.traffic.readings import TPOT_BUCKETS_S, TTFT_BUCKETS_S, PrometheusView, histogram_quantile
from controller.backtest.traffic.report import promoted_at
from controller.backtest.traffic.run import run_with_record
from controller.backtest.traffic.settings import Change, ProxySettings
from controller.traffic import circuit_breakers, decide, routing_weights
from controller.traffic.signals import BackendReading, SignalMemory, backend_signals
from controller.traffic.spec import CapacitySpec, parse_circuit_breaker_policy, parse_routing_policy
from policies import BreakerSettings, ConnectionPool, OutlierDetection
from tests.harness.traffic_backtest import every, scenario, trace

# --- the Prometheus view ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "samples", "expected"),
    [
        (0.95, [0.3] * 9 + [0.6], 0.625),  # rank 9.5 lands in (0.5, 0.75], half-way through its one sample
        (0.5, [0.0005] * 4, 0.0005),  # the first bucket starts at 0
        (1.0, [0.25, 0.25], 0.25),  # a value on a bound belongs to that bucket (le)
        (0.95, [3000.0] * 10, 2560.0),  # beyond the last bound: the highest finite one
    ],
)
def test_histogram_quantile_is_prometheus(q: float, samples: list[float], expected: float) -> None:
    assert histogram_quantile(q, samples, TTFT_BUCKETS_S) == pytest.approx(expected)


def test_histogram_quantile_of_nothing_is_missing() -> None:
    assert histogram_quantile(0.95, [], TPOT_BUCKETS_S) is None


def host(index: int, responses: int, errors: int = 0, ttft: float = 0.3, tpot: float = 0.02) -> HostWindow:
    good = responses - errors
    return HostWindow(index, responses, responses, errors, (ttft,) * good, (tpot,) * good, 0, 0, 0, False)


def observed(start: float, end: float, *hosts: HostWindow) -> Observation:
    window = SubsetWindow("pool", ProxySettings(), 0, 0, 0, 0, {}, 0, (), (), 0, 0, 0, hosts)
    return Observation(start, end, (window,))


def test_rates_cover_the_rate_window_only() -> None:
    view = PrometheusView(60)
    view.add(observed(0, 30, host(0, 30, errors=30), host(1, 30)))
    view.add(observed(30, 60, host(0, 30), host(1, 30)))
    first = view.reading("b", "pool", 60, 0.05, 60)
    assert first.values["request_rate"] == pytest.approx(2.0)
    assert first.values["error_rate"] == pytest.approx(0.25)
    view.add(observed(60, 90, host(0, 30), host(1, 30)))
    later = view.reading("b", "pool", 60, 0.05, 60)
    assert later.values["error_rate"] == 0.0  # the failing half-minute left the window
    assert later.ready_replicas == 2
    assert (later.values["latency_ms"], later.values["saturation"]) == (None, None)  # not simulated: missing


def test_a_young_run_reports_the_requests_it_saw() -> None:
    view = PrometheusView(60)
    view.add(observed(0, 5, host(0, 10)))
    reading = view.reading("b", "pool", 60, 0.05, 60)
    assert reading.values["request_rate"] == pytest.approx(10 / 60)  # rate x window = the 10 requests seen


def test_latency_quantiles_come_from_the_servers_histograms() -> None:
    view = PrometheusView(60)
    view.add(observed(0, 60, host(0, 20, ttft=0.3, tpot=0.02), host(1, 20, ttft=0.6, tpot=0.06)))
    reading = view.reading("b", "pool", 60, 0.05, 60)
    assert reading.values["ttft_s"] == pytest.approx(histogram_quantile(0.95, [0.3] * 20 + [0.6] * 20, TTFT_BUCKETS_S))
    assert reading.values["tpot_s"] == pytest.approx(0.05 + 0.025 * (38 - 20) / 20)


@pytest.mark.parametrize(
    ("errors", "failing"),
    [
        ((10, 0, 0, 0), 1),  # one host fails half of its requests, its peers none
        ((10, 10, 0, 0), 2),
        ((4, 4, 4, 4), 0),  # the pool fails as a whole: no host stands out
        ((1, 0, 0, 0), 0),  # 5 %: below the error limit
        ((0, 0, 0, 0), 0),
    ],
)
def test_failing_replicas_are_the_hosts_whose_errors_stand_out(errors: tuple[int, ...], failing: int) -> None:
    view = PrometheusView(60)
    view.add(observed(0, 60, *(host(i, 20, errors=e) for i, e in enumerate(errors))))
    assert view.reading("b", "pool", 60, 0.06, 60).values["failing_replicas"] == failing


def test_a_host_sitting_out_an_ejection_still_counts_as_failing() -> None:
    view = PrometheusView(60)
    view.add(observed(0, 60, host(0, 20, errors=20), host(1, 20), host(2, 20)))
    for start in range(60, 240, 60):  # host 0 ejected: it answers nothing for three minutes
        view.add(observed(start, start + 60, host(0, 0), host(1, 20), host(2, 20)))
    reading = view.reading("b", "pool", 60, 0.05, 60)
    assert reading.values["error_rate"] == 0.0
    assert reading.values["failing_replicas"] == 1


def engine(
    index: int, running: int, generated: float, responses: int = 5, errors: int = 0, waiting: int = 0
) -> HostWindow:
    """A host at a window's end: ``running`` and ``waiting`` sequences, ``generated`` tokens since the run started."""
    return HostWindow(index, responses, responses, errors, (0.3,) * (responses - errors), (), 0, running, waiting,
                      False, generated_tokens=generated)  # fmt: skip


@pytest.mark.parametrize(
    ("before", "now", "stalled", "failing"),
    [
        ((engine(0, 2, 100), engine(1, 2, 100)), (engine(0, 2, 300), engine(1, 2, 250)), 0, 0),  # both decode
        (
            (engine(0, 0, 100, waiting=1), engine(1, 2, 100)),
            (engine(0, 0, 100, waiting=4), engine(1, 2, 250)),
            1,
            1,  # host 0 hung between steps: its queue grows, nothing runs
        ),
        ((engine(0, 2, 100), engine(1, 2, 100)), (engine(0, 2, 100), engine(1, 2, 250)), 1, 1),  # host 0 hung
        ((engine(0, 0, 100), engine(1, 2, 100)), (engine(0, 0, 100), engine(1, 2, 250)), 0, 0),  # host 0 idle
        ((engine(0, 0, 100), engine(1, 2, 100)), (engine(0, 1, 100), engine(1, 2, 250)), 0, 0),  # ... then busy
        ((engine(0, 2, 100), engine(1, 2, 100)), (engine(0, 2, 100), engine(1, 2, 100)), 2, 2),  # both hung
        ((engine(0, 2, 100), engine(1, 2, 900)), (engine(0, 2, 100), engine(1, 2, 40)), 1, 1),  # 1 restarted: a reset
        ((engine(0, 2, 100), engine(1, 2, 100)), (engine(0, 2, 100, 5, 5), engine(1, 2, 250)), 1, 1),  # once
        (
            (engine(0, 2, 100), engine(1, 2, 100), engine(2, 2, 100)),
            (engine(0, 2, 100), engine(1, 2, 250), engine(2, 2, 250, 5, 5)),
            1,
            2,  # one hung, another failing
        ),
    ],
)
def test_stalled_replicas_are_the_hosts_that_held_requests_through_the_interval_without_a_token(
    before: tuple[HostWindow, ...], now: tuple[HostWindow, ...], stalled: int, failing: int
) -> None:
    view = PrometheusView(60)
    view.add(observed(0, 5, *before))
    view.add(observed(5, 10, *now))
    reading = view.reading("b", "pool", 60, 0.05, 5)
    assert (reading.values["stalled_replicas"], reading.values["failing_replicas"]) == (stalled, failing)


def test_a_stall_is_unknown_until_a_whole_interval_was_observed() -> None:
    view = PrometheusView(60)
    view.add(observed(0, 5, engine(0, 2, 0)))
    assert view.reading("b", "pool", 60, 0.05, 5).values["stalled_replicas"] is None
    view.add(observed(5, 10, engine(0, 2, 0)))
    assert view.reading("b", "pool", 60, 0.05, 10).values["stalled_replicas"] is None  # the interval started at 0
    assert view.reading("b", "pool", 60, 0.05, 5).values["stalled_replicas"] == 1


# --- the mapping table ------------------------------------------------------------------------------


def test_the_table_maps_every_judge_field_and_every_policy_field_but_the_panic_threshold() -> None:
    judge = {f.name for f in fields(ProxySettings)} - {WEIGHT}
    assert sorted(theirs for _, _, theirs in FIELDS) == sorted(judge)
    ours = {("outlier", f.name) for f in fields(OutlierDetection)} | {("pool", f.name) for f in fields(ConnectionPool)}
    assert ours - {(part, name) for part, name, _ in FIELDS} == {("outlier", "min_health_percent")}


def test_a_decision_becomes_the_judges_fields() -> None:
    settings = BreakerSettings(OutlierDetection(2, 1, 5, 120, 25, 60), ConnectionPool(256, 32, 1))
    assert judge_values(settings) == {
        "consecutive5xxErrors": 2,
        "consecutiveGatewayErrors": 1,
        "interval_s": 5,
        "baseEjectionTime_s": 120,
        "maxEjectionPercent": 25,
        "http2MaxRequests": 256,
        "http1MaxPendingRequests": 32,
        "maxRetries": 1,
    }
    assert set(judge_values(BreakerSettings(outlier=settings.outlier))) == {
        "consecutive5xxErrors",
        "consecutiveGatewayErrors",
        "interval_s",
        "baseEjectionTime_s",
        "maxEjectionPercent",
    }


def test_settings_in_force_read_back_as_the_actuator_would_observe_them() -> None:
    live = ProxySettings(weight=30, consecutive5xxErrors=5, interval_s=10, maxEjectionPercent=12, maxRetries=2)
    read = live_breakers(live)
    assert read.outlier is not None and read.outlier.min_health_percent == 0  # Istio's default: not simulated
    assert judge_values(read) == {k: v for k, v in live.as_dict().items() if k != WEIGHT}


# --- the closed loop --------------------------------------------------------------------------------


def test_the_backtest_decides_through_the_operators_own_decide_step() -> None:
    for step in (decide.decide_circuit_breakers, decide.decide_weights):
        cycle = circuit_breakers if step is decide.decide_circuit_breakers else routing_weights
        assert vars(backtest_policy)[step.__name__] is step
        assert vars(cycle)[step.__name__] is step


def backend(name: str, **extra: Any) -> dict[str, Any]:
    workload = {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"vllm-{name}"}
    return {"name": name, "subset": name, "workloadRef": workload, **extra}


PROMETHEUS = {"url": "http://prometheus:9090"}
HEALTH = {"maxErrorRate": 0.05, "rateWindow": "30s", "recoveryHoldSeconds": 30}


def breaker_spec(*names: str) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "name": "vllm"},
        "interval": 5,
        "prometheus": PROMETHEUS,
        "backends": [backend(n, requestsPerReplica=100) for n in names],
        "health": HEALTH,
        "outlierDetection": {"consecutiveGatewayErrors": {"tight": 1, "relaxed": 7}},
    }


def breakers(*names: str) -> PolicyDocument:
    return PolicyDocument(CIRCUIT_BREAKER, "breakers", parse_circuit_breaker_policy(breaker_spec(*names)))


def canary_route(**canary: Any) -> PolicyDocument:
    spec = {
        "targetRef": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"},
        "interval": 5,
        "prometheus": PROMETHEUS,
        "strategy": "Canary",
        "backends": [backend("stable"), backend("canary")],
        "health": HEALTH,
        "canary": {"stable": "stable", "canary": "canary", "minRequests": 20, **canary},
    }
    return PolicyDocument(ROUTING, "canary", parse_routing_policy(spec))


def gateway_thresholds(decisions: list[Change], subset: str) -> list[tuple[float, float]]:
    return [(c.time_s, c.value) for c in decisions if c.subset == subset and c.field == "consecutiveGatewayErrors"]


def test_a_failing_host_tightens_its_pool_and_is_ejected() -> None:
    faulty = {"type": "error", "subset": "stable", "hosts": [0], "start_s": 40, "p": 1.0, "status": 503}
    run = scenario(trace(every(0.125, 90)), subsets=[{"name": "stable", "hosts": 4}], faults=[faulty])
    policies = TrafficPolicies([breakers("stable")], run)
    result, record = run_with_record(run, policies)
    thresholds = gateway_thresholds(result.decisions, "stable")
    assert thresholds[:2] == [(0.0, 0), (5.0, 7)]  # the scenario's, then the relaxed end
    tightened = [t for t, value in thresholds if value == 1]
    assert tightened and 40 < tightened[0] <= 50  # within two decisions of the fault
    assert {e.host for e in record.ejections} == {0}
    assert {v.subset for v in policies.verdicts} == {"stable"}


def test_a_canary_with_errors_is_rolled_back_and_a_healthy_one_promoted() -> None:
    subsets = [{"name": "stable", "hosts": 2, "weight": 90}, {"name": "canary", "hosts": 2, "weight": 10}]
    errors = {"type": "error", "subset": "canary", "start_s": 0, "p": 0.5, "status": 503}
    requests = trace(every(0.0625, 200))
    bad = scenario(requests, subsets=subsets, faults=[errors])
    result = run_with_record(bad, TrafficPolicies([canary_route()], bad))[0]
    assert result.final_settings["canary"].weight == 0
    assert promoted_at(result.decisions, bad) is None
    good = scenario(requests, subsets=subsets)
    result = run_with_record(good, TrafficPolicies([canary_route(stepPercent=20, stepIntervalSeconds=30)], good))[0]
    assert result.final_settings["canary"].weight == 100
    promoted = promoted_at(result.decisions, good)
    assert promoted is not None and promoted <= 150  # 10 -> 30 -> 50 -> 70 -> 90 -> 100, 30 s apart


def test_a_policy_serves_the_backends_it_finds_and_says_why_it_does_not_act() -> None:
    run = scenario(trace(every(0.5, 20)), subsets=[{"name": "stable", "hosts": 2}])
    policies = TrafficPolicies([breakers("stable", "l4"), canary_route(), breakers("stable")], run)
    assert [(loop.name, loop.subsets) for loop in policies.loops] == [("breakers", {"stable": "stable"})]
    assert policies.notes == [
        f"{CIRCUIT_BREAKER} breakers: serving stable; not in the scenario: l4",
        f"{ROUTING} canary: not acting, the canary needs both backends (missing: canary)",
        f"{CIRCUIT_BREAKER} breakers: not acting, its subsets are already tuned by breakers",
    ]
    assert policies.interval_s == 5.0


def test_the_load_that_needs_capacity_is_the_load_served() -> None:
    """Failed attempts are no load: a pool failing half its requests does not look twice as busy."""
    backend = parse_circuit_breaker_policy(breaker_spec("stable")).backends[0]
    reading = BackendReading("stable", {"request_rate": 20.0, "error_rate": 0.5}, 4)
    signals = backend_signals(backend, reading, SignalMemory(), CapacitySpec(horizon_s=0), 5, "1m", 0.0)
    assert signals.needed_replicas == pytest.approx(10.0 / 100)
