"""The forecasting loop's pure parts: the history plan, gaps in the load history, and forecast accuracy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.clients.prometheus import MAX_RANGE_POINTS, RangeSamples
from controller.scaling.forecast_loop import MAX_FILLED_GAP_S, Accuracy, dense_tail, history_plan
from policies.predictive import LoadForecast


@pytest.mark.parametrize(
    ("step_s", "history_s", "expected"),
    [
        pytest.param(60, 3_600, (1, 3_600), id="an-hour-at-one-second"),
        pytest.param(60, 172_800, (20, 172_800), id="two-days-at-the-finest-divisor-that-fits"),
        pytest.param(7, 172_800, (7, 7 * (MAX_RANGE_POINTS - 1)), id="no-divisor-fits-history-is-cut"),
    ],
)
def test_history_plan(step_s: int, history_s: float, expected: tuple[int, float]) -> None:
    assert history_plan(step_s, history_s) == expected


@given(st.integers(1, 3600), st.floats(600, 2_592_000))
def test_a_planned_history_always_fits_one_range_query(step_s: int, history_s: float) -> None:
    sample_s, span = history_plan(step_s, history_s)
    assert step_s % sample_s == 0 and span <= history_s and span / sample_s <= MAX_RANGE_POINTS - 1


def test_short_gaps_are_bridged_high_never_at_zero_and_long_ones_cut_the_history() -> None:
    short = RangeSamples(10, (0.0, 10.0, 40.0, 50.0), (5.0, 6.0, 9.0, 8.0))
    assert dense_tail(short) == (50.0, [5.0, 6.0, 9.0, 9.0, 9.0, 8.0])
    gap = MAX_FILLED_GAP_S + 10
    long = RangeSamples(10, (0.0, 10.0, 10.0 + gap, 20.0 + gap), (5.0, 6.0, 1.0, 2.0))
    assert dense_tail(long) == (20.0 + gap, [1.0, 2.0])


def test_accuracy_compares_each_window_peak_with_what_came() -> None:
    forecast = LoadForecast(issued_at=100.0, step_seconds=10.0, upper=(10.0, 20.0, 30.0))
    accuracy = Accuracy().predicted(forecast, now=100.0, window_s=20.0)  # peak 20 over (100, 120]
    waiting = accuracy.resolve([105.0, 110.0], [12.0, 15.0])
    assert waiting.pairs == () and len(waiting.pending) == 1, "not scored before the window is over"
    scored = waiting.resolve([105.0, 110.0, 115.0, 120.0], [12.0, 15.0, 25.0, 16.0])
    assert scored.pairs == ((20.0, 25.0),) and scored.pending == ()
    assert scored.error_ratio == pytest.approx(5 / 25) and scored.coverage == 0.0
    assert Accuracy().error_ratio is None and Accuracy().coverage is None
