"""The decide step of a ScalingPolicy with ``spec.forecast``: forecast, lead time and capacity -> the predictive policy.

:func:`controller.scaling.cycle.reconcile_scaling` observes the target and reads the spec's metrics
for every policy; with ``spec.forecast`` set it asks :func:`plan_predictive` for the count
instead of the reactive policy, then acts and reports as for any policy. Per cycle this:

1. learns the **lead time** from the target's pods (``scale.status.selector``; creation to
   Ready, :mod:`controller.scaling.leadtime`), the spec's default until one start-up was seen;
2. reads the server's **latency and queue** (TTFT p95 and waiting requests for vLLM, queue
   time and queue size for TGI and Triton) and runs the **forecasting loop**
   (:mod:`controller.scaling.forecast_loop`) on the load, a preset chosen by server and capacity unit
   or the spec's own query;
3. learns the **per-replica capacity** (:mod:`controller.scaling.capacity`) unless the spec sets it;
4. decides with :func:`policies.decide_predictive`. While the capacity is still unknown, the
   reactive policy's decision on the spec's metrics stands (path ``reactive``, reason
   ``CapacityUnknown``), and the loop keeps learning.

Lead time and capacity are persisted in the policy's status, so a restart keeps what was learned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.actuators import ScaleObservation
from controller.clients.kube import PODS, KubeError
from controller.clients.prometheus import Credentials, MetricError, RangeSamples
from controller.clients.servers import render_preset
from controller.observability.decisions import DecisionRecord
from controller.reconcile.conditions import iso
from controller.reconcile.cycle import Deps, PolicySnapshot
from controller.scaling.capacity import Capacity, CapacityObservation, learn
from controller.scaling.forecast_loop import ForecastOutcome, ForecastSession, history_plan
from controller.scaling.forecast_spec import CapacityUnit, ForecastSpec, Server
from controller.scaling.leadtime import LeadTime
from controller.scaling.leadtime import learn as learn_lead_time
from controller.scaling.load_forecast import LoadForecastSettings
from controller.scaling.spec import ScalingPolicySpec
from policies import ScalingDecision, ScalingState
from policies.predictive import (
    LoadForecast,
    Path,
    PredictiveInputs,
    PredictiveSettings,
    PredictiveState,
    decide_predictive,
)

KIND = "ScalingPolicy"


@dataclass(frozen=True)
class ServerSignals:
    """The presets a server's capacity is judged by, and its default load preset per unit."""

    load: Mapping[CapacityUnit, str]
    latency: str
    queue: str


SIGNALS: dict[Server, ServerSignals] = {
    "vLLM": ServerSignals(
        {"PrefillTokensPerSecond": "vllm-prompt-tokens-rate", "RequestsPerSecond": "vllm-request-rate"},
        latency="vllm-ttft-p95",
        queue="vllm-requests-waiting",
    ),
    "TGI": ServerSignals(
        {"PrefillTokensPerSecond": "tgi-input-tokens-rate", "RequestsPerSecond": "tgi-request-rate"},
        latency="tgi-queue-duration-p95",
        queue="tgi-queue-size",
    ),
    # Triton's own metrics count requests, not tokens: a token load needs load.query.
    "Triton": ServerSignals(
        {"RequestsPerSecond": "triton-request-rate"},
        latency="triton-queue-duration",
        queue="triton-pending-requests",
    ),
}


@dataclass(frozen=True)
class Queries:
    """The PromQL a predictive cycle reads; ``load_freshness`` only for a preset load."""

    load: str
    load_freshness: str | None
    latency: str
    queue: str


def queries_for(namespace: str, spec: ScalingPolicySpec, forecast: ForecastSpec) -> Queries:
    """The load (the spec's query, its preset, or the server's default for the unit) and the signals."""
    signals = SIGNALS[forecast.server]
    load = forecast.load

    def render(preset: str) -> tuple[str, str]:
        rendered = render_preset(
            preset,
            namespace=namespace,
            kind=spec.target.kind,
            name=spec.target.name,
            model_name=load.model_name,
            label_selector=load.label_selector,
        )
        return rendered.value, rendered.freshness

    if load.query:
        load_query, freshness = load.query, None
    else:
        load_query, fresh = render(load.preset or signals.load[forecast.capacity.unit])
        freshness = fresh
    return Queries(load_query, freshness, render(signals.latency)[0], render(signals.queue)[0])


