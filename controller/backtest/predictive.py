"""The predictive policy as a backtest controller: forecaster + :func:`policies.decide_predictive`.

Each decision does what the operator's forecasting loop does, on the samples of the seconds
already over: compute the burst-aware load (:mod:`controller.backtest.load`), take its peak per
decision interval as the series to forecast, refit the forecaster (model selection by rolling-
origin backtest with conformal calibration, :class:`forecasting.AutoForecaster`) every refit
interval and the chosen model every decision, and hand the chosen quantile of each future step
to the pure policy as plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from controller.backtest.load import burst_load, step_peaks
from controller.backtest.simulate import FleetView, Observations
from forecasting import AutoForecaster, DampedTrend, Forecaster, ForecastInputError, LinearForecaster, SeasonalNaive
from policies.predictive import (
    LoadForecast,
    PredictiveDecision,
    PredictiveInputs,
    PredictiveSettings,
    PredictiveState,
    decide_predictive,
)

#: Any fixed origin works: the forecasters need a time index, the backtest counts from 0.
_EPOCH = pd.Timestamp("2024-01-01")
#: Fewer interval steps than this leave nothing to fit: the policy runs on its reactive path.
MIN_HISTORY_STEPS = 4


@dataclass(frozen=True)
class ForecastSettings:
    """What the policy file's ``spec.forecast`` says, resolved to numbers (see controller.forecast_spec)."""

    quantile: float
    lead_time_s: float
    refit_interval_s: float
    capacity_per_replica: float
    ttft_slo_s: float
    history_s: float
    step_s: int = 60
    model: str = "Auto"


@dataclass
class PredictiveController:
    """Closed-loop adapter: observations -> forecast -> :func:`decide_predictive` -> count."""

    forecast: ForecastSettings
    policy: PredictiveSettings
    min_replicas: int
    max_replicas: int
    name: str = "infercast"
    state: PredictiveState = field(default_factory=PredictiveState)
    decisions: list[PredictiveDecision] = field(default_factory=list)
    bands: list[tuple[float, float]] = field(default_factory=list)
    """(time, forecast replicas) per decision, for the plot."""
    _model: Forecaster | None = None
    _selected_at: float = -math.inf

    @property
    def interval_s(self) -> float:
        return self.policy.interval_s

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        load = burst_load(np.asarray(observations.prompt_tokens), self.forecast.ttft_slo_s)
        observed = float(load[-1]) if len(load) else None
        inputs = PredictiveInputs(
            spec_replicas=fleet.desired,
            ready_replicas=fleet.ready,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            settings=self.policy,
            forecast=self._forecast(step_peaks(load, self.forecast.step_s), now),
            observed_load=observed,
        )
        decision = decide_predictive(inputs, self.state, now)
        self.state = decision.state
        self.decisions.append(decision)
        if decision.forecast_replicas is not None:
            self.bands.append((now, float(decision.forecast_replicas)))
        return decision.desired_replicas

    def _forecast(self, peaks: np.ndarray, now: float) -> LoadForecast | None:
        step = self.forecast.step_s
        first = max(0, len(peaks) - int(self.forecast.history_s // step))
        if len(peaks) - first < MIN_HISTORY_STEPS:
            return None
        # The forecast starts where the last complete step ends, which is at most one step ago.
        issued_at = float(len(peaks) * step)
        horizon = math.ceil((now + self.policy.window_s - issued_at) / step)
        index = _EPOCH + pd.to_timedelta(np.arange(first, len(peaks)) * step, "s")
        series = pd.Series(peaks[first:], index=index)
        try:
            if self._model is None or now - self._selected_at >= self.forecast.refit_interval_s:
                self._model, self._selected_at = self._select(series, horizon), now
            predicted = self._model.fit(series).predict(horizon, (self.forecast.quantile,))
        except ForecastInputError:
            return None
        upper = np.maximum(predicted.quantile(self.forecast.quantile), 0.0)
        return LoadForecast(issued_at, float(step), tuple(float(v) for v in upper), self.forecast.quantile)

    def _select(self, series: pd.Series, horizon: int) -> Forecaster:
        """The model to refit every decision until the next selection."""
        fixed: dict[str, Forecaster] = {
            "SeasonalNaive": SeasonalNaive(),
            "DampedTrend": DampedTrend(),
            "Linear": LinearForecaster(),
        }
        if self.forecast.model in fixed:
            return fixed[self.forecast.model]
        return AutoForecaster(horizon=horizon).fit(series).reusable()
