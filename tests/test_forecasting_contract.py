"""The contract every forecaster keeps, checked on each of them alike."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from forecasting import (
    AutoForecaster,
    DampedTrend,
    Forecaster,
    ForecastInputError,
    GradientBoostingForecaster,
    LinearForecaster,
    NotFittedError,
    ProphetForecaster,
    SeasonalNaive,
    clone,
)

FAST: dict[str, Callable[[], Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "damped_trend": DampedTrend,
    "linear": LinearForecaster,
    "gbm": lambda: GradientBoostingForecaster(max_iter=20, max_rows=2000, random_state=3),
    "auto": lambda: AutoForecaster(n_origins=4),
}
ALL = FAST | {"prophet": lambda: ProphetForecaster(uncertainty_samples=50, seed=3)}


def series(n: int, step: str = "5min", seed: int = 0) -> pd.Series:
    """Two-day-periodic load with noise: enough structure for every model to have something to fit."""
    index = pd.date_range("2024-03-04", periods=n, freq=step)
    phase = 2 * np.pi * np.asarray(index.hour * 60 + index.minute) / 1440
    rng = np.random.default_rng(seed)
    return pd.Series(100 + 30 * np.sin(phase) + rng.normal(0, 3, n), index=index)


@pytest.mark.parametrize("name", ALL)
def test_forecast_shape_index_and_monotone_quantiles(name: str) -> None:
    y = series(400)
    forecast = ALL[name]().fit(y).predict(6, quantiles=(0.9, 0.1, 0.5))
    assert forecast.horizon == 6
    assert forecast.index[0] == y.index[-1] + pd.Timedelta("5min")
    assert (forecast.index[1:] - forecast.index[:-1] == pd.Timedelta("5min")).all()
    assert sorted(forecast.quantiles) == [0.1, 0.5, 0.9]
    assert np.all(np.isfinite(forecast.mean))
    assert np.all(forecast.quantiles[0.1] <= forecast.quantiles[0.5])
    assert np.all(forecast.quantiles[0.5] <= forecast.quantiles[0.9])
    # a band that says nothing is as useless as a crossing one: the noise has sd 3
    assert np.all(forecast.quantiles[0.9] - forecast.quantiles[0.1] > 1.0)


@pytest.mark.parametrize("name", ALL)
def test_predict_before_fit_raises(name: str) -> None:
    with pytest.raises(NotFittedError):
        ALL[name]().predict(3)


@pytest.mark.parametrize("name", FAST)
def test_refit_forgets_the_previous_fit(name: str) -> None:
    first, second = series(400, seed=1), series(300, seed=2) * 5
    refitted = ALL[name]().fit(first).fit(second).predict(4, (0.9,))
    fresh = ALL[name]().fit(second).predict(4, (0.9,))
    np.testing.assert_allclose(refitted.mean, fresh.mean)
    np.testing.assert_allclose(refitted.quantiles[0.9], fresh.quantiles[0.9])
    assert refitted.index.equals(fresh.index)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_forecast_and_clone_is_unfitted(name: str) -> None:
    y = series(300)
    model = ALL[name]()
    a = model.fit(y).predict(5, (0.9,))
    b = clone(model).fit(y).predict(5, (0.9,))
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.quantiles[0.9], b.quantiles[0.9])
    with pytest.raises(NotFittedError):
        clone(model).predict(2)


@pytest.mark.parametrize("name", FAST)
def test_short_history_still_forecasts_and_says_so_when_it_falls_back(name: str) -> None:
    forecast = ALL[name]().fit(series(12)).predict(3, (0.9,))
    assert np.all(np.isfinite(forecast.mean))
    if name in ("linear", "gbm", "auto"):
        assert forecast.fallback


@pytest.mark.parametrize("name", FAST)
def test_gaps_nan_and_unsorted_input_give_the_forecast_of_the_clean_series(name: str) -> None:
    clean = series(400)
    dirty = clean.copy()
    dirty.iloc[[50, 51, 200]] = [np.nan, np.inf, np.nan]
    dirty = dirty.drop(dirty.index[[120, 121, 122]]).sample(frac=1.0, random_state=0)
    forecast = ALL[name]().fit(dirty).predict(3, (0.9,))
    reference = ALL[name]().fit(clean).predict(3, (0.9,))
    assert forecast.index.equals(reference.index)
    assert np.all(np.isfinite(forecast.mean))
    # a handful of interpolated points out of 400 cannot move the forecast by more than the noise
    np.testing.assert_allclose(forecast.mean, reference.mean, atol=3.0)


@pytest.mark.parametrize("name", FAST)
def test_constant_series_forecasts_the_constant(name: str) -> None:
    y = pd.Series(7.0, index=pd.date_range("2024-01-01", periods=300, freq="1min"))
    forecast = ALL[name]().fit(y).predict(4, (0.1, 0.9))
    np.testing.assert_allclose(forecast.mean, 7.0, atol=1e-6)
    np.testing.assert_allclose(forecast.quantiles[0.9], 7.0, atol=1e-6)
    np.testing.assert_allclose(forecast.quantiles[0.1], 7.0, atol=1e-6)


@pytest.mark.parametrize("name", FAST)
def test_unusable_input_raises_a_clear_error(name: str) -> None:
    with pytest.raises(ForecastInputError):
        ALL[name]().fit(pd.Series([1.0, 2.0, 3.0]))  # no time index
    nan_only = pd.Series(np.nan, index=pd.date_range("2024-01-01", periods=10, freq="1min"))
    with pytest.raises(ForecastInputError):
        ALL[name]().fit(nan_only)


@pytest.mark.parametrize("name", FAST)
def test_bad_requests_are_rejected(name: str) -> None:
    model = ALL[name]().fit(series(300))
    with pytest.raises(ValueError):
        model.predict(0)
    with pytest.raises(ValueError):
        model.predict(3, quantiles=(1.5,))


def test_direct_models_refuse_horizons_they_were_not_fitted_for() -> None:
    model = LinearForecaster(max_horizon=4).fit(series(400))
    with pytest.raises(ValueError, match="max_horizon"):
        model.predict(5)


def test_models_follow_the_daily_cycle_they_see() -> None:
    """Two days and more of a clean daily sine: the seasonal models forecast its next hours, while
    the damped trend (no season by design) cannot."""
    y = series(3 * 288)
    index = pd.date_range(y.index[-1] + pd.Timedelta("5min"), periods=36, freq="5min")
    truth = 100 + 30 * np.sin(2 * np.pi * np.asarray(index.hour * 60 + index.minute) / 1440)
    for model in (SeasonalNaive(), LinearForecaster(max_horizon=36)):
        error = np.abs(model.fit(y).predict(36).mean - truth).mean()
        assert error < 5.0, type(model).__name__
    assert SeasonalNaive().fit(y).period_ == 288


def test_linear_model_does_not_extrapolate_past_the_states_it_was_fitted_on() -> None:
    """A level shift from 6 to 15 in the last eight points: every lag and rolling mean is then
    further from now than in any training row. Extrapolated linearly, the model forecast a return
    to about 7; held to the most extreme state it saw, it forecasts near the new level, as seasonal
    naive and the damped trend do."""
    rng = np.random.default_rng(7)
    values = 6 + 0.3 * rng.standard_normal(2000)
    values[-8:] += 9
    y = pd.Series(values, index=pd.date_range("2024-03-04", periods=len(values), freq="5min"))
    forecast = LinearForecaster().fit(y).predict(6)
    assert np.all(forecast.mean > 12)
