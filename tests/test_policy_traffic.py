"""Circuit-breaker and routing decisions: tables of cases, the HPA controller's way of testing."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TypedDict, Unpack

import pytest

from policies import (
    BackendBreaker,
    BackendHealth,
    BackendSignals,
    BreakerBounds,
    BreakerDecision,
    BreakerInputs,
    BreakerSettings,
    CanarySpec,
    CanaryState,
    HealthLimits,
    Reason,
    RoutedBackend,
    RoutingDecision,
    RoutingInputs,
    RoutingState,
    Tightening,
    assess,
    decide_breakers,
    decide_routing,
    failure_score,
    health_from_dict,
    health_to_dict,
)

NOW = 1_700_000_000.0
LIMITS = HealthLimits(max_error_rate=0.05, max_ttft_s=2.0, upper=0.5, lower=0.2, hold_s=60)


# --- failure score and hysteresis -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        (BackendSignals("a"), None),
        (BackendSignals("a", error_rate=math.nan, ttft_s=math.inf), None),
        (BackendSignals("a", error_rate=0.05), 0.5),  # at the limit: the detector's alert level
        (BackendSignals("a", error_rate=0.0125), 0.125),
        (BackendSignals("a", error_rate=0.5), 1.0),  # clipped
        (BackendSignals("a", ttft_s=3.0, error_rate=0.01), 0.75),  # the worst signal decides
        (BackendSignals("a", failure_score=0.9, error_rate=0.0), 0.9),  # the detector alone
        (BackendSignals("a", failure_score=-1.0, latency_ms=900.0), None),  # no latency limit set
    ],
)
def test_failure_score(signals: BackendSignals, expected: float | None) -> None:
    assert failure_score(signals, LIMITS) == expected


# (score, previous state) -> (flagged, reason)
HYSTERESIS = {
    "healthy stays healthy": (0.1, BackendHealth(), False, Reason.BackendHealthy),
    "below upper is not enough to flag": (0.49, BackendHealth(), False, Reason.BackendHealthy),
    "at upper flags at once": (0.5, BackendHealth(), True, Reason.BackendDegraded),
    "between thresholds keeps the flag": (0.3, BackendHealth(True, NOW - 100), True, Reason.RecoveryPending),
    "calm starts the hold": (0.1, BackendHealth(True), True, Reason.RecoveryPending),
    "calm within the hold": (0.1, BackendHealth(True, NOW - 59), True, Reason.RecoveryPending),
    "calm for the whole hold releases": (0.1, BackendHealth(True, NOW - 60), False, Reason.BackendRecovered),
    "a calm start in the future restarts": (0.1, BackendHealth(True, NOW + 500), True, Reason.RecoveryPending),
    "missing data keeps a flag": (None, BackendHealth(True, NOW - 30), True, Reason.BackendDataMissing),
    "missing data keeps health": (None, BackendHealth(), False, Reason.BackendDataMissing),
}


@pytest.mark.parametrize(("score", "previous", "flagged", "reason"), HYSTERESIS.values(), ids=HYSTERESIS.keys())
def test_hysteresis(score: float | None, previous: BackendHealth, flagged: bool, reason: Reason) -> None:
    health, got = assess(score, previous, LIMITS, NOW)
    assert (health.flagged, got) == (flagged, reason)


def test_a_wobble_between_thresholds_restarts_the_hold() -> None:
    health, _ = assess(0.9, BackendHealth(), LIMITS, NOW)
    for t, score in ((10, 0.1), (40, 0.3), (80, 0.1), (130, 0.1)):
        health, reason = assess(score, health, LIMITS, NOW + t)
        assert health.flagged, f"released at +{t}s although calm only since +80s"
    health, reason = assess(0.1, health, LIMITS, NOW + 140)
    assert (health.flagged, reason) == (False, Reason.BackendRecovered)


def test_health_state_round_trips_and_never_raises_on_garbage() -> None:
    state = {"a": BackendHealth(True, NOW), "b": BackendHealth()}
    assert health_from_dict(health_to_dict(state)) == state
    garbage: object
    for garbage in (None, [], {"a": 3}, {"a": {"flagged": "yes", "calmSince": True}}, {"a": {"calmSince": -5}}):
        assert all(h == BackendHealth() for h in health_from_dict(garbage).values())


# --- circuit breaker ------------------------------------------------------------------------------

BOUNDS = BreakerBounds(
    consecutive_5xx_errors=Tightening(2, 10),
    consecutive_gateway_errors=Tightening(2, 8),
    interval_s=Tightening(5, 30),
    base_ejection_time_s=Tightening(120, 30),
    max_ejection_percent=Tightening(50, 20),
    min_health_percent=Tightening(10, 90),
    max_retries=Tightening(0, 3),
    target_in_flight_per_replica=32,
    pending_per_replica=8,
    client_proxies=4,
)


def breaker(
    signals: BackendSignals, previous: BackendHealth | None = None, current: BreakerSettings | None = None
) -> tuple[BackendBreaker, BreakerDecision]:
    inputs = BreakerInputs((signals,), {signals.name: current} if current else {}, BOUNDS, LIMITS)
    decision = decide_breakers(inputs, {signals.name: previous} if previous else {}, NOW)
    (backend,) = decision.backends
    return backend, decision


def test_a_degraded_backend_gets_the_tight_end_of_every_bound() -> None:
    backend, decision = breaker(BackendSignals("h100", error_rate=0.2, ready_replicas=10, needed_replicas=4))
    outlier = backend.settings.outlier
    assert outlier is not None
    assert (outlier.consecutive_5xx_errors, outlier.consecutive_gateway_errors, outlier.interval_s) == (2, 2, 5)
    assert (outlier.base_ejection_time_s, outlier.max_ejection_percent) == (120, 50)
    assert outlier.min_health_percent == 40  # 4 of 10 replicas carry the forecast load
    assert backend.settings.pool is not None and backend.settings.pool.max_retries == 0
    assert decision.reasons[0] is Reason.BackendDegraded
    assert decision.health["h100"].flagged


def test_a_healthy_backend_gets_the_relaxed_end() -> None:
    backend, _ = breaker(BackendSignals("h100", error_rate=0.0, ready_replicas=10, needed_replicas=4))
    outlier = backend.settings.outlier
    assert outlier is not None
    assert (outlier.consecutive_5xx_errors, outlier.interval_s, outlier.base_ejection_time_s) == (10, 30, 30)
    assert outlier.max_ejection_percent == 20


@pytest.mark.parametrize(
    ("ready", "needed", "max_ejection"),
    [
        (10, 4, 50),  # 60 % spare: the tight 50 % applies
        (10, 7, 30),  # only 3 replicas spare
        (10, 6.2, 30),  # 6.2 replicas of load need 7 replicas
        (4, 4, 25),  # nothing spare, but a pool within its SLO may lose its worst host (Envoy's floor)
        (4, 9, 25),  # ... even when the forecast asks for more than exists
        (0, 1, 0),
        (10, None, 20),  # forecast unknown: the cautious end of the bound
    ],
)
def test_ejection_never_takes_capacity_the_forecast_needs(ready: int, needed: float | None, max_ejection: int) -> None:
    backend, _ = breaker(BackendSignals("a", error_rate=0.3, ready_replicas=ready, needed_replicas=needed))
    assert backend.settings.outlier is not None
    assert backend.settings.outlier.max_ejection_percent == max_ejection
    if max_ejection < 50:
        assert Reason.EjectionCappedByCapacity in backend.reasons


@pytest.mark.parametrize(("ready", "http2", "pending"), [(1, 8, 2), (10, 80, 20), (3, 24, 6), (0, 1, 1)])
def test_connection_pool_by_littles_law(ready: int, http2: int, pending: int) -> None:
    backend, _ = breaker(BackendSignals("a", error_rate=0.0, ready_replicas=ready))
    pool = backend.settings.pool
    assert pool is not None
    # 32 in flight per replica and 8 pending per replica, shared by 4 client proxies.
    assert (pool.http2_max_requests, pool.http1_max_pending_requests) == (http2, pending)


def test_missing_data_keeps_the_live_values() -> None:
    live = breaker(BackendSignals("a", error_rate=0.3, ready_replicas=10, needed_replicas=2))[0].settings
    backend, decision = breaker(BackendSignals("a"), previous=BackendHealth(), current=live)
    assert backend.settings == live
    assert decision.reasons == (Reason.BackendDataMissing,)


def test_missing_data_with_nothing_live_writes_nothing() -> None:
    backend, _ = breaker(BackendSignals("a"))
    assert backend.settings == BreakerSettings()


def test_replicas_known_but_metrics_missing_resizes_the_pool_only() -> None:
    live = breaker(BackendSignals("a", error_rate=0.0, ready_replicas=2, needed_replicas=1))[0].settings
    backend, _ = breaker(BackendSignals("a", ready_replicas=8), current=live)
    assert backend.settings.outlier == live.outlier
    assert backend.settings.pool is not None and backend.settings.pool.http2_max_requests == 64


def test_relaxes_only_after_the_hold() -> None:
    flagged = BackendHealth(True, NOW - 30)
    backend, _ = breaker(BackendSignals("a", error_rate=0.0, ready_replicas=4), previous=flagged)
    assert backend.settings.outlier is not None and backend.settings.outlier.consecutive_5xx_errors == 2
    backend, _ = breaker(BackendSignals("a", error_rate=0.0, ready_replicas=4), previous=BackendHealth(True, NOW - 60))
    assert backend.settings.outlier is not None and backend.settings.outlier.consecutive_5xx_errors == 10


@pytest.mark.parametrize(
    ("ready", "needed", "failing", "max_ejection"),
    [
        (8, 7.5, 0, 12),  # no spare capacity, nothing failing: the one host Envoy always lets go
        (8, 7.5, 1, 12),  # a replica failing on its own: floor(100 x 1 / 8) lets exactly one go
        (8, 7.5, 2, 12),  # two failing, the six healthy short of the load: one at a time
        (8, 6, 2, 25),  # two failing, the six healthy carry the load: both may go
        (8, 4, 1, 50),  # plenty spare: the tight bound
        (8, 20, 1, 12),  # an overload still lets its failing replica go, and only it
        (8, 20, 3, 12),  # ... one of its failing replicas at a time
        (8, 6, 9, 12),  # a count beyond the replicas is clipped (none healthy: one at a time)
    ],
)
def test_a_replica_failing_on_its_own_is_not_capacity_the_load_counts_on(
    ready: int, needed: float, failing: int, max_ejection: int
) -> None:
    signals = BackendSignals(
        "a", error_rate=0.3, ready_replicas=ready, needed_replicas=needed, failing_replicas=failing
    )
    backend, _ = breaker(signals)
    assert backend.settings.outlier is not None
    assert backend.settings.outlier.max_ejection_percent == max_ejection


@pytest.mark.parametrize(("failing", "max_ejection"), [(0, 0), (1, 12)])
def test_an_overloaded_pool_ejects_only_its_failing_replicas(failing: int, max_ejection: int) -> None:
    """Short of replicas and over its latency limit: every host times out alike, none may go unless failing."""
    signals = BackendSignals(
        "a", error_rate=0.3, ttft_s=3.0, ready_replicas=8, needed_replicas=12, failing_replicas=failing
    )
    backend, _ = breaker(signals)
    assert backend.settings.outlier is not None
    assert backend.settings.outlier.max_ejection_percent == max_ejection


def test_a_replica_failing_on_its_own_tightens_a_healthy_pool() -> None:
    quiet = BackendSignals("a", error_rate=0.01, ready_replicas=8, needed_replicas=4)
    one_bad = BackendSignals("a", error_rate=0.01, ready_replicas=8, needed_replicas=4, failing_replicas=1)
    relaxed, _ = breaker(quiet)
    tight, decision = breaker(one_bad)
    assert relaxed.settings.outlier is not None and tight.settings.outlier is not None
    assert (relaxed.settings.outlier.consecutive_gateway_errors, tight.settings.outlier.consecutive_gateway_errors) == (
        8,
        2,
    )
    assert tight.settings.outlier.base_ejection_time_s == 120
    assert Reason.ReplicasFailing in tight.reasons
    assert not decision.health["a"].flagged  # the pool itself is not degraded: routing leaves it alone


@pytest.mark.parametrize(
    ("failing", "stalled", "gateway_errors", "why"),
    [
        (None, None, 8, set()),  # nothing read about the replicas: relaxed
        (0, 0, 8, set()),
        (1, 1, 2, {Reason.ReplicasStalled}),  # the stalled replica is the failing one
        (None, 1, 2, {Reason.ReplicasStalled}),  # the mesh unread, the engine stalled: tight all the same
        (0, 1, 2, {Reason.ReplicasStalled}),  # the counts are read apart: a stalled replica is failing anyway
        (2, 1, 2, {Reason.ReplicasStalled, Reason.ReplicasFailing}),  # one stalled, another failing
        (1, 0, 2, {Reason.ReplicasFailing}),
    ],
)
def test_a_stalled_replica_tightens_its_healthy_pool_and_says_so(
    failing: int | None, stalled: int | None, gateway_errors: int, why: set[Reason]
) -> None:
    """A hung replica answers nothing: the pool's own signals look healthy while its thresholds let
    Envoy eject the replica at its first gateway timeout."""
    signals = BackendSignals(
        "a", error_rate=0.0, ready_replicas=8, needed_replicas=4, failing_replicas=failing, stalled_replicas=stalled
    )
    backend, decision = breaker(signals)
    assert backend.settings.outlier is not None
    assert backend.settings.outlier.consecutive_gateway_errors == gateway_errors
    assert {Reason.ReplicasStalled, Reason.ReplicasFailing} & set(backend.reasons) == why
    assert not decision.health["a"].flagged
    assert ("tight: ReplicasStalled" in decision.message) == (Reason.ReplicasStalled in why)


@pytest.mark.parametrize(
    ("needed", "failing", "stalled", "max_ejection"),
    [
        (7.5, 1, 1, 12),  # one stalled, the rest short of the load: it alone may go
        (6, 2, 2, 25),  # two stalled, the six others carry the load: both may go
        (7.5, 2, 2, 12),  # two stalled, the six others short of the load: one at a time
        (6, 0, 2, 25),  # read apart from the failing count: the stalled ones count as failing
        (5, 3, 2, 37),  # three failing of which two stalled: all three may go, the five others carry the load
    ],
)
def test_a_stalled_replica_goes_under_the_failing_replicas_capacity_bound(
    needed: float, failing: int, stalled: int, max_ejection: int
) -> None:
    signals = BackendSignals(
        "a",
        error_rate=0.0,
        ready_replicas=8,
        needed_replicas=needed,
        failing_replicas=failing,
        stalled_replicas=stalled,
    )
    backend, _ = breaker(signals)
    assert backend.settings.outlier is not None
    assert backend.settings.outlier.max_ejection_percent == max_ejection


@pytest.mark.parametrize(
    ("needed", "ttft_s", "retries", "cut"),
    [
        (3, 0.4, 3, False),  # room and fast: the relaxed retries
        (12, 0.4, 3, False),  # the forecast is short of replicas but the pool keeps its SLO: no overload
        (12, 2.5, 0, True),  # short of replicas and slow: an overload, no retries
        (3, 2.5, 1, False),  # slow with room to spare: flagged, the tight retries, not an overload
    ],
)
def test_retries_are_cut_only_in_an_overload(needed: float, ttft_s: float, retries: int, cut: bool) -> None:
    signals = BackendSignals("a", error_rate=0.0, ttft_s=ttft_s, ready_replicas=8, needed_replicas=needed)
    bounds = replace(BOUNDS, max_retries=Tightening(1, 3))
    (backend,) = decide_breakers(BreakerInputs((signals,), {}, bounds, LIMITS), {}, NOW).backends
    assert backend.settings.pool is not None and backend.settings.pool.max_retries == retries
    assert (Reason.RetriesCutByCapacity in backend.reasons) == cut


def test_an_overload_keeps_the_retries_of_a_replica_failing_on_its_own() -> None:
    """Its failures are fast and its retry goes to another host: the request's one service."""
    signals = BackendSignals("a", error_rate=0.04, ttft_s=2.5, ready_replicas=8, needed_replicas=12, failing_replicas=1)
    bounds = replace(BOUNDS, max_retries=Tightening(1, 3))
    (backend,) = decide_breakers(BreakerInputs((signals,), {}, bounds, LIMITS), {}, NOW).backends
    assert backend.settings.pool is not None and backend.settings.pool.max_retries == 1
    assert Reason.RetriesCutByCapacity not in backend.reasons


