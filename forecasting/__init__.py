"""infercast forecasting: pure ML on series (forecasters, model selection, failure-pattern detectors)."""

from forecasting.base import Forecast, Forecaster, ForecastInputError, NotFittedError, clone
from forecasting.burst import BURST_WINDOWS_S, burst_load
from forecasting.gbm import GradientBoostingForecaster
from forecasting.hygiene import RegularSeries, regularize
from forecasting.level import DampedTrend
from forecasting.prophet_model import ProphetForecaster
from forecasting.regression import LinearForecaster
from forecasting.seasonal import SeasonalNaive
from forecasting.selection import AutoForecaster, Backtest, CalibratedForecaster, Calibration, default_candidates
from forecasting.window_peak import WindowPeak

__all__ = [
    "BURST_WINDOWS_S",
    "AutoForecaster",
    "Backtest",
    "CalibratedForecaster",
    "Calibration",
    "DampedTrend",
    "Forecast",
    "ForecastInputError",
    "Forecaster",
    "GradientBoostingForecaster",
    "LinearForecaster",
    "NotFittedError",
    "ProphetForecaster",
    "RegularSeries",
    "SeasonalNaive",
    "WindowPeak",
    "burst_load",
    "clone",
    "default_candidates",
    "regularize",
]
