"""The reactive policy: the Kubernetes HPA v2 algorithm on the workload's metric totals.

One decision runs the HPA's steps in the HPA's order:

1. a target scaled to zero by someone else is left alone; a count outside ``[min, max]`` goes
   straight to the nearest bound (no behavior rules, as the HPA does);
2. each metric proposes a count from its usage ratio (:func:`propose`), with the tolerance
   and the not-yet-ready rule; the highest proposal wins;
3. missing data gates the result: nothing readable means hold, and a partial picture may
   scale up but never down;
4. the behavior rules (:mod:`policies.behavior`) stabilize and rate-limit the recommendation,
   and the bounds clamp it.

docs/reactive-policy.md lists where this deliberately differs from the HPA.
"""

from __future__ import annotations

import math

from policies.behavior import Direction, rate_limit, remember, stabilize, with_initial_recommendation
from policies.reasons import Reason
from policies.scaling_types import (
    Action,
    MetricObservation,
    MetricProposal,
    ReactiveInputs,
    ScalingDecision,
    ScalingState,
)

# Slack for float noise, so that a ratio of 1.1 counts as within a 0.1 tolerance and
# 12.000000000000002 replicas as 12, not 13, as the decimal arithmetic of the docs says.
_EPSILON = 1e-9
# The HPA counts replicas in int32; anything beyond is clamped to max_replicas anyway.
_MAX_PROPOSAL = 2**31 - 1


def propose(metric: MetricObservation, spec_replicas: int, ready_replicas: int, tolerance: float) -> MetricProposal:
    """The count ``metric`` asks for, by the HPA's usage-ratio rules.

    The ratio is taken on the ready replicas, which produced the total. When it asks for more
    while replicas are still starting, those are counted as idle (the HPA's not-yet-ready rule):
    if the load then fits the current count within the tolerance, they already cover it and the
    count is kept. With no ready replica there is nothing to measure a scale-down on.
    """
    if metric.missing or metric.value is None:
        return MetricProposal(metric.name, metric.value, None, None, Reason.MetricMissing)
    value = metric.value
    ratio: float | None
    if metric.target_type == "AverageValue":
        needed = value / metric.target  # replicas that would carry the total at the target
        ratio = needed / ready_replicas if ready_replicas else None
    else:
        ratio = value / metric.target
        needed = ratio * ready_replicas

    def proposal(replicas: int, reason: Reason) -> MetricProposal:
        return MetricProposal(metric.name, value, ratio, replicas, reason)

    if ratio is not None and abs(1.0 - ratio) <= tolerance + _EPSILON:
        return proposal(spec_replicas, Reason.WithinTolerance)
    asks_for_more = needed > 0 if ratio is None else ratio > 1.0
    if asks_for_more and ready_replicas < spec_replicas:
        if needed / spec_replicas <= 1.0 + tolerance + _EPSILON:
            return proposal(spec_replicas, Reason.PendingReplicasCover)
        return proposal(_round_up(needed), Reason.ScaleUp)
    if ready_replicas == 0:
        return proposal(spec_replicas, Reason.NoReadyReplicas)
    replicas = _round_up(needed)
    if asks_for_more and replicas > spec_replicas:
        return proposal(replicas, Reason.ScaleUp)
    if not asks_for_more and replicas < spec_replicas:
        return proposal(replicas, Reason.ScaleDown)
    # Rounding landed on the current count, or replicas still terminating make the proposal
    # point against the ratio's direction: the HPA keeps the count in both cases.
    return proposal(spec_replicas, Reason.NoChange)


def _round_up(replicas: float) -> int:
    if replicas >= _MAX_PROPOSAL:
        return _MAX_PROPOSAL
    return max(0, math.ceil(replicas - _EPSILON))