def test_tpot_has_a_limit_like_ttft() -> None:
    limits = HealthLimits(max_tpot_s=0.05)
    assert failure_score(BackendSignals("a", tpot_s=0.05), limits) == 0.5
    assert failure_score(BackendSignals("a", tpot_s=0.025), limits) == 0.25


# --- routing: capacity ----------------------------------------------------------------------------


class Signals(TypedDict, total=False):
    """The signals a backend is judged (and a canary compared with its stable version) on; a case sets some."""

    ttft_s: float
    tpot_s: float
    error_rate: float


def backend(
    name: str, weight: float, ready: int = 4, per_replica: float = 1.0, **signals: Unpack[Signals]
) -> RoutedBackend:
    return RoutedBackend(BackendSignals(name, ready_replicas=ready, **signals), weight, per_replica)


def route(
    *backends: RoutedBackend, state: RoutingState | None = None, max_step: int = 20, probe: int = 5
) -> RoutingDecision:
    inputs = RoutingInputs(tuple(backends), LIMITS, max_step=max_step, probe=probe)
    return decide_routing(inputs, state or RoutingState(), NOW)


ROUTES = {
    "equal pools, equal weights: hold": (
        [backend("a", 50, error_rate=0.0), backend("b", 50, error_rate=0.0)],
        {"a": 50, "b": 50},
        Reason.WeightsHeld,
    ),
    "an H100 pool serves 3x an L4 replica": (
        [backend("h100", 50, 2, 3.0, error_rate=0.0), backend("l4", 50, 2, 1.0, error_rate=0.0)],
        {"h100": 70, "l4": 30},  # target 75/25, one step of 20
        Reason.WeightStepLimited,
    ),
    "a degraded backend loses one step": (
        [backend("a", 50, error_rate=0.3), backend("b", 50, error_rate=0.0)],
        {"a": 30, "b": 70},
        Reason.BackendDegraded,
    ),
    "a drained backend keeps its probe": (
        [backend("a", 10, error_rate=0.3), backend("b", 90, error_rate=0.0)],
        {"a": 5, "b": 95},
        Reason.BackendDegraded,
    ),
    "all unhealthy: the least bad serves": (
        [backend("a", 50, error_rate=0.3), backend("b", 50, error_rate=0.06)],
        {"a": 30, "b": 70},
        Reason.AllBackendsUnhealthy,
    ),
    "missing data keeps that backend's weight": (
        [backend("a", 40), backend("b", 30, error_rate=0.0), backend("c", 30, error_rate=0.3)],
        {"a": 40, "b": 50, "c": 10},
        Reason.BackendDataMissing,
    ),
    "nothing judged: hold": ([backend("a", 20), backend("b", 80)], {"a": 20, "b": 80}, Reason.BackendDataMissing),
    "weights summing to zero count as an even split": (
        [backend("a", 0, error_rate=0.0), backend("b", 0, error_rate=0.0)],
        {"a": 50, "b": 50},
        Reason.WeightsFollowCapacity,
    ),
    "relative weights are normalised": (
        [backend("a", 1, error_rate=0.0), backend("b", 3, error_rate=0.0)],
        {"a": 45, "b": 55},
        Reason.WeightStepLimited,
    ),
}


