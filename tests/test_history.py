"""settle_history (issue 12, finding 4 and "Also"): lost records, changes by others and skewed clocks, as pure cases."""

from __future__ import annotations

from policies import (
    Behavior,
    MetricObservation,
    ReactiveInputs,
    ScalingPolicyRule,
    ScalingRules,
    ScalingState,
    decide_reactive,
)
from policies.history import PendingScale, settle_history

NOW = 1_700_000_000.0
YEAR = 365 * 24 * 3600.0
PODS_2_PER_60S = ScalingRules(0, "Max", (ScalingPolicyRule("Pods", 2, 60),))
BEHAVIOR = Behavior(scale_up=PODS_2_PER_60S, scale_down=ScalingRules(30, "Max", (ScalingPolicyRule("Pods", 1, 60),)))


def decide(state: ScalingState, current: int, load: float, now: float) -> int:
    metric = MetricObservation("waiting", load, "AverageValue", 10)
    inputs = ReactiveInputs(current, current, 1, 20, (metric,), BEHAVIOR)
    return decide_reactive(inputs, state, now).desired_replicas


def test_an_entry_dated_in_the_future_counts_from_now_not_from_its_date() -> None:
    skewed = ScalingState(recommendations=((NOW + YEAR, 9),), scale_up_events=((NOW + YEAR, 2),))
    settled = settle_history(skewed, now=NOW, recorded=4, pending=None, observed=4).state
    assert settled.recommendations == ((NOW, 9),) and settled.scale_up_events == ((NOW, 2),)
    # Trusted, the entry holds the count for a year; moved to now, it is gone a window and a period later.
    assert decide(skewed, 4, 10, NOW + 61) == 4
    assert decide(settled, 4, 10, NOW + 61) == 3  # one down, the scale-down rule's 1 per 60 s


def test_a_write_whose_record_was_lost_is_counted_when_it_landed() -> None:
    decided = NOW - 10
    pending = PendingScale(from_=2, to=4, time=decided, recommended=10)
    settled = settle_history(ScalingState(), now=NOW, recorded=2, pending=pending, observed=4)
    assert settled.state.scale_up_events == ((decided, 2),) and settled.recorded == 4
    assert settled.changed_outside == 0
    # The rate limit holds across the lost record: 2 -> 4 ten seconds ago, Pods 2 per 60 s.
    assert decide(settled.state, 4, 100, NOW) == 4
    assert decide(settled.state, 4, 100, decided + 61) == 6


def test_a_write_that_never_landed_leaves_no_phantom_move() -> None:
    pending = PendingScale(from_=4, to=2, time=NOW - 10, recommended=2)
    settled = settle_history(ScalingState(), now=NOW, recorded=4, pending=pending, observed=4)
    assert settled.state == ScalingState() and settled.recorded == 4 and settled.changed_outside == 0


def test_a_change_by_someone_else_is_taken_and_held_not_charged_to_the_rate_limits() -> None:
    settled = settle_history(ScalingState(((NOW - 100, 4),)), now=NOW, recorded=4, pending=None, observed=7)
    assert settled.changed_outside == 3 and settled.recorded == 7
    assert settled.state.scale_up_events == () and settled.state.scale_down_events == ()
    assert settled.state.recommendations[-1] == (NOW, 7)
    # A low load does not revert the person's 7 within the 30 s scale-down window.
    assert decide(settled.state, 7, 40, NOW + 5) == 7
