"""failure_risk: reads the forecast distribution correctly, is monotone, and combines steps sensibly."""

from __future__ import annotations

import math
from itertools import pairwise
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.base import Forecast
from forecasting.risk import failure_risk


def forecast(quantiles: dict[float, list[float]], mean: list[float] | None = None) -> Forecast:
    steps = len(next(iter(quantiles.values())))
    centre = np.asarray(mean if mean is not None else quantiles[0.5], dtype=float)
    return Forecast(
        index=pd.date_range("2024-03-01", periods=steps, freq="1min"),
        mean=centre,
        quantiles={level: np.asarray(values, dtype=float) for level, values in quantiles.items()},
        model="test",
    )


NORMAL = NormalDist(mu=100.0, sigma=10.0)
NORMAL_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
NORMAL_FORECAST = forecast({level: [NORMAL.inv_cdf(level)] for level in NORMAL_LEVELS})


@pytest.mark.parametrize("threshold", [85.0, 95.0, 100.0, 104.0, 110.0, 115.0])
def test_matches_a_normal_distribution_between_its_quantiles(threshold: float) -> None:
    # Linear interpolation of a normal CDF between these levels is off by at most ~0.02.
    exact = 1.0 - NORMAL.cdf(threshold)
    assert failure_risk(NORMAL_FORECAST, threshold) == pytest.approx(exact, abs=0.02)
    assert failure_risk(NORMAL_FORECAST, threshold, direction="below") == pytest.approx(1 - exact, abs=0.02)


def test_normal_tails_beyond_the_last_quantile_are_small_but_not_zero() -> None:
    beyond = [failure_risk(NORMAL_FORECAST, t) for t in (117.0, 125.0, 140.0)]
    assert all(0.0 < p < 0.05 for p in beyond)
    assert beyond == sorted(beyond, reverse=True)
    # An exponential tail is heavier than the normal's: it never under-states the risk out there.
    assert all(p >= 1.0 - NORMAL.cdf(t) for p, t in zip(beyond, (117.0, 125.0, 140.0), strict=True))


@pytest.mark.parametrize("threshold", [2.5, 3.0, 5.0, 8.0])
def test_exponential_tail_is_exact_for_an_exponential_distribution(threshold: float) -> None:
    # Exp(1): the quantile at level l is -log(1 - l); beyond the 0.9 quantile the fitted tail is Exp(1).
    exponential = forecast({0.5: [math.log(2.0)], 0.9: [math.log(10.0)]})
    assert failure_risk(exponential, threshold) == pytest.approx(math.exp(-threshold), rel=1e-9)


def test_the_mean_stands_in_for_the_median_when_only_upper_quantiles_are_requested() -> None:
    only_upper = forecast({0.9: [20.0]}, mean=[10.0])
    assert failure_risk(only_upper, 10.0) == pytest.approx(0.5)
    assert failure_risk(only_upper, 15.0) == pytest.approx(0.3)
    assert failure_risk(only_upper, 20.0) == pytest.approx(0.1)


def test_a_forecast_without_spread_is_a_point_mass() -> None:
    certain = forecast({0.1: [5.0], 0.5: [5.0], 0.9: [5.0]})
    assert failure_risk(certain, 4.9) == 1.0
    assert failure_risk(certain, 5.0) == 0.0
    assert failure_risk(certain, 5.0, direction="below") == 0.0
    assert failure_risk(certain, 5.1, direction="below") == 1.0


def test_the_riskiest_step_decides_and_repeating_steps_adds_nothing() -> None:
    rising = forecast({0.1: [0.0, 5.0, 10.0], 0.5: [1.0, 6.0, 11.0], 0.9: [2.0, 7.0, 12.0]})
    last_step_only = forecast({0.1: [10.0], 0.5: [11.0], 0.9: [12.0]})
    assert failure_risk(rising, 11.0) == pytest.approx(failure_risk(last_step_only, 11.0))
    assert failure_risk(rising, 11.0) == pytest.approx(0.5)
    longer = forecast({0.1: [10.0] * 30, 0.5: [11.0] * 30, 0.9: [12.0] * 30})
    assert failure_risk(longer, 11.5) == pytest.approx(failure_risk(last_step_only, 11.5))


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        failure_risk(NORMAL_FORECAST, 1.0, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        failure_risk(NORMAL_FORECAST, math.nan)
    broken = forecast({0.5: [math.nan]})
    with pytest.raises(ValueError, match="non-finite"):
        failure_risk(broken, 1.0)


quantile_tables = st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=3, max_size=3).map(sorted)


@settings(max_examples=200, deadline=None)
@given(
    table=st.lists(quantile_tables, min_size=1, max_size=4),
    thresholds=st.lists(st.floats(min_value=-2e3, max_value=2e3), min_size=2, max_size=8).map(sorted),
)
def test_risk_is_a_probability_monotone_in_the_threshold(table: list[list[float]], thresholds: list[float]) -> None:
    steps = np.array(table).T  # levels x steps
    fc = forecast({0.1: list(steps[0]), 0.5: list(steps[1]), 0.95: list(steps[2])})
    above = [failure_risk(fc, t) for t in thresholds]
    below = [failure_risk(fc, t, direction="below") for t in thresholds]
    assert all(0.0 <= p <= 1.0 for p in above + below)
    assert all(a >= b - 1e-12 for a, b in pairwise(above))
    assert all(a <= b + 1e-12 for a, b in pairwise(below))