@pytest.mark.parametrize(("backends", "weights", "reason"), ROUTES.values(), ids=ROUTES.keys())
def test_capacity_routing(backends: list[RoutedBackend], weights: dict[str, int], reason: Reason) -> None:
    decision = route(*backends)
    assert dict(decision.weights) == weights
    assert reason in decision.reasons
    assert sum(weights.values()) == 100


FORECAST_CASES = {
    "no scaler: ready replicas": (4, None, 4, {"a": 50, "b": 50}),
    "a scale-down decided: the share moves first": (4, 2, 4, {"a": 33, "b": 67}),
    "a scale-up decided: only ready replicas count": (4, 8, 4, {"a": 50, "b": 50}),
    "readiness unknown: the forecast": (None, 2, 4, {"a": 33, "b": 67}),
    "a NaN forecast is no forecast": (4, float("nan"), 4, {"a": 50, "b": 50}),
}


@pytest.mark.parametrize(("ready", "forecast", "other", "weights"), FORECAST_CASES.values(), ids=FORECAST_CASES.keys())
def test_weights_follow_forecast_capacity(
    ready: int | None, forecast: float | None, other: int, weights: dict[str, int]
) -> None:
    a = RoutedBackend(BackendSignals("a", error_rate=0.0, ready_replicas=ready), 50, forecast_replicas=forecast)
    decision = route(a, backend("b", 50, other, error_rate=0.0))
    assert dict(decision.weights) == weights


