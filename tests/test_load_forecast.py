"""LoadForecaster: history of load samples -> LoadForecast, fed the way the backtest and the operator feed it."""

from __future__ import annotations

import numpy as np
import pytest

from controller.scaling.forecast_loop import refit_in_worker
from controller.scaling.forecast_spec import ForecastModel
from controller.scaling.load_forecast import LoadForecaster, LoadForecastSettings

WINDOW_S = 105.0


def _fed(rates: np.ndarray, model: ForecastModel = "WindowPeak", sample_s: float = 1.0) -> LoadForecaster:
    forecaster = LoadForecaster(LoadForecastSettings(model=model, sample_s=sample_s))
    forecaster.observe(len(rates) * sample_s, rates)
    return forecaster


def _peak(forecaster: LoadForecaster) -> float:
    now = forecaster.end_s or 0.0
    forecast = forecaster.forecast(now, WINDOW_S)
    assert forecast is not None
    peak = forecast.peak_between(now, now + WINDOW_S)
    assert peak is not None
    return peak


def test_feeding_second_by_second_or_overlapping_ranges_equals_feeding_at_once() -> None:
    rates = np.random.default_rng(1).gamma(2.0, 2_000.0, 1_800)
    once = _fed(rates)
    incremental = LoadForecaster(once.settings)
    for end in range(1, len(rates) + 1):
        incremental.observe(float(end), rates[:end][-30:])  # re-sends 29 seconds it has already seen
    assert incremental.end_s == once.end_s
    np.testing.assert_array_equal(incremental.burst_load(), once.burst_load())
    assert _peak(incremental) == _peak(once)


def test_a_gap_drops_the_history_before_it() -> None:
    forecaster = _fed(np.full(600, 5_000.0))
    forecaster.observe(700.0, np.full(10, 5_000.0))  # seconds 601..690 never arrived
    assert len(forecaster.burst_load()) == 10


def test_window_peak_headroom_follows_the_workload_own_burstiness() -> None:
    rng = np.random.default_rng(2)
    smooth = rng.normal(6_000.0, 300.0, 3_600).clip(0)
    bursty = np.where(np.arange(3_600) % 300 < 20, 60_000.0, 1_500.0)  # same mean order, 20-s bursts
    smooth_forecaster, bursty_forecaster = _fed(smooth), _fed(bursty)
    smooth_level = float(smooth_forecaster.burst_load()[-120:].mean())
    bursty_level = float(bursty_forecaster.burst_load()[-120:].mean())
    # Smooth: a little above the level it has; bursty: room for the bursts it has seen, even between them.
    assert smooth_level < _peak(smooth_forecaster) < 1.3 * smooth_level
    assert _peak(bursty_forecaster) > 0.5 * bursty_forecaster.burst_load().max() > 5 * bursty_level


@pytest.mark.parametrize("model", ["WindowPeak", "Linear"])
def test_operator_style_samples_give_a_forecast_covering_the_window(model: ForecastModel) -> None:
    """Prometheus range queries give one rate per 15 s step, not per-second counts."""
    forecaster = _fed(np.full(400, 8_000.0), model=model, sample_s=15.0)
    assert _peak(forecaster) == pytest.approx(forecaster.latest_load(), rel=0.01)
    assert forecaster.latest_load() == pytest.approx(8_000.0 * 120 / 122, rel=0.01)


def test_too_little_history_gives_no_forecast() -> None:
    assert _fed(np.full(100, 5_000.0)).forecast(100.0, WINDOW_S) is None


def test_window_peak_never_asks_for_a_refit() -> None:
    """The operator refits in a worker when one is due: WindowPeak has nothing to select, so it
    must forecast at once instead of waiting for a pointless model selection."""
    forecaster = _fed(np.full(1_800, 5_000.0))
    assert not forecaster.refit_due(1_800.0)
    assert _fed(np.full(1_800, 5_000.0), model="Linear").refit_due(1_800.0)


@pytest.mark.parametrize(
    ("model", "chosen"),
    [
        ("WindowPeak", "WindowPeak"),
        ("SeasonalNaive", "SeasonalNaive"),
        ("DampedTrend", "DampedTrend"),
        ("Linear", "Linear"),
    ],
)
def test_a_fixed_model_is_the_chosen_one_before_and_after_a_refit(model: ForecastModel, chosen: str) -> None:
    forecaster = _fed(np.full(1_800, 5_000.0), model=model)
    assert forecaster.chosen_model == chosen
    forecaster.refit(1_800.0, WINDOW_S)
    assert forecaster.chosen_model == chosen


