"""The plan of a ScalingPolicy with ``spec.forecast``: forecast, lead time and capacity -> the predictive policy.

From what :func:`controller.scaling.observe.observe_predictive` read this cycle (the lead time, the
server's signals over the last minute, the forecasting loop's outcome), :func:`plan_predictive`:

1. learns the **per-replica capacity** of each resource (:mod:`controller.scaling.capacity`; the
   spec's ``perReplica`` and ``targetUtilization`` are priors until then) from the minute's window;
2. judges the minute that ended against the SLO and steers the **headroom** towards
   ``slo.attainment`` (:mod:`controller.scaling.attainment`);
3. decides with :func:`policies.decide_predictive` on the capacity over the headroom. While the
   capacity is still unknown, the reactive policy's decision on the spec's metrics stands (path
   ``reactive``, reason ``CapacityUnknown``), and the loop keeps learning;
4. says what the record and the status show: the forecast in force, the lead time (with the
   pending replicas and the wait for a node it includes while GPUs are short), the capacity per
   resource and which binds, the attainment and the headroom.

The backtester learns with the same estimator and feedback (``controller/backtest/predictive.py``).
Lead time, capacity and attainment are persisted in the policy's status, so a restart keeps what
was learned. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from controller.actuators import ScaleObservation
from controller.reconcile.conditions import iso
from controller.scaling.attainment import Attainment, minute_met
from controller.scaling.capacity import CapacityObservation, CapacityState
from controller.scaling.forecast_loop import ForecastSession
from controller.scaling.forecast_spec import ForecastSpec
from controller.scaling.observe import MetricReading, PredictiveSignals
from controller.scaling.plan import ScalingPlan, decide_on_metrics
from controller.scaling.settings import (
    attainment_of,
    capacity_estimator,
    predictive_min_replicas,
    predictive_settings,
    provisioned_capacity,
)
from controller.scaling.spec import ScalingPolicySpec
from policies import ScalingState
from policies.predictive import LoadForecast, PredictiveInputs, PredictiveState, decide_predictive


def plan_predictive(
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    readings: Sequence[MetricReading],
    signals: PredictiveSignals,
    state: ScalingState,
    status: Mapping[str, Any],
    session: ForecastSession,
    now: float,
) -> ScalingPlan:
    """The predictive decision; ``status`` is the policy's, for what was learned before this cycle."""
    forecast_spec = spec.forecast
    assert forecast_spec is not None, "only for policies with spec.forecast"
    outcome, lead_time = signals.forecast, signals.lead_time
    estimator = capacity_estimator(
        forecast_spec, CapacityState.from_status((status.get("capacity") or {}).get("state"))
    )
    capacity = estimator.partial_fit(_capacity_window(observed, signals, session, now)).estimate()
    attainment = _judge_minute(
        attainment_of(forecast_spec, status.get("slo")), signals, forecast_spec, signals.window_s, now
    )
    provisioned = provisioned_capacity(capacity, attainment)
    previous = PredictiveState(state, LoadForecast.from_dict((status.get("forecast") or {}).get("last")))
    loop = session.loop
    accuracy = loop.accuracy if loop is not None else None
    shown: dict[str, Any] = {
        "model": _model_in_use(forecast_spec, session),
        "quantileLevel": forecast_spec.forecast_quantile,
        "leadTimeSeconds": lead_time.seconds,
        **(
            {"pendingReplicas": lead_time.supply.pending, "schedulingDelaySeconds": lead_time.scheduling_delay_s}
            if lead_time.supply.short
            else {}
        ),
        "observedLoad": outcome.observed_load,
        "recentErrorRatio": accuracy.error_ratio if accuracy else None,
        **({"capacityPerReplica": capacity.per_replica} if capacity.per_replica is not None else {}),
        **({"capacityBinding": capacity.binding} if capacity.binding is not None else {}),
        "capacitySource": capacity.source,
        "capacityResources": [r.to_status() for r in capacity.resources],
        "headroom": round(attainment.headroom, 4),
        "sloAttainmentTarget": attainment.target,
        "sloAttainment": attainment.realized,
        **({"latencySeconds": signals.latency_s} if signals.latency_s is not None else {}),
        **({"tpotSeconds": signals.server.tpot_s} if signals.server.tpot_s is not None else {}),
        **({"queue": signals.queue} if signals.queue is not None else {}),
        **({"error": outcome.error.reason, "detail": outcome.error.message} if outcome.error else {}),
    }

    if provisioned is None:
        reactive = decide_on_metrics(spec, observed, readings, state, now)
        plan = ScalingPlan(
            desired=reactive.desired_replicas,
            recommended=reactive.recommended_replicas,
            reasons=("CapacityUnknown", *(str(r) for r in reactive.reasons)),
            message=(
                "capacity per replica unknown (no prefill seen yet, no prior in the spec): "
                f"the reactive policy decides: {reactive.message}"
            ),
            state=reactive.state,
            proposals=[],
            path="reactive",
        )
        last_forecast = outcome.forecast or previous.last_forecast
    else:
        inputs = PredictiveInputs(
            spec_replicas=observed.spec_replicas,
            ready_replicas=observed.ready_replicas,
            min_replicas=predictive_min_replicas(spec),
            max_replicas=spec.max_replicas,
            settings=predictive_settings(spec, provisioned, lead_time.seconds),
            forecast=outcome.forecast,
            observed_load=outcome.observed_load,
            ttft_s=signals.latency_s,
        )
        decision = decide_predictive(inputs, previous, now)
        if outcome.forecast is not None:
            attainment = attainment.forecasting(now, signals.window_s)
        reasons = tuple(str(r) for r in decision.reasons)
        asked = [r for r in (decision.forecast_replicas, decision.reactive_replicas) if r is not None]
        plan = ScalingPlan(
            desired=decision.desired_replicas,
            recommended=decision.desired_replicas if decision.path == "hold" or not asked else max(asked),
            reasons=reasons,
            message=decision.message,
            state=decision.state.scaling,
            proposals=[
                {"metric": name, "usageRatio": None, "replicas": replicas, "reason": reasons[0]}
                for name, replicas in (
                    ("forecast", decision.forecast_replicas),
                    ("reactive", decision.reactive_replicas),
                )
                if replicas is not None
            ],
            path=decision.path,
        )
        last_forecast = decision.state.last_forecast
    window_s = signals.window_s
    if last_forecast is not None:
        peak = last_forecast.peak_between(now, now + window_s)
        if peak is not None:
            shown["quantile"] = peak
        shown["issuedAt"] = iso(last_forecast.issued_at)
    return replace(
        plan,
        forecast=shown,
        status={
            "forecast": _forecast_status(forecast_spec, signals, last_forecast, now, session),
            "leadTime": lead_time.to_status(),
            "capacity": {
                "unit": forecast_spec.capacity.unit,
                **capacity.to_status(),
                "state": estimator.state_.to_status(),
            },
            "slo": attainment.to_status(),
        },
    )