def decide_reactive(inputs: ReactiveInputs, state: ScalingState, now: float) -> ScalingDecision:
    """Decide the replica count for ``inputs`` at ``now``, given the remembered ``state``.

    Returns the decision with its reasons, a one-sentence message and the new state to persist
    (which the caller must store even when the decision is to hold).
    """
    spec = inputs.spec_replicas
    history = with_initial_recommendation(state, spec, now)
    if spec == 0:
        return _decide(
            inputs,
            history,
            now,
            desired=0,
            reasons=[Reason.ScalingDisabled],
            parts=["scaling is disabled since the target was scaled to zero"],
            proposals=(),
            recommended=0,
        )

    proposals = tuple(propose(m, spec, inputs.ready_replicas, inputs.tolerance) for m in inputs.metrics)
    readable = {i: p.replicas for i, p in enumerate(proposals) if p.replicas is not None}
    recommended = max(readable.values(), default=spec)  # the highest proposal wins

    if spec > inputs.max_replicas or spec < inputs.min_replicas:
        bound = min(max(spec, inputs.min_replicas), inputs.max_replicas)
        reason = Reason.ClampedToMax if spec > inputs.max_replicas else Reason.ClampedToMin
        which = "maxReplicas" if reason is Reason.ClampedToMax else "minReplicas"
        return _decide(
            inputs,
            history,
            now,
            desired=bound,
            reasons=[reason],
            parts=[f"the current count is outside the bounds: moved to {which} {bound}"],
            proposals=proposals,
            recommended=recommended,
        )
    if not readable:
        what = "no metric configured" if not proposals else "every metric is missing or stale"
        return _decide(
            inputs,
            history,
            now,
            desired=spec,
            reasons=[Reason.AllMetricsMissing],
            parts=[what],
            proposals=proposals,
            recommended=recommended,
        )

    # On a tie, the first metric explains the decision.
    decisive_index = next(i for i, replicas in readable.items() if replicas == recommended)
    decisive = proposals[decisive_index]
    parts = [_explain(inputs.metrics[decisive_index], decisive, inputs)]
    reasons = [decisive.reason]
    missing = [p.name for p in proposals if p.replicas is None]
    if missing:
        reasons.append(Reason.MetricMissing)
        if recommended < spec:
            parts.append(f"no scale-down while {', '.join(missing)} is missing or stale")
            return _decide(
                inputs,
                history,
                now,
                desired=spec,
                reasons=[Reason.MetricMissing, decisive.reason],
                parts=parts,
                proposals=proposals,
                recommended=recommended,
            )
        parts.append(f"{', '.join(missing)} missing or stale")

    behavior = inputs.behavior
    desired = stabilize(history.recommendations, recommended, spec, behavior, now)
    if desired != recommended:
        scaling_up = recommended > spec
        window = (behavior.scale_up if scaling_up else behavior.scale_down).stabilization_window_seconds
        reasons.append(Reason.ScaleUpStabilized if scaling_up else Reason.ScaleDownStabilized)
        parts.append(f"stabilized at {desired} by the recommendations of the last {window}s")

    if desired != spec:
        limited = _limit_rate(desired, inputs, history, now)
        if limited is not None:
            desired, reason, why = limited
            reasons.append(reason)
            parts.append(why)

    return _decide(
        inputs,
        history,
        now,
        desired=desired,
        reasons=reasons,
        parts=parts,
        proposals=proposals,
        recommended=recommended,
        record=True,
    )


# Per direction: the rules' name, the bound and the codes for what stopped the move.
_LIMIT_NAMES: dict[Direction, tuple[str, str, Reason, Reason, Reason]] = {
    "up": ("scaleUp", "maxReplicas", Reason.ClampedToMax, Reason.ScaleUpDisabled, Reason.ScaleUpRateLimited),
    "down": ("scaleDown", "minReplicas", Reason.ClampedToMin, Reason.ScaleDownDisabled, Reason.ScaleDownRateLimited),
}


def _limit_rate(
    desired: int, inputs: ReactiveInputs, history: ScalingState, now: float
) -> tuple[int, Reason, str] | None:
    """Cap the move from the current count to ``desired`` by its direction's policies and bound.

    Returns the capped count, the code and the words for what capped it, or ``None`` when the
    move is allowed as is.
    """
    spec = inputs.spec_replicas
    direction: Direction = "up" if desired > spec else "down"
    rules, bound = (
        (inputs.behavior.scale_up, inputs.max_replicas)
        if direction == "up"
        else (inputs.behavior.scale_down, inputs.min_replicas)
    )
    limit = rate_limit(direction, spec, history, rules, now)
    sign = 1 if direction == "up" else -1  # compare both directions as if moving up
    allowed = sign * min(sign * limit.replicas, sign * bound)
    if sign * desired <= sign * allowed:
        return None
    rules_name, bound_name, clamped, disabled, rate_limited = _LIMIT_NAMES[direction]
    # As the HPA does, name the bound when it is at least as tight as the policies.
    if sign * limit.replicas >= sign * bound:
        return allowed, clamped, f"clamped to {bound_name} {allowed}"
    if limit.rule is None:
        return allowed, disabled, f"{rules_name} is disabled"
    return allowed, rate_limited, f"limited by {rules_name} policy {limit.rule}"


def _explain(metric: MetricObservation, proposal: MetricProposal, inputs: ReactiveInputs) -> str:
    if proposal.usage_ratio is None:
        return f"{metric.name}={metric.value:g} with no ready replica (target {metric.target:g}/replica)"
    per = f"/replica over {inputs.ready_replicas} ready" if metric.target_type == "AverageValue" else ""
    pending = inputs.spec_replicas - inputs.ready_replicas
    text = f"{metric.name}={metric.value:g} is {proposal.usage_ratio:.2f}x the target {metric.target:g}{per}"
    if proposal.reason is Reason.PendingReplicasCover:
        text += f", but the {pending} starting replica(s) cover it"
    elif proposal.reason is Reason.WithinTolerance:
        text += f" (within the tolerance {inputs.tolerance:g})"
    return text


def _decide(
    inputs: ReactiveInputs,
    history: ScalingState,
    now: float,
    *,
    desired: int,
    reasons: list[Reason],
    parts: list[str],
    proposals: tuple[MetricProposal, ...],
    recommended: int,
    record: bool = False,
) -> ScalingDecision:
    """Assemble the decision; ``record`` says whether the recommendation enters the history.

    Only a recommendation that went through the behavior rules is recorded, as in the HPA: a
    hold for missing data or an out-of-bounds correction says nothing about the load.
    """
    spec = inputs.spec_replicas
    action: Action = "ScaleUp" if desired > spec else "ScaleDown" if desired < spec else "Hold"
    new_state = remember(
        history,
        inputs.behavior,
        now,
        current=spec,
        desired=desired,
        recommended=recommended if record else None,
    )
    return ScalingDecision(
        desired_replicas=desired,
        action=action,
        reasons=tuple(reasons),
        message=f"{spec} -> {desired}: {'; '.join(parts)}",
        proposals=proposals,
        recommended_replicas=recommended,
        state=new_state,
    )
