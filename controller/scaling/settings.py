"""A ScalingPolicy's ``spec.forecast`` resolved, once, into the settings of the forecaster and of the policy.

The operator and the backtester run the same predictive policy; they differ only in where the
samples come from (a Prometheus range query at some spacing, or the simulator's seconds) and in
where capacity and lead time come from (learned, or given). Everything else is read from the spec
here and nowhere else, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.scaling.attainment import Attainment
from controller.scaling.capacity import Capacity, CapacityEstimator, CapacityState
from controller.scaling.forecast_spec import ForecastSpec
from controller.scaling.load_forecast import LoadForecastSettings
from controller.scaling.spec import ScalingPolicySpec
from policies.predictive import PredictiveSettings


def forecast_settings(
    forecast: ForecastSpec, sample_s: float = 1.0, history_s: float | None = None
) -> LoadForecastSettings:
    """The load forecaster's settings for samples ``sample_s`` apart, over ``history_s`` (the spec's by default)."""
    return LoadForecastSettings(
        quantile=forecast.forecast_quantile,
        step_s=forecast.step_s,
        history_s=forecast.history_s if history_s is None else history_s,
        refit_interval_s=forecast.refit_interval_s,
        model=forecast.model,
        ttft_slo_s=forecast.slo.ttft_s,
        sample_s=sample_s,
    )


def predictive_settings(spec: ScalingPolicySpec, capacity_per_replica: float, lead_time_s: float) -> PredictiveSettings:
    """The predictive policy's settings, with the capacity and lead time in force this cycle."""
    assert spec.forecast is not None, "only for policies with spec.forecast"
    return PredictiveSettings(
        capacity_per_replica=capacity_per_replica,
        lead_time_s=lead_time_s,
        interval_s=float(spec.interval_s),
        ttft_slo_s=spec.forecast.slo.ttft_s,
        behavior=spec.behavior,
    )


def predictive_min_replicas(spec: ScalingPolicySpec) -> int:
    """A predictive policy keeps at least one replica: with none, no load is seen to forecast from."""
    return max(1, spec.min_replicas)


def capacity_estimator(forecast: ForecastSpec, state: CapacityState | None = None) -> CapacityEstimator:
    """The capacity estimator of ``spec.forecast`` (its SLO and priors), resuming from ``state``."""
    return CapacityEstimator(
        tpot_slo_s=forecast.slo.tpot_s,
        prior_per_replica=forecast.capacity.per_replica,
        target_utilization=forecast.capacity.target_utilization,
        load_unit=forecast.capacity.unit,
        state=state,
    )


def attainment_of(forecast: ForecastSpec, raw: Mapping[str, Any] | None = None) -> Attainment:
    """The attainment tracker of ``spec.forecast``, resuming from a status; adaptive unless ``quantile`` is set."""
    return Attainment.from_status(raw, forecast.slo.attainment, adaptive=forecast.quantile is None)


def provisioned_capacity(capacity: Capacity, attainment: Attainment) -> float | None:
    """What the policy divides the forecast load by: the learned capacity over the headroom."""
    if capacity.per_replica is None:
        return None
    return capacity.per_replica / attainment.headroom