def test_auto_names_no_model_until_a_selection_chose_one() -> None:
    # Ten steps are too few to backtest: the selection falls back to a damped trend (AutoForecaster).
    forecaster = _fed(np.full(600, 5_000.0), model="Auto")
    assert forecaster.chosen_model is None
    refitted = refit_in_worker(forecaster, 600.0, WINDOW_S)
    assert forecaster.chosen_model == refitted.model == "DampedTrend"


def test_auto_reports_the_model_its_backtest_selected_by_its_spec_name() -> None:
    """Two hours of a steady ramp: a trend model beats the seasonal-naive baseline, and is named
    as the spec names it, never by a wrapper's class (the calibration around it)."""
    rates = np.linspace(1_000.0, 20_000.0, 7_200) + np.random.default_rng(3).normal(0.0, 100.0, 7_200)
    forecaster = _fed(rates, model="Auto")
    forecaster.refit(7_200.0, WINDOW_S)
    assert forecaster.chosen_model in {"DampedTrend", "Linear"}


def test_a_forecast_is_reused_only_while_history_model_and_horizon_stay_the_same() -> None:
    """A cycle without a new sample reuses the forecast of the last one; a new sample, a newly
    selected model or a longer horizon each give what a forecaster fed afresh gives."""
    rates = 5_000.0 + 800.0 * np.sin(np.arange(720) / 40.0) + np.random.default_rng(5).normal(0, 200, 720)
    settings = LoadForecastSettings(step_s=60, history_s=14_400, model="Linear", sample_s=20)

    def fresh(count: int, now: float, window_s: float) -> object:
        forecaster = LoadForecaster(settings)
        forecaster.observe(count * 20.0, rates[:count])
        forecaster.refit(now, window_s)
        return forecaster.forecast(now, window_s, select_when_due=False)

    forecaster = LoadForecaster(settings)
    forecaster.observe(700 * 20.0, rates[:700])
    forecaster.refit(14_000.0, WINDOW_S)
    first = forecaster.forecast(14_000.0, WINDOW_S, select_when_due=False)
    assert first is not None and first == fresh(700, 14_000.0, WINDOW_S)
    assert forecaster.forecast(14_015.0, WINDOW_S, select_when_due=False) is first, "no new sample: reused"
    longer = forecaster.forecast(14_015.0, 400.0, select_when_due=False)
    assert longer is not None and longer == fresh(700, 14_015.0, 400.0)
    assert len(longer.upper) > len(first.upper)
    forecaster.observe(701 * 20.0, rates[700:701])
    after_sample = forecaster.forecast(14_030.0, WINDOW_S, select_when_due=False)
    assert after_sample == fresh(701, 14_030.0, WINDOW_S) and after_sample != first
    # A new selection on other history (here: the model chosen on more of it) replaces the reused one.
    forecaster.observe(720 * 20.0, rates[701:720])
    forecaster.refit(14_400.0, WINDOW_S)
    assert forecaster.forecast(14_400.0, WINDOW_S, select_when_due=False) == fresh(720, 14_400.0, WINDOW_S)


def test_a_new_selection_on_the_same_history_is_not_hidden_by_a_reused_forecast() -> None:
    """The selection depends on the horizon it is made for: reselected for a longer one on the same
    history, the next forecast is the new model's, not the one kept from before."""
    rates = 5_000.0 + 800.0 * np.sin(np.arange(720) / 40.0) + np.random.default_rng(6).gamma(2.0, 150.0, 720)
    settings = LoadForecastSettings(step_s=60, history_s=14_400, model="Auto", sample_s=20)

    def selected_for(window_s: float) -> LoadForecaster:
        forecaster = LoadForecaster(settings)
        forecaster.observe(720 * 20.0, rates)
        forecaster.refit(14_400.0, window_s)
        return forecaster

    forecaster = selected_for(WINDOW_S)
    before = forecaster.forecast(14_400.0, WINDOW_S, select_when_due=False)
    forecaster.refit(14_400.0, 1_800.0)
    after = forecaster.forecast(14_400.0, WINDOW_S, select_when_due=False)
    assert after == selected_for(1_800.0).forecast(14_400.0, WINDOW_S, select_when_due=False)
    assert after != before, "the two selections differ here, so a stale forecast would show"
