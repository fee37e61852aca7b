"""Automatic selection, the fallback chain and conformal calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import AutoForecaster, Backtest, Calibration, DampedTrend, Forecast, LinearForecaster, SeasonalNaive
from forecasting.metrics import coverage, pinball_loss
from forecasting.selection import beats, rolling_origins


def seasonal_period_of(model: object) -> int | None:
    """The period a fitted model forecasts with, whichever model it is."""
    if isinstance(model, SeasonalNaive):
        return model.period_
    if isinstance(model, LinearForecaster):
        return model.spec_.period
    return None


def fitted_choice(auto: AutoForecaster) -> object:
    return auto.model_.model_


def test_selector_picks_a_seasonal_model_on_a_seasonal_series() -> None:
    index = pd.date_range("2024-03-04", periods=4 * 288, freq="5min")
    slot = np.arange(len(index)) % 288
    rng = np.random.default_rng(1)
    # a daily shape with steps (business hours) that no trend model can anticipate
    y = pd.Series(np.where((slot > 100) & (slot < 200), 80.0, 20.0) + rng.normal(0, 2, len(index)), index=index)
    auto = AutoForecaster().fit(y)
    assert seasonal_period_of(fitted_choice(auto)) == 288
    assert not auto.predict(6).fallback


def test_selector_picks_no_season_on_noise() -> None:
    index = pd.date_range("2024-03-04", periods=4 * 288, freq="5min")
    y = pd.Series(50 + np.random.default_rng(2).normal(0, 5, len(index)), index=index)
    auto = AutoForecaster().fit(y)
    assert seasonal_period_of(fitted_choice(auto)) is None


def test_minutes_of_history_fall_back_to_the_level_model() -> None:
    y = pd.Series(np.arange(20.0), index=pd.date_range("2024-03-04", periods=20, freq="10s"))
    auto = AutoForecaster().fit(y)
    forecast = auto.predict(3)
    assert forecast.fallback
    assert isinstance(auto.chosen_, DampedTrend)
    assert auto.scores_ == {}


def test_baseline_scores_one_and_a_later_candidate_must_beat_it_clearly() -> None:
    index = pd.date_range("2024-03-04", periods=600, freq="1min")
    y = pd.Series(np.cumsum(np.random.default_rng(3).normal(0, 1, len(index))), index=index)
    auto = AutoForecaster(candidates=(SeasonalNaive(), SeasonalNaive(error_window=500)), min_improvement=0.5).fit(y)
    scores = list(auto.scores_.values())
    assert scores[0] == pytest.approx(1.0)
    assert isinstance(auto.chosen_, SeasonalNaive) and auto.chosen_.error_window == 4032


def test_calibrated_quantile_is_exceeded_about_as_often_as_its_level_says() -> None:
    """On an AR(1) series whose noise doubles halfway (so in-sample bands are too narrow), the
    0.9 quantile forecast from 20 later origins covers between 80% and 99% of the 60 outcomes (a
    band stretched to cover all 60 fails; 59 of 60 is within the noise of 60 correlated outcomes
    and the conservative finite-sample rank). Unweighted scores: the exchangeable case whose
    coverage split conformal guarantees; recency weighting is tested on its own below."""
    rng = np.random.default_rng(4)
    n = 3000
    noise = rng.normal(0, 1, n) * np.where(np.arange(n) < n // 2, 1.0, 2.0)
    values = np.zeros(n)
    for t in range(1, n):
        values[t] = 0.7 * values[t - 1] + noise[t]
    y = pd.Series(100 + values, index=pd.date_range("2024-03-04", periods=n, freq="1min"))
    covered = []
    for origin in range(2400, n - 3, 30):
        auto = AutoForecaster(n_origins=16, horizon=3, calibration_half_life=None).fit(y.iloc[:origin])
        forecast = auto.predict(3, (0.9,))
        covered.append(y.to_numpy()[origin : origin + 3] <= forecast.quantiles[0.9])
    assert 0.8 <= np.mean(covered) <= 0.99


def test_calibration_stretches_a_band_to_the_backtest_errors() -> None:
    """Errors of +-2 against a band of +1 must stretch the 0.9 band to about 2."""
    errors = np.tile(np.linspace(-2, 2, 10), (5, 1))
    result = Backtest(
        model="m",
        actual=errors,
        mean=np.zeros_like(errors),
        quantiles={0.9: np.ones_like(errors), 0.5: np.zeros_like(errors)},
        scales=np.ones(5),
    )
    calibration = Calibration.from_backtest(result, (0.5, 0.9))
    assert calibration.offsets[0.9] == 0.0
    assert 1.5 <= calibration.factors[0.9] <= 2.0
    assert calibration.factors[0.5] == 0.0  # the median is shifted, not stretched
    index = pd.date_range("2024-01-01", periods=2, freq="1min")
    forecast = Forecast(index=index, mean=np.zeros(2), quantiles={0.9: np.ones(2), 0.5: np.zeros(2)})
    calibrated = calibration.apply(forecast)
    np.testing.assert_allclose(calibrated.quantiles[0.9], calibration.factors[0.9])
    assert coverage(errors.ravel(), np.full(50, calibration.factors[0.9])) >= 0.9
    assert pinball_loss(errors.ravel(), np.full(50, calibration.factors[0.9]), 0.9) < pinball_loss(
        errors.ravel(), np.ones(50), 0.9
    )


def test_reusable_is_the_chosen_model_with_its_calibration() -> None:
    index = pd.date_range("2024-03-04", periods=900, freq="1min")
    y = pd.Series(np.cumsum(np.random.default_rng(5).normal(0, 1, len(index))), index=index)
    auto = AutoForecaster().fit(y)
    again = auto.reusable().fit(y).predict(4, (0.5, 0.9))
    direct = auto.predict(4, (0.5, 0.9))
    np.testing.assert_allclose(again.mean, direct.mean)
    np.testing.assert_allclose(again.quantiles[0.9], direct.quantiles[0.9])


def test_rolling_origins_stay_in_the_recent_half_and_leave_the_horizon() -> None:
    origins = rolling_origins(100, horizon=6, n_origins=5)
    assert list(origins) == [50, 61, 72, 83, 94]
    short = rolling_origins(20, horizon=6, n_origins=10)
    assert short.min() >= 10 and short.max() == 14 and len(short) == 5
    assert len(rolling_origins(8, horizon=6, n_origins=10)) == 0


def test_a_challenger_replaces_the_incumbent_only_when_it_wins_beyond_backtest_noise() -> None:
    incumbent = np.ones(10)
    steady = np.full(10, 0.8)  # better at every origin: no doubt
    lucky = np.array([0.1, 0.1, 2.0, 0.1, 2.0, 0.1, 0.1, 2.0, 0.1, 1.0])  # lower mean, by luck of a few origins
    marginal = np.full(10, 0.99)  # always better, but by less than min_improvement
    assert beats(steady, incumbent, min_improvement=0.02, significance=0.1)
    assert lucky.mean() < incumbent.mean()
    assert not beats(lucky, incumbent, min_improvement=0.02, significance=0.1)
    assert beats(lucky, incumbent, min_improvement=0.02, significance=0.49)  # a coin-flip test takes the mean
    assert not beats(marginal, incumbent, min_improvement=0.02, significance=0.1)
    assert not beats(np.array([np.inf, *steady[1:]]), incumbent, min_improvement=0.02, significance=0.1)


def test_selector_keeps_seasonal_naive_when_a_challenger_only_wins_by_chance() -> None:
    """A random walk: no candidate can beat the last value except by luck, so auto answers as
    seasonal naive does."""
    index = pd.date_range("2024-03-04", periods=500, freq="10s")
    y = pd.Series(100 + np.cumsum(np.random.default_rng(6).standard_t(2, len(index))), index=index)
    auto = AutoForecaster().fit(y)
    assert isinstance(auto.chosen_, SeasonalNaive)
    np.testing.assert_allclose(auto.predict(6).mean, SeasonalNaive().fit(y).predict(6).mean)


def test_calibration_follows_the_recent_origins_when_weighted_by_age() -> None:
    """Errors of +-1 at the ten older origins and +-3 at the ten recent ones: with a short half-life
    the 0.9 band follows the recent noise, unweighted it sits in between."""
    spread = np.linspace(-1, 1, 6)
    errors = np.vstack([np.tile(spread, (10, 1)), np.tile(3 * spread, (10, 1))])
    result = Backtest(
        model="m",
        actual=errors,
        mean=np.zeros_like(errors),
        quantiles={0.9: np.ones_like(errors)},
        scales=np.ones(20),
    )
    recent = Calibration.from_backtest(result, (0.9,), half_life=1.0).factors[0.9]
    pooled = Calibration.from_backtest(result, (0.9,), half_life=None).factors[0.9]
    recent_errors = 3 * spread
    assert np.mean(recent_errors <= recent) >= 0.8
    assert np.mean(recent_errors <= pooled) < np.mean(recent_errors <= recent)
