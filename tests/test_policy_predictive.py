"""Properties of the predictive policy (hypothesis) and a few worked cases."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Behavior, Reason
from policies.predictive import (
    LoadForecast,
    PredictiveInputs,
    PredictiveSettings,
    PredictiveState,
    decide_predictive,
    replicas_for,
)
from tests.harness.properties import examples

NOW = 10_000.0
CAPACITY = 100.0
SETTINGS = PredictiveSettings(capacity_per_replica=CAPACITY, lead_time_s=90, interval_s=15, ttft_slo_s=2.0)

loads = st.floats(min_value=0, max_value=5_000, allow_nan=False)
forecasts = st.builds(
    lambda values, step: LoadForecast(NOW, step, tuple(values), 0.9),
    st.lists(loads, min_size=1, max_size=8),
    st.sampled_from([15.0, 30.0, 60.0]),
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[PredictiveInputs, PredictiveState]:
    low = draw(st.integers(1, 10))
    high = draw(st.integers(low, 40))
    spec = draw(st.integers(low, high))
    inputs = PredictiveInputs(
        spec_replicas=spec,
        ready_replicas=draw(st.integers(0, spec)),
        min_replicas=low,
        max_replicas=high,
        settings=SETTINGS,
        forecast=draw(st.none() | forecasts),
        observed_load=draw(st.none() | loads | st.just(math.nan)),
        ttft_s=draw(st.none() | st.floats(0, 30)),
    )
    state = PredictiveState(last_forecast=draw(st.none() | forecasts))
    return inputs, state


@settings(max_examples=examples(300), deadline=None)
@given(situations())
def test_result_within_bounds(situation: tuple[PredictiveInputs, PredictiveState]) -> None:
    inputs, state = situation
    decision = decide_predictive(inputs, state, NOW)
    assert inputs.min_replicas <= decision.desired_replicas <= inputs.max_replicas


@settings(max_examples=examples(300), deadline=None)
@given(situations())
def test_never_scales_down_on_missing_data(situation: tuple[PredictiveInputs, PredictiveState]) -> None:
    inputs, state = situation
    decision = decide_predictive(inputs, state, NOW)
    if inputs.forecast is None or inputs.load_missing:
        assert decision.desired_replicas >= inputs.spec_replicas


@settings(max_examples=examples(300), deadline=None)
@given(situations())
def test_never_below_what_the_forecast_needs_over_the_lead_time(
    situation: tuple[PredictiveInputs, PredictiveState],
) -> None:
    """Unless a rate limit or maxReplicas stops it, the count covers the forecast quantile over the window."""
    inputs, state = situation
    decision = decide_predictive(inputs, state, NOW)
    if inputs.forecast is None or Reason.ScaleUpRateLimited in decision.reasons:
        return
    peak = inputs.forecast.peak_between(NOW, NOW + SETTINGS.window_s)
    if peak is None:
        return
    needed = min(replicas_for(peak, CAPACITY), inputs.max_replicas)
    assert decision.desired_replicas >= min(needed, max(inputs.spec_replicas, needed))


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(1, 30), st.lists(loads, min_size=3, max_size=12))
def test_scale_up_respects_the_rate_limit(start: int, observed: list[float]) -> None:
    """Across a burst of decisions 15 s apart, no 15 s period adds more than max(4, 100 %)."""
    spec, state = start, PredictiveState()
    for i, load in enumerate(observed):
        now = NOW + 15 * i
        forecast = LoadForecast(now, 15, (load * 3,) * 8)
        inputs = PredictiveInputs(spec, spec, 1, 1000, SETTINGS, forecast, observed_load=load)
        decision = decide_predictive(inputs, state, now)
        assert decision.desired_replicas <= max(spec + 4, 2 * spec)
        spec, state = decision.desired_replicas, decision.state


def test_reactive_path_counts_starting_replicas_and_never_cascades() -> None:
    """A burst seen now asks for 8; while those start, the same burst asks for nothing more."""
    behavior = Behavior()
    settings_ = PredictiveSettings(CAPACITY, 90, 15, 2.0, behavior)
    state = PredictiveState()
    spec, ready = 2, 2
    counts = []
    for i in range(6):  # 90 s of decisions while the new pods load and the TTFT stays bad
        inputs = PredictiveInputs(spec, ready, 1, 64, settings_, None, observed_load=750.0, ttft_s=10.0)
        decision = decide_predictive(inputs, state, NOW + 15 * i)
        spec, state = decision.desired_replicas, decision.state
        counts.append(spec)
    assert counts[0] == 6 and counts[-1] == 8  # 2 -> 6 (rate limit: +4) -> 8, then it stays
    assert counts[2:] == [8] * 4


def test_scale_down_only_when_the_whole_window_fits() -> None:
    settings_ = PredictiveSettings(CAPACITY, 90, 15, None, Behavior(scale_down=Behavior().scale_up))
    high_late = LoadForecast(NOW, 30, (100.0, 100.0, 100.0, 900.0))  # 9 replicas' worth at 90-120 s
    low = LoadForecast(NOW, 30, (100.0,) * 4)
    # The late peak keeps 9 of 10 replicas even though the next 90 s need only 1.
    for forecast, expected in ((high_late, 9), (low, 1)):
        inputs = PredictiveInputs(10, 10, 1, 64, settings_, forecast, observed_load=50.0)
        assert decide_predictive(inputs, PredictiveState(), NOW).desired_replicas == expected


def test_missing_forecast_follows_the_last_good_one_then_holds() -> None:
    last = LoadForecast(NOW, 60, (900.0, 900.0))  # needs 9 until NOW + 120
    state = PredictiveState(last_forecast=last)
    following = decide_predictive(PredictiveInputs(4, 4, 1, 64, SETTINGS, None), state, NOW + 30)
    assert (following.desired_replicas, following.path) == (8, "limit")  # +4 per 15 s towards 9
    assert following.reasons[0] is Reason.FollowingLastForecast
    expired = decide_predictive(PredictiveInputs(4, 4, 1, 64, SETTINGS, None), state, NOW + 600)
    assert (expired.desired_replicas, expired.path) == (4, "hold")
    assert expired.reasons[0] is Reason.ForecastExpired


def test_state_round_trips_and_garbage_degrades_to_empty() -> None:
    inputs = PredictiveInputs(3, 3, 1, 64, SETTINGS, LoadForecast(NOW, 60, (250.0, 120.0)), observed_load=80.0)
    state = decide_predictive(inputs, PredictiveState(), NOW).state
    assert PredictiveState.from_dict(state.to_dict()) == state
    assert PredictiveState.from_dict({"behavior": "x", "lastForecast": {"upper": [True]}}) == PredictiveState()