#: The span of a capacity window and of a judged minute: the presets' rate window.
WINDOW_S = 60.0


def _capacity_window(
    observed: ScaleObservation, signals: PredictiveSignals, session: ForecastSession, now: float
) -> CapacityObservation:
    """The last minute as the capacity estimator reads it: the load's peak from the forecasting
    loop's history (the observed load when there is none yet) and the server's signals."""
    loop = session.loop
    peak = loop.forecaster.recent_peak(WINDOW_S) if loop is not None else None
    mean = loop.forecaster.recent_mean(WINDOW_S) if loop is not None else None
    server = signals.server
    return CapacityObservation(
        time_s=now,
        ready_replicas=observed.ready_replicas,
        load=peak if peak is not None else signals.forecast.observed_load,
        load_mean=mean,
        generated=server.generated,
        prefilled=server.prefilled,
        prefill_busy=server.prefill_busy,
        ttft_s=server.latency_s,
        tpot_s=server.tpot_s,
        queue=server.queue,
        running=server.running,
    )


def _judge_minute(
    attainment: Attainment, signals: PredictiveSignals, forecast: ForecastSpec, dead_time_s: float, now: float
) -> Attainment:
    """Judge the minute that ended now, once a minute has passed since the last one judged; a
    raise of the headroom acts after ``dead_time_s`` (lead time plus interval)."""
    last = attainment.last_minute_end_s
    if last is not None and now - last < WINDOW_S:
        return attainment
    met = minute_met(signals.latency_s, signals.server.tpot_s, forecast.slo.ttft_s, forecast.slo.tpot_s)
    return attainment.record(met, now, dead_time_s)


def _model_in_use(forecast_spec: ForecastSpec, session: ForecastSession) -> str:
    """The model the forecast comes from; the setting (``Auto``) until its first selection finished."""
    chosen = session.loop.forecaster.chosen_model if session.loop is not None else None
    return chosen or forecast_spec.model


def _forecast_status(
    forecast_spec: ForecastSpec,
    signals: PredictiveSignals,
    last: LoadForecast | None,
    now: float,
    session: ForecastSession,
) -> dict[str, Any]:
    """``status.forecast``: the quantile path summarized, its source and its recent accuracy."""
    outcome, window_s = signals.forecast, signals.window_s
    accuracy = session.loop.accuracy if session.loop is not None else None
    status: dict[str, Any] = {
        "quantile": forecast_spec.forecast_quantile,
        "model": _model_in_use(forecast_spec, session),
        "fresh": outcome.forecast is not None,
        "refitting": outcome.refitting,
        "windowSeconds": round(window_s, 1),
        "last": last.to_dict() if last is not None else None,
        "accuracy": {
            "errorRatio": accuracy.error_ratio if accuracy else None,
            "coverage": accuracy.coverage if accuracy else None,
            "windows": len(accuracy.pairs) if accuracy else 0,
        },
    }
    # A merge patch keeps what it does not mention: null clears the error of an earlier cycle.
    status["error"] = f"{outcome.error.reason}: {outcome.error.message}"[:1024] if outcome.error else None
    if last is not None:
        status["issuedAt"] = iso(last.issued_at)
        status["peak"] = last.peak_between(now, now + window_s)
        status["horizonEnd"] = iso(last.ends_at)
    return status
