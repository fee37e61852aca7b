"""HPA ``behavior``: stabilization windows, rate-limit policies, selectPolicy, and the state.

The examples are the ones of the Kubernetes docs ("Horizontal Pod Autoscaling", section
"Configurable scaling behavior"), replayed decision by decision; the expected counts are worked
out by hand from the rules the docs state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from policies import (
    Behavior,
    MetricObservation,
    ReactiveInputs,
    Reason,
    ScalingPolicyRule,
    ScalingRules,
    ScalingState,
    decide_reactive,
)
from policies.behavior import Direction, rate_limit, stabilize
from policies.scaling_types import Timed

NOW = 1_700_000_000.0
UP_DEFAULT = ScalingRules.default_scale_up()
DOWN_DEFAULT = ScalingRules.default_scale_down()


def rules(*policies: ScalingPolicyRule, select: str = "Max", window: int = 0) -> ScalingRules:
    return ScalingRules(window, select, policies)  # type: ignore[arg-type]


def pods(value: int, period: int) -> ScalingPolicyRule:
    return ScalingPolicyRule("Pods", value, period)


def percent(value: int, period: int) -> ScalingPolicyRule:
    return ScalingPolicyRule("Percent", value, period)


def asking_for(replicas: int, spec: int, behavior: Behavior, lo: int = 1, hi: int = 1000) -> ReactiveInputs:
    """Inputs whose single metric asks for exactly ``replicas`` (a total of ``replicas`` x target)."""
    return ReactiveInputs(
        spec_replicas=spec,
        ready_replicas=spec,
        min_replicas=lo,
        max_replicas=hi,
        metrics=(MetricObservation("waiting", float(replicas), "AverageValue", 1.0),),
        behavior=behavior,
        tolerance=0.0,
    )


def replay(behavior: Behavior, start: int, wanted: int, times: list[float]) -> list[int]:
    """Counts after each decision at ``times``, the controller applying every decision."""
    spec, state, counts = start, ScalingState(), []
    for t in times:
        decision = decide_reactive(asking_for(wanted, spec, behavior), state, t)
        spec, state = decision.desired_replicas, decision.state
        counts.append(spec)
    return counts


# --- defaults --------------------------------------------------------------------------------


def test_documented_defaults() -> None:
    behavior = Behavior()

    assert behavior.scale_up == ScalingRules(0, "Max", (percent(100, 15), pods(4, 15)))
    assert behavior.scale_down == ScalingRules(300, "Max", (percent(100, 15),))


# --- rate limits, one decision at a time -------------------------------------------------------

RATE_CASES = [
    # id, direction, current, rules, up events, down events, expected bound, expected rule
    # Default scale-up: max(4 pods, 100 %) per 15 s.
    ("default-up-small-count-pods-win", "up", 1, UP_DEFAULT, (), (), 5, pods(4, 15)),
    ("default-up-large-count-percent-wins", "up", 10, UP_DEFAULT, (), (), 20, percent(100, 15)),
    # 4 already added 10 s ago: the period started at 6, which allows max(6 + 4, 12) = 12.
    ("default-up-budget-partly-used", "up", 10, UP_DEFAULT, ((NOW - 10, 4),), (), 12, percent(100, 15)),
    # An event exactly one period old no longer counts (strictly newer than now - period).
    ("event-at-period-edge-expired", "up", 10, UP_DEFAULT, ((NOW - 15, 4),), (), 20, percent(100, 15)),
    # Period started at 1 with 9 added since: 1 -> max(5, 2) = 5 < 10, and the bound never
    # pushes back below the current count.
    ("budget-exhausted-stays", "up", 10, UP_DEFAULT, ((NOW - 5, 9),), (), 10, pods(4, 15)),
    # Percent rounds up so that small counts can grow: 1 x 1.1 -> 2; exact for 10 x 1.1 = 11.
    ("percent-up-rounds-up", "up", 1, rules(percent(10, 60)), (), (), 2, percent(10, 60)),
    ("percent-up-exact", "up", 10, rules(percent(10, 60)), (), (), 11, percent(10, 60)),
    # A scale-down inside the period counts too: the period started at 10, not at the dip to
    # 6, so 4 pods per period allow 14.
    ("down-event-counts-for-up", "up", 6, rules(pods(4, 15)), (), ((NOW - 5, 4),), 14, pods(4, 15)),
    # Default scale-down: 100 % per 15 s, i.e. down to zero (min_replicas clamps later).
    ("default-down-to-zero", "down", 7, DOWN_DEFAULT, (), (), 0, percent(100, 15)),
    # Percent down rounds the count down (the pods removed up): docs' 72 -> 72 - 8 = 64.
    ("percent-down-docs-72", "down", 72, rules(percent(10, 60)), (), (), 64, percent(10, 60)),
    # Max picks the bigger change: with 80 replicas 10 % (8) beats 4 pods ...
    ("docs-max-80", "down", 80, rules(pods(4, 60), percent(10, 60)), (), (), 72, percent(10, 60)),
    # ... and with 30, 4 pods beat 10 % (3).
    ("docs-max-30", "down", 30, rules(pods(4, 60), percent(10, 60)), (), (), 26, pods(4, 60)),
    # Docs: "no more than 5 Pods removed per minute": Percent 10 + Pods 5, selectPolicy Min.
    ("docs-min-80", "down", 80, rules(percent(10, 60), pods(5, 60), select="Min"), (), (), 75, pods(5, 60)),
    ("docs-min-30", "down", 30, rules(percent(10, 60), pods(5, 60), select="Min"), (), (), 27, percent(10, 60)),
    # Min on the way up picks the smaller increase.
    ("min-up", "up", 10, rules(percent(100, 15), pods(4, 15), select="Min"), (), (), 14, pods(4, 15)),
    # Disabled freezes the direction.
    ("disabled-down", "down", 10, rules(select="Disabled"), (), (), 10, None),
    ("disabled-up", "up", 10, rules(select="Disabled"), (), (), 10, None),
]


@pytest.mark.parametrize(
    ("direction", "current", "scaling_rules", "up_events", "down_events", "expected", "rule"),
    [case[1:] for case in RATE_CASES],
    ids=[case[0] for case in RATE_CASES],
)
def test_rate_limit(
    direction: Direction,
    current: int,
    scaling_rules: ScalingRules,
    up_events: Timed,
    down_events: Timed,
    expected: int,
    rule: ScalingPolicyRule | None,
) -> None:
    state = ScalingState(scale_up_events=up_events, scale_down_events=down_events)

    limit = rate_limit(direction, current, state, scaling_rules, NOW)

    assert (limit.replicas, limit.rule) == (expected, rule)


# --- the docs' scale-down example, replayed --------------------------------------------------


def test_docs_scale_down_80_to_10_at_most_max_of_4_pods_or_10_percent_per_minute() -> None:
    # "if there are 80 replicas and the target has to be scaled down to 10 replicas then during
    # the first step 8 replicas will be reduced. In the next iteration when the number of
    # replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8. [...] When the
    # number of replicas falls below 40 the first policy (Pods) is applied and 4 replicas will
    # be reduced at a time." One decision a minute; no stabilization window, to see the
    # policies alone.
    behavior = Behavior(scale_down=rules(pods(4, 60), percent(10, 60)))

    counts = replay(behavior, start=80, wanted=10, times=[NOW + 60 * i for i in range(15)])

    assert counts == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10, 10]


def test_docs_scale_down_waits_for_the_period() -> None:
    # Within the minute after 80 -> 72 the budget is spent: no second step until it has passed.
    behavior = Behavior(scale_down=rules(pods(4, 60), percent(10, 60)))

    counts = replay(behavior, start=80, wanted=10, times=[NOW, NOW + 15, NOW + 30, NOW + 59.9, NOW + 60])

    assert counts == [72, 72, 72, 72, 64]


def test_rate_limited_hold_is_reported() -> None:
    behavior = Behavior(scale_down=rules(pods(4, 60), percent(10, 60)))
    first = decide_reactive(asking_for(10, 80, behavior), ScalingState(), NOW)

    second = decide_reactive(asking_for(10, 72, behavior), first.state, NOW + 15)

    assert (second.action, second.reasons) == ("Hold", (Reason.ScaleDown, Reason.ScaleDownRateLimited))
    assert "limited by scaleDown policy Percent 10%/60s" in second.message


def test_docs_default_scale_up_doubles_or_adds_four_every_15_seconds() -> None:
    # "4 pods or a 100% of the currently running replicas may at most be added every 15
    # seconds": 1 -> 5 -> 10 -> 20 -> 40 -> 50.
    counts = replay(Behavior(), start=1, wanted=50, times=[NOW + 15 * i for i in range(6)])

    assert counts == [5, 10, 20, 40, 50, 50]


def test_docs_disable_scale_down() -> None:
    behavior = Behavior(scale_down=rules(select="Disabled"))

    decision = decide_reactive(asking_for(1, 10, behavior), ScalingState(), NOW)

    assert (decision.desired_replicas, decision.action) == (10, "Hold")
    assert decision.reasons == (Reason.ScaleDown, Reason.ScaleDownDisabled)


def test_disabled_scale_up_still_scales_down() -> None:
    behavior = Behavior(scale_up=rules(select="Disabled"), scale_down=rules(percent(100, 15)))

    up = decide_reactive(asking_for(20, 10, behavior), ScalingState(), NOW)
    down = decide_reactive(asking_for(3, 10, behavior), ScalingState(), NOW)

    assert (up.desired_replicas, up.reasons) == (10, (Reason.ScaleUp, Reason.ScaleUpDisabled))
    assert down.desired_replicas == 3


# --- stabilization ---------------------------------------------------------------------------

STABILIZE_CASES = [
    # id, history [(age seconds, replicas)], recommended, current, up window, down window, expected
    # Docs: scaling down, "uses the highest value from the specified interval".
    ("down-highest-in-window", [(240, 10), (120, 8), (60, 6)], 5, 10, 0, 300, 10),
    ("down-older-than-window-ignored", [(400, 10), (120, 8), (60, 6)], 5, 10, 0, 300, 8),
    ("down-edge-of-window-ignored", [(300, 10), (60, 6)], 5, 10, 0, 300, 6),
    ("down-no-window", [(60, 10)], 5, 10, 0, 0, 5),
    # A higher recent recommendation never raises the count above the current one.
    ("down-window-does-not-scale-up", [(60, 12)], 5, 8, 0, 300, 8),
    # Scaling up with a window: the lowest recent recommendation caps the rise.
    ("up-lowest-in-window", [(50, 3), (10, 8)], 10, 3, 60, 300, 3),
    ("up-partly-agreed", [(50, 6), (10, 8)], 10, 3, 60, 300, 6),
    ("up-no-window", [(10, 3)], 10, 3, 0, 300, 10),
    # A lower recent recommendation never pulls the count below the current one.
    ("up-window-does-not-scale-down", [(10, 1)], 10, 5, 60, 0, 5),
    # A recommendation equal to the current count is never changed.
    ("steady", [(10, 1), (20, 20)], 5, 5, 60, 300, 5),
]


@pytest.mark.parametrize(
    ("history", "recommended", "current", "up_window", "down_window", "expected"),
    [case[1:] for case in STABILIZE_CASES],
    ids=[case[0] for case in STABILIZE_CASES],
)
def test_stabilize(
    history: list[tuple[int, int]], recommended: int, current: int, up_window: int, down_window: int, expected: int
) -> None:
    behavior = Behavior(
        scale_up=rules(pods(4, 15), window=up_window), scale_down=rules(pods(4, 15), window=down_window)
    )
    recommendations = tuple((NOW - age, replicas) for age, replicas in history)

    assert stabilize(recommendations, recommended, current, behavior, NOW) == expected


def test_docs_scale_down_stabilization_smooths_a_dip() -> None:
    # Load dips for one reading then recovers: with the default 300 s window the dip never
    # reaches the replica count; without a window it does, and the default scale-up then needs
    # two steps to come back (3 -> max(3 + 4, 2 x 3) = 7 -> 10).
    readings = [10, 10, 3, 10, 10]
    times = [NOW + 15 * i for i in range(len(readings))]

    def run(behavior: Behavior) -> list[int]:
        spec, state, counts = 10, ScalingState(), []
        for wanted, t in zip(readings, times, strict=True):
            decision = decide_reactive(asking_for(wanted, spec, behavior), state, t)
            spec, state = decision.desired_replicas, decision.state
            counts.append(spec)
        return counts

    assert run(Behavior()) == [10, 10, 10, 10, 10]
    assert run(Behavior(scale_down=rules(percent(100, 15)))) == [10, 10, 3, 7, 10]


def test_docs_scale_down_window_of_one_minute() -> None:
    # "To provide a custom downscale stabilization window of 1 minute": a steady low load
    # scales down once the minute since the last high recommendation has passed.
    behavior = Behavior(scale_down=rules(percent(100, 15), window=60))
    high = decide_reactive(asking_for(10, 10, behavior), ScalingState(), NOW)

    during = decide_reactive(asking_for(4, 10, behavior), high.state, NOW + 45)
    after = decide_reactive(asking_for(4, 10, behavior), during.state, NOW + 61)

    assert (during.desired_replicas, during.reasons) == (10, (Reason.ScaleDown, Reason.ScaleDownStabilized))
    assert (after.desired_replicas, after.reasons) == (4, (Reason.ScaleDown,))


def test_scale_up_window_reports_stabilized() -> None:
    behavior = Behavior(scale_up=rules(percent(100, 15), window=60))
    calm = decide_reactive(asking_for(3, 3, behavior), ScalingState(), NOW)

    spike = decide_reactive(asking_for(6, 3, behavior), calm.state, NOW + 15)

    assert (spike.desired_replicas, spike.action) == (3, "Hold")
    assert spike.reasons == (Reason.ScaleUp, Reason.ScaleUpStabilized)


# --- the persisted state ---------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    state = ScalingState(
        recommendations=((NOW - 30, 4), (NOW, 7)),
        scale_up_events=((NOW, 3),),
        scale_down_events=((NOW - 100, 2),),
    )

    data = json.loads(json.dumps(state.to_dict()))

    assert data == {
        "recommendations": [{"time": NOW - 30, "replicas": 4}, {"time": NOW, "replicas": 7}],
        "scaleUpEvents": [{"time": NOW, "replicas": 3}],
        "scaleDownEvents": [{"time": NOW - 100, "replicas": 2}],
    }
    assert ScalingState.from_dict(data) == state


@pytest.mark.parametrize(
    "garbage",
    [None, "corrupt", 42, [], {"recommendations": "x"}, {"recommendations": [1, "a", None]}, {"scaleUpEvents": {}}],
    ids=["none", "string", "number", "list", "string-field", "junk-items", "dict-field"],
)
def test_garbage_state_is_empty(garbage: Any) -> None:
    assert ScalingState.from_dict(garbage) == ScalingState()


def test_state_keeps_the_good_items_and_drops_the_bad() -> None:
    data = {
        "recommendations": [
            {"time": NOW, "replicas": 3},
            {"time": NOW - 10, "replicas": 5.0},  # JSON may turn ints into floats
            {"time": NOW, "replicas": 2.5},
            {"time": NOW, "replicas": -1},
            {"time": NOW, "replicas": True},
            {"time": math.nan, "replicas": 3},
            {"time": "yesterday", "replicas": 3},
            {"replicas": 3},
        ],
    }

    state = ScalingState.from_dict(data)

    assert state.recommendations == ((NOW - 10, 5), (NOW, 3))  # sorted by time
    assert state.scale_up_events == state.scale_down_events == ()


def test_state_is_pruned_to_what_windows_and_periods_can_see() -> None:
    behavior = Behavior(scale_up=rules(pods(4, 30)), scale_down=rules(pods(4, 60), window=120))
    state = ScalingState(
        recommendations=((NOW - 200, 9), (NOW - 100, 8)),
        scale_up_events=((NOW - 90, 1), (NOW - 45, 1)),
        scale_down_events=((NOW - 61, 1),),
    )

    decision = decide_reactive(asking_for(8, 8, behavior), state, NOW)

    assert decision.state.recommendations == ((NOW - 100, 8), (NOW, 8))
    assert decision.state.scale_up_events == ((NOW - 45, 1),)
    assert decision.state.scale_down_events == ()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ScalingPolicyRule("Pods", 0, 15),
        lambda: ScalingPolicyRule("Pods", 4, 0),
        lambda: ScalingPolicyRule("Pods", 4, 1801),
        lambda: ScalingPolicyRule("Replicas", 4, 15),  # type: ignore[arg-type]
        lambda: ScalingRules(-1, "Max", (pods(4, 15),)),
        lambda: ScalingRules(3601, "Max", (pods(4, 15),)),
        lambda: ScalingRules(0, "Max", ()),
        lambda: ScalingRules(0, "Fastest", (pods(4, 15),)),  # type: ignore[arg-type]
    ],
    ids=[
        "zero-value",
        "zero-period",
        "period-over-30-min",
        "unknown-type",
        "negative-window",
        "window-over-an-hour",
        "no-policies",
        "unknown-select",
    ],
)
def test_invalid_behavior_is_rejected(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