def test_weight_returns_only_after_the_hold() -> None:
    flagged = RoutingState({"a": BackendHealth(True, NOW - 10)})
    decision = route(backend("a", 5, error_rate=0.0), backend("b", 95, error_rate=0.0), state=flagged)
    assert decision.weight("a") == 5 and Reason.RecoveryPending in [v.reason for v in decision.verdicts]
    recovered = RoutingState({"a": BackendHealth(True, NOW - 60)})
    decision = route(backend("a", 5, error_rate=0.0), backend("b", 95, error_rate=0.0), state=recovered)
    assert decision.weight("a") == 25


# --- routing: canary ------------------------------------------------------------------------------

CANARY = CanarySpec(stable="v1", canary="v2", revision="7", step=25, step_interval_s=30)


def canary_route(
    v1: float, v2: float, state: CanaryState | None = None, **canary_signals: Unpack[Signals]
) -> RoutingDecision:
    stable = RoutedBackend(BackendSignals("v1", ttft_s=0.5, tpot_s=0.05, error_rate=0.01), v1)
    canary = RoutedBackend(BackendSignals("v2", **canary_signals), v2)
    inputs = RoutingInputs((stable, canary), LIMITS, canary=CANARY)
    return decide_routing(inputs, RoutingState({}, state), NOW)


