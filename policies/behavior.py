"""The HPA's ``behavior`` rules as pure functions of the remembered history.

Three steps, in the HPA's order, after the metrics produced a recommendation:

1. :func:`stabilize`: the result may rise no higher than the *lowest* recommendation of the
   scale-up window and fall no lower than the *highest* of the scale-down window; both windows
   include the new recommendation, so a window of 0 s means "no stabilization".
2. :func:`rate_limit`: each policy bounds the count relative to the count at the start of its
   period, reconstructed from the scale events of that period; ``selectPolicy`` picks the bound
   allowing the biggest (``Max``) or smallest (``Min``) change, or freezes the direction.
3. :func:`remember`: record the recommendation and the scale event, and drop what no window or
   period can still see, so the persisted state stays small.

Times are compared as the HPA does: an entry counts in a window of ``w`` seconds when it is
strictly newer than ``now - w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policies.scaling_types import Behavior, ScalingPolicyRule, ScalingRules, ScalingState, Timed

Direction = Literal["up", "down"]


def with_initial_recommendation(state: ScalingState, current: int, now: float) -> ScalingState:
    """Seed an empty history with the current count, as the HPA does on its first look at a target.

    Without it a fresh (or reset) history would let the very first low reading scale down at
    once; with it, the scale-down window has to pass first.
    """
    if state.recommendations:
        return state
    return ScalingState(((now, current),), state.scale_up_events, state.scale_down_events)


def stabilize(recommendations: Timed, recommended: int, current: int, behavior: Behavior, now: float) -> int:
    """Bring ``current`` towards ``recommended`` only as far as every recent recommendation agrees."""
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    highest_allowed = min([r for t, r in recommendations if t > up_cutoff] + [recommended])
    lowest_allowed = max([r for t, r in recommendations if t > down_cutoff] + [recommended])
    return min(max(current, highest_allowed), lowest_allowed)


@dataclass(frozen=True)
class RateLimit:
    """The furthest count the policies of one direction allow right now.

    ``replicas`` never lies on the wrong side of the current count: a period whose budget is
    used up allows no move, it does not push back. ``rule`` is the policy that set the bound,
    ``None`` when the direction is disabled.
    """

    replicas: int
    rule: ScalingPolicyRule | None


def replicas_changed_within(events: Timed, period_seconds: int, now: float) -> int:
    """Replicas added (or removed) by the events of the last ``period_seconds``."""
    cutoff = now - period_seconds
    return sum(replicas for time, replicas in events if time > cutoff)


def rate_limit(direction: Direction, current: int, state: ScalingState, rules: ScalingRules, now: float) -> RateLimit:
    """The highest (``"up"``) or lowest (``"down"``) count the rules of ``direction`` allow."""
    if rules.select_policy == "Disabled":
        return RateLimit(current, None)
    bounds = []
    for rule in rules.policies:
        # The bound is relative to the count when the period started: undo every move made
        # since, in both directions.
        period_start = (
            current
            - replicas_changed_within(state.scale_up_events, rule.period_seconds, now)
            + replicas_changed_within(state.scale_down_events, rule.period_seconds, now)
        )
        bounds.append(RateLimit(_policy_bound(direction, rule, period_start), rule))
    # "Max" is the policy allowing the biggest change: the highest bound up, the lowest down.
    highest = (direction == "up") == (rules.select_policy == "Max")
    chosen = max(bounds, key=_replicas) if highest else min(bounds, key=_replicas)
    if direction == "up":
        return RateLimit(max(chosen.replicas, current), chosen.rule)
    return RateLimit(min(chosen.replicas, current), chosen.rule)


def _replicas(limit: RateLimit) -> int:
    return limit.replicas


def _policy_bound(direction: Direction, rule: ScalingPolicyRule, period_start: int) -> int:
    # Integer arithmetic: the HPA's float version lets 10 * 1.1 round up to 12.
    if rule.type == "Pods":
        return period_start + rule.value if direction == "up" else period_start - rule.value
    if direction == "up":
        # Rounded up, or a small count would never grow (1 * 1.1 must allow 2).
        return -(-period_start * (100 + rule.value) // 100)
    # Rounded down, i.e. the replicas removed rounded up: the docs' "7.2 pods is rounded up to 8".
    return period_start * (100 - rule.value) // 100


def remember(
    state: ScalingState,
    behavior: Behavior,
    now: float,
    *,
    current: int,
    desired: int,
    recommended: int | None,
) -> ScalingState:
    """Record this decision's recommendation (if any) and scale event (if any), then prune."""
    recommendations = state.recommendations
    if recommended is not None:
        recommendations += ((now, recommended),)
    up_events, down_events = state.scale_up_events, state.scale_down_events
    if desired > current:
        up_events += ((now, desired - current),)
    elif desired < current:
        down_events += ((now, current - desired),)
    # Entries at or before these cutoffs are outside every window / period from now on.
    recommendation_cutoff = now - behavior.longest_window_seconds
    event_cutoff = now - behavior.longest_period_seconds
    return ScalingState(
        tuple(entry for entry in recommendations if entry[0] > recommendation_cutoff),
        tuple(entry for entry in up_events if entry[0] > event_cutoff),
        tuple(entry for entry in down_events if entry[0] > event_cutoff),
    )
