"""One reconcile cycle of a ScalingPolicy: observe -> decide -> act -> report. No Kopf here.

The Kopf handlers call :func:`reconcile_scaling` once per interval with a snapshot of the policy
and what the operator's indexes know about other writers; everything else (the target, the
metrics, Secrets) is read here through the adapters, the decision itself is the pure function
of :mod:`policies`, and the outcome is reported three ways from one :class:`DecisionRecord`: a
JSON log line, an Event, and the policy's ``status``.

Failure handling follows one rule: *a cycle that cannot see clearly does not scale down*.
Invalid specs and conflicts stop the policy with a condition and one Event; missing metrics let
the policy hold (or scale up on the metrics it still has); API errors end the cycle and the
next one tries again. Nothing here raises to Kopf for an expected problem, so a bad policy never
becomes a crash loop and never delays the other policies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.actuators import ScaleActuator, ScaleObservation, TargetError
from controller.clients.credentials import read_credentials
from controller.clients.kube import KubeError
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.servers import render_preset
from controller.observability.decisions import DecisionRecord
from controller.reconcile.conditions import Condition
from controller.reconcile.cycle import NO_CONFLICT, CycleOutcome, Deps, PolicySnapshot, Reporter
from controller.scaling.forecast_loop import ForecastSession
from controller.scaling.predictive import PredictivePlan, plan_predictive
from controller.scaling.spec import MetricSpec, ScalingPolicySpec, SpecError, parse_scaling_policy
from policies import (
    MetricObservation,
    ReactiveInputs,
    ScalingDecision,
    ScalingState,
    decide_reactive,
)

logger = logging.getLogger(__name__)

KIND = "ScalingPolicy"


@dataclass(frozen=True)
class OtherWriters:
    """Who else claims the same workload, as found by the operator's indexes."""

    hpas: tuple[str, ...] = ()
    older_policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricReading:
    spec: MetricSpec
    query: str
    value: float | None
    error: MetricError | None


async def reconcile_scaling(
    policy: PolicySnapshot, others: OtherWriters, deps: Deps, now: float, forecasting: ForecastSession | None = None
) -> CycleOutcome:
    """One cycle; ``forecasting`` is the policy's forecasting loop, kept by its daemon across cycles
    (with ``spec.forecast`` set and none given, each cycle starts with an empty history)."""
    report = Reporter(policy, deps, now)
    try:
        spec = parse_scaling_policy(policy.spec)
    except SpecError as exc:
        return await report.not_ready(exc.reason, exc.message)

    if spec.mode == "Off":
        return await report.off()

    if others.hpas or others.older_policies:
        who = [f"HorizontalPodAutoscaler {h}" for h in others.hpas] + [
            f"ScalingPolicy {p}" for p in others.older_policies
        ]
        reason = "HPAConflict" if others.hpas else "PolicyConflict"
        message = f"{spec.target.describe()} is already scaled by {', '.join(who)}: one writer per workload"
        return await report.not_ready(reason, message, conflict=Condition("Conflict", "True", reason, message))

    actuator = ScaleActuator(deps.kube, policy.namespace, spec.target)
    try:
        observed = await actuator.observe()
        credentials = await read_credentials(deps.kube, policy.namespace, spec.prometheus)
    except (TargetError, SpecError) as exc:
        return await report.not_ready(exc.reason, exc.message)

    readings = await _read_metrics(deps.prometheus, policy.namespace, spec, credentials)
    rejected = [r for r in readings if r.error and r.error.rejected]
    if rejected:
        detail = "; ".join(f"{r.spec.name}: {r.error.message if r.error else ''}" for r in rejected)
        return await report.not_ready("QueryRejected", detail)

    state = ScalingState.from_dict((policy.status or {}).get("history"))
    inputs = ReactiveInputs(
        spec_replicas=observed.spec_replicas,
        ready_replicas=observed.ready_replicas,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metrics=tuple(
            MetricObservation(name=r.spec.name, value=r.value, target_type=r.spec.target_type, target=r.spec.target)
            for r in readings
        ),
        behavior=spec.behavior,
    )
    decision = decide_reactive(inputs, state, now)
    plan: PredictivePlan | None = None
    if spec.forecast is not None:
        plan = await plan_predictive(
            policy, spec, observed, decision, credentials, deps, forecasting or ForecastSession(), now
        )
        desired = plan.desired
    else:
        desired = _apply_fallback(decision, spec, observed, readings)

    applied = False
    apply_error: KubeError | None = None
    if spec.mode == "Auto" and desired != observed.spec_replicas:
        try:
            applied = await actuator.apply(desired, observed)
        except KubeError as exc:
            apply_error = exc
    # Rate limits count only changes that really happened: a recommendation or a failed write
    # must not use up the scale-up budget of the next cycles.
    decided = plan.state if plan is not None else decision.state
    new_state = (
        decided
        if applied
        else replace(decided, scale_up_events=state.scale_up_events, scale_down_events=state.scale_down_events)
    )
    record = _record(policy, spec, observed, readings, decision, desired, applied, now)
    if plan is not None:
        record = plan.annotate(record)
    recommended = plan.recommended if plan is not None else decision.recommended_replicas
    await _report_decision(
        report, record, recommended, readings, observed, new_state, apply_error, plan.status if plan else {}
    )
    return CycleOutcome(ready=True, decision=record, reason=record.reason, status=report.written)


