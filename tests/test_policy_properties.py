"""Properties of the reactive policy that must hold for every input, checked with hypothesis.

* Bounds: with a target not scaled to zero, the decision is always within
  ``[min_replicas, max_replicas]``; a target at zero stays at zero. (A count already outside the
  bounds goes straight to the nearest bound, ignoring rate limits, as the HPA does; so there is
  no exception for "rate limits forbid".)
* The behavior rules only ever hold back: the decision lies between the current count and the
  recommendation clamped to the bounds.
* Missing data: while any metric is missing or stale, a count within the bounds never goes down.
* Rate limits: over any sequence of decisions that the controller applies, each move stays
  within the documented bound of its direction's policy, computed from the counts actually
  observed in the policy's period (independently of the policy's own state).
* State: ``from_dict`` inverts ``to_dict`` and never raises; a new state only keeps what a window
  or a period can still see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    Behavior,
    MetricObservation,
    ReactiveInputs,
    ScalingPolicyRule,
    ScalingRules,
    ScalingState,
    SelectPolicy,
    decide_reactive,
)
from tests.harness.properties import examples

NOW = 1_700_000_000.0

policy_rules = st.builds(
    ScalingPolicyRule,
    type=st.sampled_from(["Pods", "Percent"]),
    value=st.integers(1, 200),
    period_seconds=st.integers(1, 120),
)


@st.composite
def scaling_rules(draw: st.DrawFn) -> ScalingRules:
    select: SelectPolicy = draw(st.sampled_from(["Max", "Min", "Disabled"]))
    policies = draw(st.lists(policy_rules, min_size=0 if select == "Disabled" else 1, max_size=3))
    return ScalingRules(draw(st.integers(0, 600)), select, tuple(policies))


behaviors = st.builds(Behavior, scale_up=scaling_rules(), scale_down=scaling_rules())

metric_values = st.one_of(st.none(), st.floats(0, 1e4), st.just(math.nan))


@st.composite
def metrics(draw: st.DrawFn) -> tuple[MetricObservation, ...]:
    count = draw(st.integers(0, 3))
    return tuple(
        MetricObservation(
            name=f"m{i}",
            value=draw(metric_values),
            target_type=draw(st.sampled_from(["AverageValue", "Value"])),
            target=draw(st.floats(0.01, 100)),
            stale=draw(st.booleans()),
        )
        for i in range(count)
    )


@st.composite
def reactive_inputs(draw: st.DrawFn, in_bounds: bool = False) -> ReactiveInputs:
    lo = draw(st.integers(1, 20))
    hi = draw(st.integers(lo, 50))
    spec = draw(st.integers(lo, hi) if in_bounds else st.integers(0, 60))
    return ReactiveInputs(
        spec_replicas=spec,
        ready_replicas=draw(st.integers(0, spec + 3)),
        min_replicas=lo,
        max_replicas=hi,
        metrics=draw(metrics()),
        behavior=draw(behaviors),
        tolerance=draw(st.sampled_from([0.0, 0.05, 0.1, 0.3])),
    )


def timed(replicas: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[tuple[float, int], ...]]:
    entries = st.lists(st.tuples(st.floats(0, 1000), replicas), max_size=6)
    return entries.map(lambda items: tuple(sorted((NOW - age, r) for age, r in items)))


states = st.builds(
    ScalingState,
    recommendations=timed(st.integers(0, 60)),
    scale_up_events=timed(st.integers(1, 30)),
    scale_down_events=timed(st.integers(1, 30)),
)


@given(reactive_inputs(), states)
def test_decision_is_within_bounds(inputs: ReactiveInputs, state: ScalingState) -> None:
    decision = decide_reactive(inputs, state, NOW)

    if inputs.spec_replicas == 0:
        assert decision.desired_replicas == 0
    else:
        assert inputs.min_replicas <= decision.desired_replicas <= inputs.max_replicas


@given(reactive_inputs(in_bounds=True), states)
def test_behavior_only_holds_back(inputs: ReactiveInputs, state: ScalingState) -> None:
    decision = decide_reactive(inputs, state, NOW)

    clamped = min(max(decision.recommended_replicas, inputs.min_replicas), inputs.max_replicas)
    low, high = sorted((inputs.spec_replicas, clamped))
    assert low <= decision.desired_replicas <= high


@given(reactive_inputs(in_bounds=True), states)
def test_never_scales_down_while_a_metric_is_missing(inputs: ReactiveInputs, state: ScalingState) -> None:
    decision = decide_reactive(inputs, state, NOW)

    if any(m.missing for m in inputs.metrics):
        assert decision.desired_replicas >= inputs.spec_replicas
        assert decision.action != "ScaleDown"


@given(reactive_inputs(), states)
def test_action_matches_the_count(inputs: ReactiveInputs, state: ScalingState) -> None:
    decision = decide_reactive(inputs, state, NOW)

    change = decision.desired_replicas - inputs.spec_replicas
    expected = "ScaleUp" if change > 0 else "ScaleDown" if change < 0 else "Hold"
    assert decision.action == expected
    assert decision.reasons


@given(reactive_inputs(), states)
def test_new_state_keeps_only_what_can_still_be_seen(inputs: ReactiveInputs, state: ScalingState) -> None:
    new = decide_reactive(inputs, state, NOW).state

    behavior = inputs.behavior
    assert all(t > NOW - behavior.longest_window_seconds for t, _ in new.recommendations)
    assert all(t > NOW - behavior.longest_period_seconds for t, _ in new.scale_up_events + new.scale_down_events)


# --- rate limits over sequences ---------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    time: float
    before: int
    after: int


def start_of_period(moves: list[Move], now: float, period: int, current: int) -> int:
    """The count when the period ending at ``now`` began, from the moves observed within it."""
    return current - sum(m.after - m.before for m in moves if m.time > now - period)


def highest_allowed(rule: ScalingPolicyRule, start: int) -> int:
    if rule.type == "Pods":
        return start + rule.value
    return math.ceil(Fraction(start * (100 + rule.value), 100))


def lowest_allowed(rule: ScalingPolicyRule, start: int) -> int:
    if rule.type == "Pods":
        return start - rule.value
    return math.floor(Fraction(start * (100 - rule.value), 100))


single_rule = st.builds(
    ScalingPolicyRule,
    type=st.sampled_from(["Pods", "Percent"]),
    value=st.integers(1, 100),
    period_seconds=st.integers(1, 120),
)


@settings(max_examples=examples(150))
@given(
    up=single_rule,
    down=single_rule,
    windows=st.tuples(st.integers(0, 120), st.integers(0, 120)),
    start=st.integers(1, 40),
    steps=st.lists(st.tuples(st.floats(0.5, 40), st.integers(0, 400), st.booleans()), min_size=1, max_size=30),
)
def test_rate_limits_hold_over_any_sequence(
    up: ScalingPolicyRule,
    down: ScalingPolicyRule,
    windows: tuple[int, int],
    start: int,
    steps: list[tuple[float, int, bool]],
) -> None:
    behavior = Behavior(
        scale_up=ScalingRules(windows[0], "Max", (up,)),
        scale_down=ScalingRules(windows[1], "Max", (down,)),
    )
    spec, state, now = start, ScalingState(), NOW
    moves: list[Move] = []
    for dt, total, metric_missing in steps:
        now += dt
        metric = MetricObservation("waiting", None if metric_missing else float(total), "AverageValue", 10.0)
        inputs = ReactiveInputs(spec, spec, min_replicas=1, max_replicas=40, metrics=(metric,), behavior=behavior)
        decision = decide_reactive(inputs, state, now)
        after = decision.desired_replicas
        if after > spec:
            assert after <= highest_allowed(up, start_of_period(moves, now, up.period_seconds, spec))
        elif after < spec:
            assert after >= lowest_allowed(down, start_of_period(moves, now, down.period_seconds, spec))
        if after != spec:
            moves.append(Move(now, spec, after))
        spec, state = after, decision.state


# --- the persisted state ----------------------------------------------------------------------


@given(states)
def test_state_round_trips(state: ScalingState) -> None:
    assert ScalingState.from_dict(state.to_dict()) == state


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=8,
)
item_like = st.dictionaries(st.sampled_from(["time", "replicas", "other"]), json_values, max_size=3)
state_like = st.dictionaries(
    st.sampled_from(["recommendations", "scaleUpEvents", "scaleDownEvents", "other"]),
    st.one_of(json_values, st.lists(item_like, max_size=4)),
    max_size=4,
)


@settings(max_examples=examples(60))
@given(st.one_of(json_values, state_like))
def test_from_dict_never_raises_and_yields_a_usable_state(data: Any) -> None:
    state = ScalingState.from_dict(data)

    assert ScalingState.from_dict(state.to_dict()) == state
    for entries in (state.recommendations, state.scale_up_events, state.scale_down_events):
        assert all(math.isfinite(t) and isinstance(r, int) and r >= 0 for t, r in entries)
        assert list(entries) == sorted(entries, key=lambda entry: entry[0])
