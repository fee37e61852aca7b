"""The predictive policy as a backtest controller: :class:`LoadForecaster` + :func:`policies.decide_predictive`.

Each decision does what the operator's forecasting loop does, on the samples of the seconds
already over: hand the new per-second prompt tokens to the forecaster
(:class:`controller.scaling.load_forecast.LoadForecaster`, which owns the burst-aware load, the model
selection and its refit cadence) and pass its forecast, with the burst-aware load of the last
second as the observed load, to the pure policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.backtest.simulate import FleetView, Observations
from controller.scaling.load_forecast import LoadForecaster, LoadForecastSettings
from policies.predictive import (
    PredictiveDecision,
    PredictiveInputs,
    PredictiveSettings,
    PredictiveState,
    decide_predictive,
)


@dataclass
class PredictiveController:
    """Closed-loop adapter: observations -> forecast -> :func:`decide_predictive` -> count."""

    forecast: LoadForecastSettings
    policy: PredictiveSettings
    min_replicas: int
    max_replicas: int
    name: str = "infercast"
    state: PredictiveState = field(default_factory=PredictiveState)
    decisions: list[PredictiveDecision] = field(default_factory=list)
    bands: list[tuple[float, float]] = field(default_factory=list)
    """(time, forecast replicas) per decision, for the plot."""
    forecaster: LoadForecaster = field(init=False)

    def __post_init__(self) -> None:
        self.forecaster = LoadForecaster(self.forecast)

    @property
    def interval_s(self) -> float:
        return self.policy.interval_s

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        seen = int(self.forecaster.end_s or 0)
        if len(observations) > seen:
            self.forecaster.observe(float(len(observations)), observations.prompt_tokens[seen:])
        inputs = PredictiveInputs(
            spec_replicas=fleet.desired,
            ready_replicas=fleet.ready,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            settings=self.policy,
            forecast=self.forecaster.forecast(now, self.policy.window_s),
            observed_load=self.forecaster.latest_load(),
        )
        decision = decide_predictive(inputs, self.state, now)
        self.state = decision.state
        self.decisions.append(decision)
        if decision.forecast_replicas is not None:
            self.bands.append((now, float(decision.forecast_replicas)))
        return decision.desired_replicas
