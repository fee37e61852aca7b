"""The predictive policy as a backtest controller, learning its fleet the way the operator does.

Each decision does what the operator's cycle does, on the samples of the seconds already over:

1. hands the new per-second prompt tokens to the forecaster
   (:class:`controller.scaling.load_forecast.LoadForecaster`, shared with the operator);
2. learns the **lead time** from the replicas that finished a cold start (created, ready), with
   :func:`controller.scaling.leadtime.add_startups`, as the operator does from pods;
3. learns the **capacity** (:class:`controller.scaling.capacity.CapacityEstimator`) from the last
   minute's window of the replicas' metrics (:func:`capacity_window`: what vLLM's counters,
   gauges and histograms show in a cluster);
4. judges every minute that ended (:func:`controller.scaling.attainment.minute_met` on the p95
   TTFT of its first tokens and the p95 TPOT of its finished requests, as Prometheus histograms
   give them) and steers the headroom towards ``slo.attainment``;
5. decides with :func:`policies.decide_predictive` on the learned capacity over the headroom.

Until a capacity is known (no prefill seen yet, and no prior) it holds the count, where the
operator runs its reactive policy: the backtest starts warm (see ``initial_replicas``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.backtest.simulate import FleetView, Observations
from controller.scaling.attainment import SLO_QUANTILE, Attainment, minute_met
from controller.scaling.capacity import Capacity, CapacityEstimator, CapacityObservation
from controller.scaling.leadtime import LeadTime, add_startups
from controller.scaling.load_forecast import LoadForecaster
from controller.scaling.settings import (
    attainment_of,
    capacity_estimator,
    forecast_settings,
    predictive_min_replicas,
    predictive_settings,
    provisioned_capacity,
)
from controller.scaling.spec import ScalingPolicySpec
from policies.predictive import PredictiveDecision, PredictiveInputs, PredictiveState, decide_predictive

#: The span of one capacity window and of one judged minute, seconds.
WINDOW_S = 60.0


@dataclass(frozen=True)
class Step:
    """What one decision knew and asked for, for the plot and the summary."""

    time_s: float
    desired: int
    forecast_replicas: int | None
    forecast_load: float | None
    capacity: float | None
    """The capacity per replica in force, in the load's unit (the smallest of the resources')."""
    resources: dict[str, float | None]
    """Each resource's capacity in the load's unit."""
    binding: str | None
    headroom: float
    lead_time_s: float


@dataclass
class PredictiveController:
    """Closed-loop adapter: observations -> learned fleet + forecast -> :func:`decide_predictive` -> count."""

    spec: ScalingPolicySpec
    name: str = "infercast"
    state: PredictiveState = field(default_factory=PredictiveState)
    steps: list[Step] = field(default_factory=list)
    forecaster: LoadForecaster = field(init=False)
    estimator: CapacityEstimator = field(init=False)
    lead_time: LeadTime = field(init=False)
    attainment: Attainment = field(init=False)
    capacity: Capacity = field(init=False)
    _startups_seen: int = 0

    def __post_init__(self) -> None:
        forecast = self.spec.forecast
        assert forecast is not None, "a predictive backtest needs spec.forecast"
        self.forecaster = LoadForecaster(forecast_settings(forecast))
        self.estimator = capacity_estimator(forecast)
        self.lead_time = LeadTime.from_status(None, forecast.lead_time_s)
        self.attainment = attainment_of(forecast)
        self.capacity = self.estimator.estimate()

    @property
    def interval_s(self) -> float:
        return float(self.spec.interval_s)

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        forecast = self.spec.forecast
        assert forecast is not None
        seen = int(self.forecaster.end_s or 0)
        if len(observations) > seen:
            self.forecaster.observe(float(len(observations)), observations.prompt_tokens[seen:])
        self._learn(now, observations)
        capacity = provisioned_capacity(self.capacity, self.attainment)
        if capacity is None:
            self.steps.append(self._step(now, fleet.desired, None, None))
            return fleet.desired
        settings = predictive_settings(self.spec, capacity, self.lead_time.seconds)
        inputs = PredictiveInputs(
            spec_replicas=fleet.desired,
            ready_replicas=fleet.ready,
            min_replicas=predictive_min_replicas(self.spec),
            max_replicas=self.spec.max_replicas,
            settings=settings,
            forecast=self.forecaster.forecast(now, settings.window_s),
            observed_load=self.forecaster.latest_load(),
        )
        decision = decide_predictive(inputs, self.state, now)
        self.state = decision.state
        if inputs.forecast is not None:
            self.attainment = self.attainment.forecasting(now, settings.window_s)
        last = decision.state.last_forecast
        peak = last.peak_between(now, now + settings.window_s) if last is not None else None
        self.steps.append(self._step(now, decision.desired_replicas, decision, peak))
        return decision.desired_replicas

    def _learn(self, now: float, observations: Observations) -> None:
        forecast = self.spec.forecast
        assert forecast is not None
        new = observations.startups[self._startups_seen :]
        self._startups_seen = len(observations.startups)
        started = ((s.created_s, s.ready_s - s.created_s) for s in new)
        self.lead_time = add_startups(self.lead_time, started, forecast.lead_time_s)
        window = capacity_window(observations, self.forecaster, now)
        if window is not None:
            self.estimator.partial_fit(window)
            self.capacity = self.estimator.estimate()
        last = self.attainment.last_minute_end_s or 0.0
        for end in np.arange(last + WINDOW_S, math.floor(now) + 1e-9, WINDOW_S):
            ttft, tpot = observations.ttft.between(end - WINDOW_S, end), observations.tpot.between(end - WINDOW_S, end)
            met = minute_met(_p95(ttft), _p95(tpot), forecast.slo.ttft_s, forecast.slo.tpot_s)
            self.attainment = self.attainment.record(met, float(end), self.lead_time.seconds + self.interval_s)

    def _step(self, now: float, desired: int, decision: PredictiveDecision | None, peak: float | None) -> Step:
        return Step(
            time_s=now,
            desired=desired,
            forecast_replicas=decision.forecast_replicas if decision else None,
            forecast_load=peak,
            capacity=self.capacity.per_replica,
            resources={r.resource: r.in_load_unit for r in self.capacity.resources},
            binding=self.capacity.binding,
            headroom=self.attainment.headroom,
            lead_time_s=self.lead_time.seconds,
        )


def _p95(values: np.ndarray) -> float | None:
    return float(np.percentile(values, 100 * SLO_QUANTILE)) if len(values) else None


def capacity_window(observations: Observations, forecaster: LoadForecaster, now: float) -> CapacityObservation | None:
    """The fleet over the last :data:`WINDOW_S` seconds as the capacity estimator reads it, or
    ``None`` before a whole window was seen. Per-second samples average into rates, the latencies
    of the window give its p95s, as ``rate()`` and ``histogram_quantile()`` over ``[1m]`` do."""
    start = now - WINDOW_S
    if start < 0 or len(observations) < now:
        return None

    def mean(series: str) -> float | None:
        return observations.mean(series, start, now)

    ready, inflight, decoding = mean("ready"), mean("inflight"), mean("decoding")
    return CapacityObservation(
        time_s=now,
        ready_replicas=ready or 0.0,
        load=forecaster.recent_peak(WINDOW_S),
        load_mean=forecaster.recent_mean(WINDOW_S),
        generated=mean("generated_tokens"),
        prefilled=mean("prefilled_tokens"),
        prefill_busy=mean("prefill_seconds"),
        ttft_s=_p95(observations.ttft.between(start, now)),
        tpot_s=_p95(observations.tpot.between(start, now)),
        queue=None if inflight is None or decoding is None else max(0.0, inflight - decoding),
        running=decoding,
    )