async def _read_metrics(
    pool: PrometheusPool, namespace: str, spec: ScalingPolicySpec, credentials: Credentials
) -> list[MetricReading]:
    """Every metric's value, or why it is missing; a preset's value older than maxStaleness is stale."""

    async def read(metric: MetricSpec) -> MetricReading:
        if metric.query:
            query, freshness = metric.query, None
        else:
            assert metric.preset is not None  # guaranteed by the spec parser
            rendered = render_preset(
                metric.preset,
                namespace=namespace,
                kind=spec.target.kind,
                name=spec.target.name,
                model_name=metric.model_name,
                label_selector=metric.label_selector,
            )
            query, freshness = rendered.value, rendered.freshness
        try:
            value, age = await asyncio.gather(
                pool.query(spec.prometheus, credentials, query),
                pool.query(spec.prometheus, credentials, freshness) if freshness else _no_age(),
            )
        except MetricError as exc:
            return MetricReading(metric, query, None, exc)
        if age is not None and age > spec.prometheus.max_staleness_s:
            stale = MetricError(
                "Stale", f"newest sample is {age:.0f}s old (maxStaleness {spec.prometheus.max_staleness_s:.0f}s)"
            )
            return MetricReading(metric, query, None, stale)
        return MetricReading(metric, query, value, None)

    return list(await asyncio.gather(*(read(m) for m in spec.metrics)))


async def _no_age() -> None:
    return None


def _apply_fallback(
    decision: ScalingDecision, spec: ScalingPolicySpec, observed: ScaleObservation, readings: list[MetricReading]
) -> int:
    """With every metric gone and ``onMetricsUnavailable: Fallback``, go up to the fallback count.

    Never down: the fallback is a floor for an outage, not a target, so a service that was
    scaled past it for real load keeps its replicas while infercast is blind.
    """
    blind = all(r.value is None for r in readings)
    fallback = spec.fallback
    if not blind or fallback.on_metrics_unavailable != "Fallback" or fallback.replicas is None:
        return decision.desired_replicas
    floor = min(max(fallback.replicas, spec.min_replicas), spec.max_replicas)
    return max(decision.desired_replicas, observed.spec_replicas, floor)


def _action(from_: int, to: int) -> str:
    return "ScaleUp" if to > from_ else "ScaleDown" if to < from_ else "Hold"