@dataclass(frozen=True)
class PredictivePlan:
    """What the predictive decide step hands back to the cycle: the count, why, and what to show."""

    desired: int
    recommended: int
    path: Path
    reasons: tuple[str, ...]
    message: str
    state: ScalingState
    forecast: dict[str, Any]
    """``inputs.forecast`` of the decision record (docs/decision-log.md)."""
    proposals: list[dict[str, Any]]
    status: dict[str, Any]
    """``status.forecast``, ``status.leadTime`` and ``status.capacity``."""

    def annotate(self, record: DecisionRecord) -> DecisionRecord:
        """The cycle's record with this plan's reasons, message, forecast and path."""
        return replace(
            record,
            reason=self.reasons[0],
            reasons=self.reasons,
            message=self.message,
            inputs={**record.inputs, "forecast": self.forecast},
            # What the paths asked for before the behavior rules and bounds, not the reactive policy's count.
            output={
                **record.output,
                "recommendedReplicas": self.recommended,
                "path": self.path,
                "proposals": self.proposals,
            },
        )


async def plan_predictive(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    reactive: ScalingDecision,
    credentials: Credentials,
    deps: Deps,
    session: ForecastSession,
    now: float,
) -> PredictivePlan:
    forecast_spec = spec.forecast
    assert forecast_spec is not None, "only for policies with spec.forecast"
    status = policy.status or {}
    queries = queries_for(policy.namespace, spec, forecast_spec)

    async def read(query: str | None) -> float | None:
        if query is None:
            return None
        try:
            return await deps.prometheus.query(spec.prometheus, credentials, query)
        except MetricError:
            return None  # a missing signal is None: it never grows the capacity nor calms a panic

    lead_time, (latency, queue, age) = await asyncio.gather(
        _lead_time(deps, policy.namespace, observed.selector, status.get("leadTime"), forecast_spec.lead_time_s),
        asyncio.gather(read(queries.latency), read(queries.queue), read(queries.load_freshness)),
    )
    window_s = lead_time.seconds + spec.interval_s
    outcome = await _forecast(policy, spec, forecast_spec, queries, credentials, deps, session, now, window_s, age)
    capacity = (
        Capacity.from_spec(forecast_spec.capacity.per_replica)
        if forecast_spec.capacity.per_replica is not None
        else learn(
            Capacity.from_status(status.get("capacity")),
            CapacityObservation(outcome.observed_load, observed.ready_replicas, latency, queue),
            forecast_spec.slo.ttft_s,
        )
    )
    state = PredictiveState(
        ScalingState.from_dict(status.get("history")),
        LoadForecast.from_dict((status.get("forecast") or {}).get("last")),
    )
    loop = session.loop
    accuracy = loop.accuracy if loop is not None else None
    shown: dict[str, Any] = {
        "model": _model_in_use(forecast_spec, session),
        "quantileLevel": forecast_spec.quantile,
        "leadTimeSeconds": lead_time.seconds,
        "observedLoad": outcome.observed_load,
        "recentErrorRatio": accuracy.error_ratio if accuracy else None,
        **({"capacityPerReplica": capacity.per_replica} if capacity.per_replica is not None else {}),
        **({"latencySeconds": latency} if latency is not None else {}),
        **({"queue": queue} if queue is not None else {}),
        **({"error": outcome.error.reason, "detail": outcome.error.message} if outcome.error else {}),
    }

    if capacity.per_replica is None:
        plan_path: Path = "reactive"
        reasons = ("CapacityUnknown", *(str(r) for r in reactive.reasons))
        message = (
            f"capacity per replica not learned yet ({len(capacity.samples)} of the healthy cycles needed): "
            f"the reactive policy decides: {reactive.message}"
        )
        desired, recommended, scaling = reactive.desired_replicas, reactive.recommended_replicas, reactive.state
        last_forecast = outcome.forecast or state.last_forecast
        proposals: list[dict[str, Any]] = []
    else:
        settings = PredictiveSettings(
            capacity_per_replica=capacity.per_replica,
            lead_time_s=lead_time.seconds,
            interval_s=float(spec.interval_s),
            ttft_slo_s=forecast_spec.slo.ttft_s,
            behavior=spec.behavior,
        )
        inputs = PredictiveInputs(
            spec_replicas=observed.spec_replicas,
            ready_replicas=observed.ready_replicas,
            min_replicas=max(1, spec.min_replicas),
            max_replicas=spec.max_replicas,
            settings=settings,
            forecast=outcome.forecast,
            observed_load=outcome.observed_load,
            ttft_s=latency,
        )
        decision = decide_predictive(inputs, state, now)
        plan_path, reasons, message = decision.path, tuple(str(r) for r in decision.reasons), decision.message
        desired, scaling = decision.desired_replicas, decision.state.scaling
        last_forecast = decision.state.last_forecast
        asked = [r for r in (decision.forecast_replicas, decision.reactive_replicas) if r is not None]
        recommended = desired if plan_path == "hold" or not asked else max(asked)
        proposals = [
            {"metric": name, "usageRatio": None, "replicas": replicas, "reason": reasons[0]}
            for name, replicas in (("forecast", decision.forecast_replicas), ("reactive", decision.reactive_replicas))
            if replicas is not None
        ]
    if last_forecast is not None:
        peak = last_forecast.peak_between(now, now + window_s)
        if peak is not None:
            shown["quantile"] = peak
        shown["issuedAt"] = iso(last_forecast.issued_at)
    return PredictivePlan(
        desired=desired,
        recommended=recommended,
        path=plan_path,
        reasons=reasons,
        message=message,
        state=scaling,
        forecast=shown,
        proposals=proposals,
        status={
            "forecast": _forecast_status(forecast_spec, outcome, last_forecast, now, window_s, session),
            "leadTime": lead_time.to_status(),
            "capacity": {"unit": forecast_spec.capacity.unit, **capacity.to_status()},
        },
    )