def progressing(seconds_ago: float) -> CanaryState:
    return CanaryState("7", "Progressing", NOW - seconds_ago)


CANARY_CASES = {
    "first step needs no canary data": (100, 0, None, {}, 25, Reason.CanaryStep),
    "as good: one more step": (
        75,
        25,
        progressing(30),
        {"ttft_s": 0.55, "tpot_s": 0.05, "error_rate": 0.015},
        50,
        Reason.CanaryStep,
    ),
    "too early for the next step": (75, 25, progressing(10), {"ttft_s": 0.5}, 25, Reason.CanaryWaiting),
    "no comparable data: wait": (75, 25, progressing(60), {}, 25, Reason.CanaryWaiting),
    "the last step promotes": (25, 75, progressing(60), {"ttft_s": 0.5}, 100, Reason.CanaryPromoted),
    "TTFT beyond the margin rolls back": (50, 50, progressing(1), {"ttft_s": 0.61}, 0, Reason.CanaryRolledBack),
    "TPOT beyond the margin rolls back": (50, 50, progressing(1), {"tpot_s": 0.07}, 0, Reason.CanaryRolledBack),
    "errors beyond the margin roll back": (50, 50, progressing(1), {"error_rate": 0.021}, 0, Reason.CanaryRolledBack),
    "a failing canary rolls back": (50, 50, progressing(1), {"error_rate": 0.3}, 0, Reason.CanaryRolledBack),
    "a rollback is final": (
        100,
        0,
        CanaryState("7", "RolledBack", NOW - 500),
        {"ttft_s": 0.5},
        0,
        Reason.CanaryRolledBack,
    ),
    "a new revision starts over": (100, 0, CanaryState("6", "RolledBack", NOW - 500), {}, 25, Reason.CanaryStep),
}


