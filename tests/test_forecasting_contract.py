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
    WindowPeak,
    clone,
)

FAST: dict[str, Callable[[], Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "damped_trend": DampedTrend,
    "linear": LinearForecaster,
    "gbm": lambda: GradientBoostingForecaster(max_iter=20, max_rows=2000, random_state=3),
    "auto": lambda: AutoForecaster(n_origins=4),
    "window_peak": WindowPeak,
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
    if name in ("linear", "gbm", "auto", "window_peak"):
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


def test_linear_model_solves_only_the_horizons_asked_for_with_the_same_numbers() -> None:
    """Horizons are solved when first asked for: a short forecast, then a longer one, then a refit
    on other history each give what a model fitted afresh and asked once gives (no horizon
    solved for the previous history survives the refit)."""
    short, other = series(600), series(600, seed=1)
    model = LinearForecaster(max_horizon=12).fit(short)
    first = model.predict(3, quantiles=(0.1, 0.9))
    assert len(model.coefficients_) == 3
    longer = model.predict(8, quantiles=(0.1, 0.9))
    fresh = LinearForecaster(max_horizon=12).fit(short).predict(8, quantiles=(0.1, 0.9))
    for got, want in ((first, fresh), (longer, fresh)):
        n = got.horizon
        assert np.array_equal(got.mean, want.mean[:n])
        assert all(np.array_equal(got.quantiles[q], want.quantiles[q][:n]) for q in (0.1, 0.9))
    refitted = model.fit(other).predict(8)
    assert np.array_equal(refitted.mean, LinearForecaster(max_horizon=12).fit(other).predict(8).mean)
    assert not np.array_equal(refitted.mean, longer.mean)


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


def _steps(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-03-04", periods=len(values), freq="1s"))


@pytest.mark.parametrize("length", [600, 604, 607])
def test_window_peak_forecasts_the_spike_every_window_holds(length: int) -> None:
    """Load 10 with a spike to 50 every 10 steps: a 12-step window always holds one spike, so its
    peak is 50 however the history ends (just after a spike or just before one), at every level;
    a per-step forecast of the quiet steps would say 10."""
    values = np.where(np.arange(length) % 10 == 0, 50.0, 10.0)
    forecast = WindowPeak(level=20, stride=1).fit(_steps(values)).predict(12, (0.1, 0.5, 0.9))
    for level in (0.1, 0.5, 0.9):
        np.testing.assert_allclose(forecast.quantiles[level], 50.0)
    np.testing.assert_allclose(forecast.mean, 50.0)
    assert not forecast.fallback


def test_window_peak_of_a_bursty_load_spans_quiet_to_burst_where_a_smooth_one_stays_near_its_level() -> None:
    """Both have mean 10. The bursty one is 0 with 100 every 10th step: half of the 5-step windows
    peak at 100 above a level of 10, half at 0; so its band runs from 0 to 100 while the smooth
    load's stays within its noise."""
    n = 2_000
    bursty = np.where(np.arange(n) % 10 == 0, 100.0, 0.0)
    smooth = np.random.default_rng(4).normal(10.0, 0.5, n)
    model = WindowPeak(level=20, stride=1)
    bursty_forecast = model.fit(_steps(bursty)).predict(5, (0.1, 0.9))
    smooth_forecast = model.fit(_steps(smooth)).predict(5, (0.1, 0.9))
    np.testing.assert_allclose(bursty_forecast.quantiles[0.1], 0.0, atol=1e-9)
    np.testing.assert_allclose(bursty_forecast.quantiles[0.9], 100.0)
    assert np.all(smooth_forecast.quantiles[0.1] > 9.0)
    assert np.all(smooth_forecast.quantiles[0.9] < 12.0)


def test_window_peak_weighs_recent_bursts_more_than_old_ones() -> None:
    """Ten bursts to 100 on a load of 1, each seen by 5 of the 5-step windows (12% of the ~400
    origins): with a 50-step half-life, the same bursts 15..200 steps ago carry ~19% of the weight,
    above the 10% the 0.9 quantile leaves, so it is the burst's peak (100); 215..400 steps ago they
    carry ~1%, and it is the quiet load (1). Weighed alike, both histories give 100."""

    def history(first_burst: int) -> pd.Series:
        values = np.ones(600)
        values[first_burst : first_burst + 200 : 20] = 100.0
        return _steps(values)

    recent, old = history(400), history(200)
    model = WindowPeak(level=10, stride=1, half_life=50.0, memory=400)
    assert model.fit(recent).predict(5).quantiles[0.9][0] == pytest.approx(100.0)
    assert model.fit(old).predict(5).quantiles[0.9][0] == pytest.approx(1.0)
    alike = WindowPeak(level=10, stride=1, half_life=1e9, memory=400)
    assert alike.fit(old).predict(5).quantiles[0.9][0] == pytest.approx(100.0)
    assert alike.fit(recent).predict(5).quantiles[0.9][0] == pytest.approx(100.0)