async def _lead_time(deps: Deps, namespace: str, selector: str, raw: Any, default_s: float) -> LeadTime:
    """The lead time in force, with the start-ups of the target's pods added; the API failing keeps it."""
    previous = LeadTime.from_status(raw if isinstance(raw, Mapping) else None, default_s)
    if not selector:  # without a selector every pod of the namespace would be counted
        return previous
    try:
        pods = await deps.kube.list(PODS, namespace, selector)
    except KubeError:
        return previous
    return learn_lead_time(previous, pods, default_s)


async def _forecast(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    forecast_spec: ForecastSpec,
    queries: Queries,
    credentials: Credentials,
    deps: Deps,
    session: ForecastSession,
    now: float,
    window_s: float,
    sample_age_s: float | None,
) -> ForecastOutcome:
    sample_s, history_s = history_plan(forecast_spec.step_s, forecast_spec.history_s)
    settings = LoadForecastSettings(
        quantile=forecast_spec.quantile,
        step_s=forecast_spec.step_s,
        history_s=history_s,
        refit_interval_s=forecast_spec.refit_interval_s,
        model=forecast_spec.model,
        ttft_slo_s=forecast_spec.slo.ttft_s,
        sample_s=sample_s,
    )
    loop = session.loop_for(settings, queries.load, history_s)

    def fetch(start: float, end: float, step_s: float) -> Awaitable[RangeSamples]:
        return deps.prometheus.range_query(
            spec.prometheus, credentials, queries.load, start=start, end=end, step_s=step_s
        )

    def refitted(seconds: float, model: str) -> None:
        deps.metrics.observe_model_refit(KIND, policy.namespace, policy.name, model, seconds)

    return await loop.cycle(
        fetch, now, window_s, spec.prometheus.max_staleness_s, deps.forecast_processes, refitted, sample_age_s
    )


def _model_in_use(forecast_spec: ForecastSpec, session: ForecastSession) -> str:
    """The model the forecast comes from; the setting (``Auto``) until its first selection finished."""
    chosen = session.loop.forecaster.chosen_model if session.loop is not None else None
    return chosen or forecast_spec.model


def _forecast_status(
    forecast_spec: ForecastSpec,
    outcome: ForecastOutcome,
    last: LoadForecast | None,
    now: float,
    window_s: float,
    session: ForecastSession,
) -> dict[str, Any]:
    """``status.forecast``: the quantile path summarized, its source and its recent accuracy."""
    accuracy = session.loop.accuracy if session.loop is not None else None
    status: dict[str, Any] = {
        "quantile": forecast_spec.quantile,
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
    if outcome.error is not None:
        status["error"] = f"{outcome.error.reason}: {outcome.error.message}"[:1024]
    if last is not None:
        status["issuedAt"] = iso(last.issued_at)
        status["peak"] = last.peak_between(now, now + window_s)
        status["horizonEnd"] = iso(last.ends_at)
    return status
