"""One reconcile cycle of a ScalingPolicy: observe -> decide -> act -> report. No Kopf here.

The Kopf handlers call :func:`reconcile_scaling` once per interval with a snapshot of the policy
and what the operator's indexes know about other writers. The cycle then

1. **observes**: the target through its ``scale`` subresource, the spec's metrics, and with
   ``spec.forecast`` the predictive signals (:mod:`controller.scaling.observe`: all the reads);
2. **decides**: one planner makes a :class:`~controller.scaling.plan.ScalingPlan` from what was
   read, :func:`~controller.scaling.plan.plan_reactive` or
   :func:`~controller.scaling.predictive.plan_predictive` (pure functions over :mod:`policies`);
3. **acts** in mode ``Auto`` when the count changes (:func:`~controller.reconcile.cycle.apply_in_auto`);
4. **reports** once, from one :class:`DecisionRecord` built from the plan: a JSON log line, an
   Event on changes, and the policy's ``status``.

Failure handling follows one rule: *a cycle that cannot see clearly does not scale down*.
Invalid specs and conflicts stop the policy with a condition and one Event; missing metrics let
the policy hold (or scale up on the metrics it still has); API errors end the cycle and the
next one tries again. Nothing here raises to Kopf for an expected problem, so a bad policy never
becomes a crash loop and never delays the other policies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from controller.actuators import ScaleActuator, ScaleObservation
from controller.errors import SpecError, TargetError
from controller.observability.decisions import DecisionRecord
from controller.reconcile.conditions import Condition
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, apply_in_auto
from controller.reconcile.report import Reporter, Wording
from controller.scaling.forecast_loop import ForecastSession
from controller.scaling.observe import MetricReading, observe_predictive, read_instant
from controller.scaling.plan import ScalingPlan, plan_reactive
from controller.scaling.predictive import plan_predictive
from controller.scaling.spec import ScalingPolicySpec, parse_scaling_policy
from policies import ScalingState
from policies.history import PendingScale, settle_history

KIND = "ScalingPolicy"
#: Decisions a cycle may make when its writes keep losing to concurrent changes of the count.
MAX_WRITE_ATTEMPTS = 3
CONFLICT = 409

WORDING = Wording(
    active="Scaling",
    written="InfercastRescale",
    on_target=lambda record, policy: (
        f"New size: {record.to}; reason: {record.reason}; by {KIND} {policy} (decision {record.id})"
    ),
    failed="FailedRescale",
)


@dataclass(frozen=True)
class OtherWriters:
    """Who else claims the same workload, as found by the operator's indexes."""

    hpas: tuple[str, ...] = ()
    older_policies: tuple[str, ...] = ()


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

    # Observe.
    actuator = ScaleActuator(deps.kube, policy.namespace, spec.target)
    try:
        observed = await actuator.observe()
        prometheus, credentials = await deps.prometheus_access.resolve(deps.kube, policy.namespace, spec.prometheus)
    except (TargetError, SpecError) as exc:
        return await report.not_ready(exc.reason, exc.message)
    spec = replace(spec, prometheus=prometheus)  # the URL and parameters the admin's rules resolved
    reads = await read_instant(deps.prometheus, policy.namespace, spec, credentials)
    readings = reads.metrics
    rejected = [r for r in readings if r.error and r.error.rejected]
    if rejected:
        detail = "; ".join(f"{r.spec.name}: {r.error.message if r.error else ''}" for r in rejected)
        return await report.not_ready("QueryRejected", detail)
    previous = policy.status or {}
    history = ScalingState.from_dict(previous.get("history"))
    recorded = _recorded_replicas(previous)
    session = forecasting or ForecastSession()
    signals = (
        await observe_predictive(policy, spec, observed, credentials, deps, session, now, reads)
        if spec.forecast is not None
        else None
    )

    # Decide and act. A write refused because the count changed since it was read (409) is
    # decided again on the new count, a bounded number of times: a manual scale is never
    # overwritten by a decision made without it.
    pending = PendingScale.from_dict(previous.get("pendingScale"))
    for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
        settled = settle_history(history, now=now, recorded=recorded, pending=pending, observed=observed.spec_replicas)
        state = settled.state
        plan = (
            plan_reactive(spec, observed, readings, state, now)
            if signals is None
            else plan_predictive(spec, observed, readings, signals, state, previous, session, now)
        )
        if spec.mode == "Auto" and plan.desired != observed.spec_replicas:
            # The intent goes on record before the write: if this process stops before recording the
            # outcome, the next cycle finds the move landed (or not) and counts it (settle_history).
            intent = PendingScale(observed.spec_replicas, plan.desired, now, plan.recommended)
            await report.patch_status(
                {
                    "currentReplicas": observed.spec_replicas,
                    "history": state.to_dict(),
                    "pendingScale": intent.to_dict(),
                },
                [],
            )
        write = partial(actuator.apply, plan.desired, observed)
        applied, apply_error = await apply_in_auto(spec.mode, plan.desired != observed.spec_replicas, write)
        if apply_error is None or apply_error.status != CONFLICT or attempt == MAX_WRITE_ATTEMPTS:
            break
        try:
            observed = await actuator.observe()
        except TargetError as exc:
            return await report.not_ready(exc.reason, exc.message)
        # The refused write did not land: what the last record says is what is recorded.
        history, recorded, pending = state, settled.recorded, None
    if settled.changed_outside:
        await report.event(policy.ref, "Normal", "ReplicasChangedOutside", _outside_message(spec, recorded, observed))
    # Rate limits count only changes that really happened: a recommendation or a failed write
    # must not use up the scale-up budget of the next cycles.
    new_state = (
        plan.state
        if applied
        else replace(plan.state, scale_up_events=state.scale_up_events, scale_down_events=state.scale_down_events)
    )

    # Report.
    record = _record(policy, spec, observed, readings, plan, applied, now)
    status: dict[str, Any] = {
        "currentReplicas": record.to if record.applied else observed.spec_replicas,
        "readyReplicas": observed.ready_replicas,
        "desiredReplicas": record.to,
        "history": new_state.to_dict(),
        "metrics": [
            {"name": r.spec.name, "value": r.value, "target": r.spec.target, "type": r.spec.target_type}
            for r in readings
        ],
        **plan.status,
        **({"lastScaleTime": record.time} if record.applied else {}),
        "pendingScale": None,  # the outcome is on record: the intent is done with
    }
    conditions = [_metrics_condition(readings), _limited_condition(plan.recommended, record)]
    return await report.decided(record, observed.target, apply_error, WORDING, conditions, status)