@pytest.mark.parametrize(
    ("v1", "v2", "state", "signals", "canary_weight", "reason"), CANARY_CASES.values(), ids=CANARY_CASES.keys()
)
def test_canary(
    v1: float, v2: float, state: CanaryState | None, signals: Signals, canary_weight: int, reason: Reason
) -> None:
    decision = canary_route(v1, v2, state, **signals)
    assert (decision.weight("v2"), decision.weight("v1")) == (canary_weight, 100 - canary_weight)
    assert decision.reasons[0] is reason
    assert decision.state.canary is not None and decision.state.canary.revision == "7"


GUARDED = CanarySpec(stable="v1", canary="v2", revision="7", step=25, step_interval_s=30, min_requests=100)
AS_GOOD: Signals = {"ttft_s": 0.5, "tpot_s": 0.05, "error_rate": 0.01}
MUCH_WORSE: Signals = {"ttft_s": 0.9, "tpot_s": 0.05, "error_rate": 0.01}  # 80 % slower, within the TTFT limit

MIN_SAMPLE_CASES = {
    "enough on both sides: step": (AS_GOOD, 100, 900, 25, 50, Reason.CanaryStep),
    "too few canary requests: hold": (AS_GOOD, 99, 900, 25, 25, Reason.CanaryTooFewRequests),
    "too few stable requests: hold": (AS_GOOD, 300, 40, 75, 75, Reason.CanaryTooFewRequests),
    "unknown count: hold": (AS_GOOD, None, 900, 25, 25, Reason.CanaryTooFewRequests),
    "a worse p95 over too few requests is not trusted": (MUCH_WORSE, 20, 900, 25, 25, Reason.CanaryTooFewRequests),
    "a worse p95 over enough requests rolls back": (MUCH_WORSE, 150, 900, 25, 0, Reason.CanaryRolledBack),
    "the first step needs no canary requests": ({}, 0, 900, 0, 25, Reason.CanaryStep),
    "a canary failing its own health rolls back anyway": (
        {"error_rate": 0.5},
        10,
        900,
        25,
        0,
        Reason.CanaryRolledBack,
    ),
}


