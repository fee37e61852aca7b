"""Properties of the traffic policies for any input, including NaN, negative and missing values.

* Routing: weights are non-negative integers summing to the total (so a VirtualService's weights
  sum to 100 and a Gateway API weight lies in 0..1,000,000), never all zero, each move within the
  step limit (+1 for rounding a non-integer start), and a backend whose data is missing keeps its
  weight in capacity mode.
* Circuit breakers: every threshold lies within the spec's bounds and within Istio's schema
  ranges (int32, percentages 0..100); ``maxEjectionPercent`` never exceeds the spare capacity.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    BackendHealth,
    BackendSignals,
    BreakerBounds,
    BreakerInputs,
    BreakerSettings,
    CanarySpec,
    CanaryState,
    ConnectionPool,
    HealthLimits,
    OutlierDetection,
    Reason,
    RoutedBackend,
    RoutingInputs,
    RoutingState,
    Tightening,
    decide_breakers,
    decide_routing,
)
from policies.circuit_breaker import INT32_MAX
from tests.harness.properties import examples

NOW = 1_700_000_000.0
GATEWAY_MAX_WEIGHT = 1_000_000

anything = st.one_of(
    st.none(), st.just(math.nan), st.just(math.inf), st.floats(-1, 0), st.floats(0, 1), st.floats(0, 1e6)
)


@st.composite
def signals(draw: st.DrawFn, name: str) -> BackendSignals:
    return BackendSignals(
        name,
        failure_score=draw(anything),
        error_rate=draw(anything),
        latency_ms=draw(anything),
        ttft_s=draw(anything),
        tpot_s=draw(anything),
        saturation=draw(anything),
        ready_replicas=draw(st.one_of(st.none(), st.integers(0, 10_000))),
        needed_replicas=draw(anything),
        failing_replicas=draw(st.one_of(st.none(), st.integers(-1, 20_000))),
    )


limits = st.builds(
    HealthLimits,
    max_error_rate=st.one_of(st.none(), st.floats(0.001, 1)),
    max_ttft_s=st.one_of(st.none(), st.floats(0.01, 60)),
    upper=st.just(0.5),
    lower=st.floats(0, 0.49),
    hold_s=st.floats(0, 600),
)
health = st.builds(
    BackendHealth, flagged=st.booleans(), calm_since=st.one_of(st.none(), st.floats(NOW - 1e4, NOW + 1e4))
)
names = st.lists(st.sampled_from(["h100", "l4", "a100", "mi300"]), min_size=1, max_size=4, unique=True)


@st.composite
def routing_inputs(draw: st.DrawFn, canary: bool = False) -> tuple[RoutingInputs, RoutingState]:
    chosen = ["v1", "v2"] if canary else draw(names)
    total = draw(st.sampled_from([100, 1000, GATEWAY_MAX_WEIGHT]))
    backends = tuple(
        RoutedBackend(
            draw(signals(name)),
            current_weight=draw(st.one_of(st.integers(0, total), st.floats(0, 1e7), st.just(math.nan))),
            capacity_per_replica=draw(st.floats(0, 100)),
        )
        for name in chosen
    )
    spec = (
        CanarySpec("v1", "v2", revision="r", step=draw(st.integers(1, 100)), step_interval_s=draw(st.floats(0, 120)))
        if canary
        else None
    )
    inputs = RoutingInputs(
        backends,
        draw(limits),
        max_step=draw(st.integers(1, 100)),
        probe=draw(st.integers(0, 50)),
        total=total,
        canary=spec,
    )
    state = RoutingState(
        {name: draw(health) for name in chosen if draw(st.booleans())},
        draw(
            st.one_of(
                st.none(),
                st.builds(
                    CanaryState,
                    st.just("r"),
                    st.sampled_from(["Progressing", "Promoted", "RolledBack"]),
                    st.one_of(st.none(), st.floats(NOW - 500, NOW)),
                ),
            )
        ),
    )
    return inputs, state


def assert_valid_weights(inputs: RoutingInputs, weights: dict[str, int]) -> None:
    assert set(weights) == {b.name for b in inputs.backends}
    assert all(isinstance(w, int) and 0 <= w <= min(inputs.total, GATEWAY_MAX_WEIGHT) for w in weights.values())
    assert sum(weights.values()) == inputs.total


@settings(max_examples=examples(150), deadline=None)
@given(routing_inputs())
def test_capacity_weights_are_always_valid(case: tuple[RoutingInputs, RoutingState]) -> None:
    inputs, state = case
    decision = decide_routing(inputs, state, NOW)
    weights = dict(decision.weights)
    assert_valid_weights(inputs, weights)
    valid = [w if math.isfinite(w) and w > 0 else 0.0 for w in (b.current_weight for b in inputs.backends)]
    start = (
        [w * inputs.total / sum(valid) for w in valid] if sum(valid) > 0 else [inputs.total / len(valid)] * len(valid)
    )
    for b, before in zip(inputs.backends, start, strict=True):
        assert abs(weights[b.name] - before) <= inputs.max_step + 1, (b.name, before, weights)
    for verdict, b, before in zip(decision.verdicts, inputs.backends, start, strict=True):
        if verdict.missing:
            assert abs(weights[b.name] - before) <= 1, "a backend without data keeps its weight"


@settings(max_examples=examples(200), deadline=None)
@given(routing_inputs(canary=True))
def test_canary_weights_are_always_valid(case: tuple[RoutingInputs, RoutingState]) -> None:
    inputs, state = case
    decision = decide_routing(inputs, state, NOW)
    assert_valid_weights(inputs, dict(decision.weights))


tightening = st.builds(Tightening, st.integers(0, 1000), st.integers(0, 1000))
percent = st.builds(Tightening, st.integers(0, 100), st.integers(0, 100))
bounds = st.builds(
    BreakerBounds,
    consecutive_5xx_errors=tightening,
    consecutive_gateway_errors=tightening,
    interval_s=tightening,
    base_ejection_time_s=tightening,
    max_ejection_percent=percent,
    min_health_percent=percent,
    max_retries=tightening,
    target_in_flight_per_replica=st.integers(1, 100_000),
    pending_per_replica=st.integers(1, 100_000),
    client_proxies=st.integers(1, 10_000),
)
live = st.builds(
    BreakerSettings,
    outlier=st.one_of(st.none(), st.builds(OutlierDetection, *[st.integers(0, 100)] * 6)),
    pool=st.one_of(st.none(), st.builds(ConnectionPool, *[st.integers(0, 1000)] * 3)),
)


@settings(max_examples=examples(150), deadline=None)
@given(st.data(), names, bounds, limits)
def test_thresholds_stay_within_spec_and_istio_ranges(
    data: st.DataObject, chosen: list[str], spec: BreakerBounds, health_limits: HealthLimits
) -> None:
    backends = tuple(data.draw(signals(name)) for name in chosen)
    current = {name: data.draw(live) for name in chosen}
    previous = {name: data.draw(health) for name in chosen}
    decision = decide_breakers(BreakerInputs(backends, current, spec, health_limits), previous, NOW)
    for signals_in, backend in zip(backends, decision.backends, strict=True):
        outlier, pool = backend.settings.outlier, backend.settings.pool
        if backend.verdict.missing:
            assert outlier == current[backend.name].outlier, "missing data never changes outlier detection"
        if outlier is not None and outlier != current[backend.name].outlier:
            for value, bound in (
                (outlier.consecutive_5xx_errors, spec.consecutive_5xx_errors),
                (outlier.consecutive_gateway_errors, spec.consecutive_gateway_errors),
                (outlier.interval_s, spec.interval_s),
                (outlier.base_ejection_time_s, spec.base_ejection_time_s),
                (outlier.min_health_percent, spec.min_health_percent),
            ):
                assert bound.low <= value <= bound.high
            assert 0 <= outlier.max_ejection_percent <= spec.max_ejection_percent.high <= 100
            ready, needed = signals_in.ready_replicas, signals_in.needed_replicas
            if ready and needed is not None and math.isfinite(needed) and needed >= 0:
                # Beyond the spare capacity, only the replicas failing on their own may go, or the
                # one host Envoy always lets go (not even that one in an overload).
                ejectable = math.floor(ready * outlier.max_ejection_percent / 100)
                allowance = max(min(max(signals_in.failing_replicas or 0, 0), ready), 1)
                assert ready - ejectable >= min(ready, math.ceil(needed - 1e-9)) - allowance
        if pool is not None and signals_in.ready_replicas is not None:  # else the live pool size is kept
            assert 1 <= pool.http2_max_requests <= INT32_MAX
            assert 1 <= pool.http1_max_pending_requests <= INT32_MAX
        if pool is not None and pool != current[backend.name].pool:
            # An overload cuts retries to none, below both ends of the bound, and says so.
            low = 0 if Reason.RetriesCutByCapacity in backend.reasons else spec.max_retries.low
            assert low <= pool.max_retries <= spec.max_retries.high