def _recorded_replicas(status: Mapping[str, Any]) -> int | None:
    """The count the persisted history was written with; ``None`` before the first one."""
    current = status.get("currentReplicas")
    if "history" not in status or isinstance(current, bool) or not isinstance(current, int):
        return None
    return current


def _outside_message(spec: ScalingPolicySpec, recorded: int | None, observed: ScaleObservation) -> str:
    return (
        f"{spec.target.describe()} went from {recorded} to {observed.spec_replicas} replicas, not by this policy:"
        " taken as the current count and held by the stabilization windows, not reverted"
    )


def _action(from_: int, to: int) -> str:
    return "ScaleUp" if to > from_ else "ScaleDown" if to < from_ else "Hold"


def _record(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    readings: Sequence[MetricReading],
    plan: ScalingPlan,
    applied: bool,
    now: float,
) -> DecisionRecord:
    return policy.record(
        spec,
        now,
        action=_action(observed.spec_replicas, plan.desired),
        from_=observed.spec_replicas,
        to=plan.desired,
        applied=applied,
        reasons=plan.reasons,
        message=plan.message,
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
            **({"forecast": plan.forecast} if plan.forecast is not None else {}),
        },
        output={
            "desiredReplicas": plan.desired,
            # What the metrics (or the predictive paths) asked for before the behavior rules and bounds.
            "recommendedReplicas": plan.recommended,
            "proposals": plan.proposals,
            **({"path": plan.path} if plan.path is not None else {}),
        },
    )


def _metrics_condition(readings: Sequence[MetricReading]) -> Condition:
    missing = [r for r in readings if r.error]
    if not missing:
        return Condition("MetricsAvailable", "True", "AllMetricsRead", f"{len(readings)} metric(s) read")
    return Condition(
        "MetricsAvailable",
        "False",
        missing[0].error.reason if missing[0].error else "NoData",
        "; ".join(f"{r.spec.name}: {r.error.message}" for r in missing if r.error),
    )


def _limited_condition(recommended: int, record: DecisionRecord) -> Condition:
    if recommended == record.to:
        return Condition("ScalingLimited", "False", "DesiredWithinRange", "not limited")
    return Condition(
        "ScalingLimited",
        "True",
        record.reasons[-1] if record.reasons else "DesiredWithinRange",
        f"recommended {recommended}, decided {record.to}",
    )