@pytest.mark.parametrize(
    ("signals", "canary_requests", "stable_requests", "weight", "expected", "reason"),
    MIN_SAMPLE_CASES.values(),
    ids=MIN_SAMPLE_CASES.keys(),
)
def test_a_canary_comparison_needs_enough_requests_on_both_sides(
    signals: Signals,
    canary_requests: float | None,
    stable_requests: float,
    weight: int,
    expected: int,
    reason: Reason,
) -> None:
    stable = RoutedBackend(BackendSignals("v1", requests=stable_requests, **AS_GOOD), 100 - weight)
    canary = RoutedBackend(BackendSignals("v2", requests=canary_requests, **signals), weight)
    inputs = RoutingInputs((stable, canary), LIMITS, canary=GUARDED)
    decision = decide_routing(inputs, RoutingState({}, progressing(60)), NOW)
    assert (decision.weight("v2"), decision.reasons[0]) == (expected, reason)
    if reason is Reason.CanaryTooFewRequests:
        assert "100 needed on each side" in decision.message


UP_TO_HALF = CanarySpec(stable="v1", canary="v2", revision="7", step=20, step_interval_s=30, max_weight=50)


@pytest.mark.parametrize(
    ("v1", "v2", "expected", "reason"),
    [
        (90, 10, 30, Reason.CanaryStep),
        (70, 30, 50, Reason.CanaryStep),  # the step stops at the maximum weight
        (50, 50, 100, Reason.CanaryPromoted),  # one more interval within the margins there promotes
    ],
)
def test_a_canary_climbs_to_its_maximum_weight_then_is_promoted(
    v1: int, v2: int, expected: int, reason: Reason
) -> None:
    stable = RoutedBackend(BackendSignals("v1", ttft_s=0.5, error_rate=0.0), v1)
    canary = RoutedBackend(BackendSignals("v2", ttft_s=0.5, error_rate=0.0), v2)
    decision = decide_routing(
        RoutingInputs((stable, canary), LIMITS, canary=UP_TO_HALF), RoutingState(canary=progressing(30)), NOW
    )
    assert (decision.weight("v2"), decision.reasons[0]) == (expected, reason)