def _record(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    readings: list[MetricReading],
    decision: ScalingDecision,
    desired: int,
    applied: bool,
    now: float,
) -> DecisionRecord:
    reasons = tuple(str(r) for r in decision.reasons)
    message = decision.message
    if desired != decision.desired_replicas:
        reasons = ("FallbackReplicas", *reasons)
        message = f"every metric is unavailable: fallback to {desired} replicas (never down); {message}"
    return policy.record(
        spec,
        now,
        action=_action(observed.spec_replicas, desired),
        from_=observed.spec_replicas,
        to=desired,
        applied=applied,
        reasons=reasons,
        message=message,
        inputs={
            "specReplicas": observed.spec_replicas,
            "readyReplicas": observed.ready_replicas,
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "name": r.spec.name,
                    "value": r.value,
                    "target": r.spec.target,
                    "type": r.spec.target_type,
                    **({"error": r.error.reason, "detail": r.error.message} if r.error else {}),
                }
                for r in readings
            ],
        },
        output={
            "desiredReplicas": desired,
            "recommendedReplicas": decision.recommended_replicas,
            "proposals": [
                {"metric": p.name, "usageRatio": p.usage_ratio, "replicas": p.replicas, "reason": str(p.reason)}
                for p in decision.proposals
            ],
        },
    )


async def _report_decision(
    report: Reporter,
    record: DecisionRecord,
    recommended: int,
    readings: list[MetricReading],
    observed: ScaleObservation,
    state: ScalingState,
    apply_error: KubeError | None,
    extra_status: Mapping[str, Any],
) -> None:
    report.emit(record)
    missing = [r for r in readings if r.error]
    if record.applied:
        await report.event(report.policy.ref, "Normal", record.action, f"{record.message} (decision {record.id})")
        await report.event(
            observed.target,
            "Normal",
            "InfercastRescale",
            f"New size: {record.to}; reason: {record.reason}; by ScalingPolicy {report.policy.name} "
            f"(decision {record.id})",
        )
    elif apply_error is not None:
        await report.event(
            report.policy.ref, "Warning", "FailedRescale", f"{record.from_} -> {record.to}: {apply_error}"
        )
    elif record.action != "Hold" or report.previous_decision.get("reason") != record.reason:
        # Recommendations and changes of the reason for holding; a steady hold is not news.
        verb = "Recommend" if record.action != "Hold" else "Hold"
        await report.event(
            report.policy.ref, "Warning" if missing else "Normal", f"{verb}{record.reason}", record.message
        )

    limited = recommended != record.to
    recommending = record.mode == "Recommend"
    conditions = [
        Condition(
            "Ready",
            "True",
            "Recommending" if recommending else "Scaling",
            "decisions are reported, never applied" if recommending else "the policy is active",
        ),
        NO_CONFLICT,
        Condition(
            "MetricsAvailable",
            "False" if missing else "True",
            missing[0].error.reason if missing and missing[0].error else "AllMetricsRead",
            "; ".join(f"{r.spec.name}: {r.error.message}" for r in missing if r.error)
            or f"{len(readings)} metric(s) read",
        ),
        Condition(
            "ScalingLimited",
            "True" if limited else "False",
            record.reasons[-1] if limited and record.reasons else "DesiredWithinRange",
            f"recommended {recommended}, decided {record.to}" if limited else "not limited",
        ),
    ]
    status: dict[str, Any] = {
        "currentReplicas": record.to if record.applied else observed.spec_replicas,
        "readyReplicas": observed.ready_replicas,
        "desiredReplicas": record.to,
        "lastDecision": record.to_status(),
        "history": state.to_dict(),
        "metrics": [
            {"name": r.spec.name, "value": r.value, "target": r.spec.target, "type": r.spec.target_type}
            for r in readings
        ],
        **extra_status,
    }
    if record.applied:
        status["lastScaleTime"] = record.time
    await report.patch_status(status, conditions)