@pytest.mark.parametrize(
    ("canary_requests", "rolled_back"),
    [
        (100, True),  # as loaded per replica as stable and 60 % slower: a regression
        (20, True),  # lighter and still slower: a regression for sure
        (300, False),  # three times stable's load per replica: slower for that alone, not judged on latency
    ],
)
def test_latency_is_compared_only_while_the_canary_is_not_the_busier(canary_requests: float, rolled_back: bool) -> None:
    stable = RoutedBackend(BackendSignals("v1", ttft_s=0.5, error_rate=0.0, ready_replicas=4, requests=100), 50)
    canary = RoutedBackend(
        BackendSignals("v2", ttft_s=0.8, error_rate=0.0, ready_replicas=4, requests=canary_requests), 50
    )
    decision = decide_routing(
        RoutingInputs((stable, canary), LIMITS, canary=UP_TO_HALF), RoutingState(canary=progressing(1)), NOW
    )
    assert (decision.reasons[0] is Reason.CanaryRolledBack) == rolled_back


def test_a_drained_backend_does_not_come_back_because_the_other_one_struggles() -> None:
    # Both flagged; the drained one looks less bad only because it carries almost nothing.
    drained = backend("l4", 5, tpot_s=0.2, error_rate=0.0, ttft_s=2.1)
    loaded = backend("h100", 95, error_rate=0.0, ttft_s=2.6)
    flagged = {"l4": BackendHealth(flagged=True), "h100": BackendHealth(flagged=True)}
    decision = route(drained, loaded, state=RoutingState(flagged))
    assert dict(decision.weights) == {"l4": 5, "h100": 95}
    assert Reason.AllBackendsUnhealthy in decision.reasons


def test_a_new_revision_forgets_the_old_canarys_health() -> None:
    stable = RoutedBackend(BackendSignals("v1", ttft_s=0.5, error_rate=0.0), 100)
    canary = RoutedBackend(BackendSignals("v2"), 0)  # no traffic yet: no data
    old = RoutingState({"v2": BackendHealth(flagged=True)}, CanaryState("6", "RolledBack", NOW - 500))
    decision = decide_routing(RoutingInputs((stable, canary), LIMITS, canary=CANARY), old, NOW)
    assert (decision.weight("v2"), decision.reasons[0]) == (25, Reason.CanaryStep)
    assert not decision.state.health["v2"].flagged


def test_canary_state_round_trips() -> None:
    state = CanaryState("7", "RolledBack", NOW)
    assert CanaryState.from_dict(state.to_dict()) == state
    assert CanaryState.from_dict({"phase": "Promoted"}) is None
    assert CanaryState.from_dict({"revision": "1", "phase": "Nope", "since": "x"}) == CanaryState("1")
