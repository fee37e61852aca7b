"""The reactive policy against the HPA's documented algorithm, case by case.

Expected counts are worked out by hand from the HPA docs' formula
``desired = ceil(current * currentValue / targetValue)`` and its rules (tolerance 0.1,
not-yet-ready replicas idle on scale-up, highest proposal wins, missing metrics block
scale-down), never read back from the implementation.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from policies import (
    Behavior,
    MetricObservation,
    ReactiveInputs,
    Reason,
    ScalingRules,
    ScalingState,
    decide_reactive,
    propose,
)

NOW = 1_700_000_000.0

# Behavior rules that never get in the way, to test the metric arithmetic on its own.
NO_WINDOWS = Behavior(
    scale_up=ScalingRules(0, "Max", Behavior().scale_up.policies),
    scale_down=ScalingRules(0, "Max", Behavior().scale_down.policies),
)


def per_replica(total: float | None, target: float, name: str = "waiting", stale: bool = False) -> MetricObservation:
    return MetricObservation(name, total, "AverageValue", target, stale=stale)


def for_total(value: float | None, target: float, name: str = "p95") -> MetricObservation:
    return MetricObservation(name, value, "Value", target)


def workload(
    *metrics: MetricObservation,
    spec: int = 4,
    ready: int | None = None,
    lo: int = 1,
    hi: int = 100,
    behavior: Behavior = NO_WINDOWS,
) -> ReactiveInputs:
    return ReactiveInputs(
        spec_replicas=spec,
        ready_replicas=spec if ready is None else ready,
        min_replicas=lo,
        max_replicas=hi,
        metrics=metrics,
        behavior=behavior,
    )


# --- one metric's proposal -------------------------------------------------------------------

PROPOSAL_CASES = [
    # id, metric, spec, ready, expected replicas, expected reason
    # The docs' example: 200m against a 100m target doubles, 50m halves.
    ("docs-200m-doubles-Value", for_total(0.2, 0.1), 4, 4, 8, Reason.ScaleUp),
    ("docs-50m-halves-Value", for_total(0.05, 0.1), 4, 4, 2, Reason.ScaleDown),
    ("docs-200m-doubles-AverageValue", per_replica(4 * 200, 100), 4, 4, 8, Reason.ScaleUp),
    ("docs-50m-halves-AverageValue", per_replica(4 * 50, 100), 4, 4, 2, Reason.ScaleDown),
    # Tolerance 0.1 is inclusive on both sides, decimal arithmetic notwithstanding.
    ("ratio-1.1-within", per_replica(13.2, 4), 3, 3, 3, Reason.WithinTolerance),
    ("ratio-0.9-within", per_replica(10.8, 4), 3, 3, 3, Reason.WithinTolerance),
    ("ratio-1.0-within", for_total(5, 5), 7, 7, 7, Reason.WithinTolerance),
    ("ratio-1.11-up", per_replica(44.4, 4), 10, 10, 12, Reason.ScaleUp),
    ("ratio-0.89-down", per_replica(35.6, 4), 10, 10, 9, Reason.ScaleDown),
    # ceil: 1.5 x 3 ready = 4.5 -> 5.
    ("rounds-up", per_replica(18, 4), 3, 3, 5, Reason.ScaleUp),
    # 0.85 x 5 = 4.25 -> 5: outside the tolerance but rounding lands on the current count.
    ("rounding-lands-on-current", per_replica(17, 4), 5, 5, 5, Reason.NoChange),
    # No load at all asks for zero; the bounds decide later.
    ("idle-asks-zero", per_replica(0, 4), 4, 4, 0, Reason.ScaleDown),
    # Not-yet-ready replicas count as idle on a scale-up: 10 waiting over 2 ready is 1.25x the
    # target 4, but spread over all 4 replicas it is 0.625x: the direction flips, keep 4.
    ("pending-flip-keeps", per_replica(10, 4), 4, 2, 4, Reason.PendingReplicasCover),
    # 17 over 3 ready is 1.42x, over 4 replicas 1.06x: within the tolerance, keep 4.
    ("pending-within-tolerance-keeps", per_replica(17, 4), 4, 3, 4, Reason.PendingReplicasCover),
    # 40 over 2 ready is 5x, over 4 replicas 2.5x: still up, to ceil(2.5 x 4) = 10.
    ("pending-still-up", per_replica(40, 4), 4, 2, 10, Reason.ScaleUp),
    # Value target: 1.5x on 2 ready would be 3 replicas, below the 4 already asked for;
    # 4 replicas at 2/4 of that load is 0.75x: the starting ones cover it.
    ("pending-Value-covers", for_total(0.3, 0.2), 4, 2, 4, Reason.PendingReplicasCover),
    # On a scale-down the not-yet-ready are ignored: 2 waiting over 2 ready -> ceil(0.5) = 1.
    ("pending-ignored-on-scale-down", per_replica(2, 4), 4, 2, 1, Reason.ScaleDown),
    # No ready replica: a total that needs 5 replicas scales up from 2 ...
    ("no-ready-needs-more", per_replica(20, 4), 2, 0, 5, Reason.ScaleUp),
    # ... one that 2 replicas carry exactly is covered by the starting ones ...
    ("no-ready-covered", per_replica(8, 4), 2, 0, 2, Reason.PendingReplicasCover),
    # ... and zero load cannot justify a scale-down when nothing serves.
    ("no-ready-zero-load-holds", per_replica(0, 4), 2, 0, 2, Reason.NoReadyReplicas),
    ("no-ready-Value-low-holds", for_total(0.1, 0.2), 3, 0, 3, Reason.NoReadyReplicas),
    # Replicas still terminating (ready > spec): 0.8x on 6 ready would be 5 > 4, against the
    # ratio's direction; keep 4 (the next look, on 4 ready, will say 1.2x).
    ("terminating-against-direction-keeps", per_replica(19.2, 4), 4, 6, 4, Reason.NoChange),
]


@pytest.mark.parametrize(
    ("metric", "spec", "ready", "expected", "reason"),
    [case[1:] for case in PROPOSAL_CASES],
    ids=[case[0] for case in PROPOSAL_CASES],
)
def test_metric_proposal(metric: MetricObservation, spec: int, ready: int, expected: int, reason: Reason) -> None:
    proposal = propose(metric, spec, ready, tolerance=0.1)

    assert (proposal.replicas, proposal.reason) == (expected, reason)
    assert proposal.name == metric.name


@pytest.mark.parametrize(
    "metric",
    [
        per_replica(None, 4),
        per_replica(12, 4, stale=True),
        per_replica(math.nan, 4),
        per_replica(math.inf, 4),
        per_replica(-1, 4),
    ],
    ids=["none", "stale", "nan", "inf", "negative"],
)
def test_unusable_metric_is_missing(metric: MetricObservation) -> None:
    proposal = propose(metric, 4, 4, tolerance=0.1)

    assert proposal.replicas is None
    assert proposal.usage_ratio is None
    assert proposal.reason is Reason.MetricMissing


def test_usage_ratio_is_reported_on_ready_replicas() -> None:
    # The audit log shows the ratio the operator measured, not the one adjusted for pending pods.
    assert propose(per_replica(10, 4), 4, 2, tolerance=0.1).usage_ratio == pytest.approx(1.25)
    assert propose(for_total(0.3, 0.2), 4, 2, tolerance=0.1).usage_ratio == pytest.approx(1.5)


def test_a_huge_total_does_not_overflow() -> None:
    proposal = propose(per_replica(1e308, 1e-308), 4, 4, tolerance=0.1)

    assert proposal.reason is Reason.ScaleUp
    assert proposal.replicas is not None and proposal.replicas > 1_000_000


def test_tolerance_is_an_input() -> None:
    # 1.15x: outside a 0.1 tolerance, inside a 0.2 one.
    assert propose(per_replica(46, 4), 10, 10, tolerance=0.1).replicas == 12
    assert propose(per_replica(46, 4), 10, 10, tolerance=0.2).reason is Reason.WithinTolerance


# --- whole decisions -------------------------------------------------------------------------

DECISION_CASES = [
    # id, inputs, desired, action, reasons
    ("within-tolerance-holds", workload(per_replica(17, 4)), 4, "Hold", (Reason.WithinTolerance,)),
    (
        "highest-metric-wins",
        workload(per_replica(20, 4), for_total(0.4, 0.2, name="p95")),  # 5 vs 8
        8,
        "ScaleUp",
        (Reason.ScaleUp,),
    ),
    (
        "one-metric-up-beats-one-down",
        workload(per_replica(2, 4), for_total(0.3, 0.2, name="p95")),  # 1 vs 6
        6,
        "ScaleUp",
        (Reason.ScaleUp,),
    ),
    ("all-down-scales-down", workload(per_replica(8, 4), for_total(0.1, 0.2)), 2, "ScaleDown", (Reason.ScaleDown,)),
    # Missing data.
    ("no-metrics-holds", workload(), 4, "Hold", (Reason.AllMetricsMissing,)),
    (
        "all-missing-holds",
        workload(per_replica(None, 4), for_total(None, 0.2)),
        4,
        "Hold",
        (Reason.AllMetricsMissing,),
    ),
    (
        "missing-blocks-scale-down",
        workload(per_replica(2, 4), for_total(None, 0.2)),
        4,
        "Hold",
        (Reason.MetricMissing, Reason.ScaleDown),
    ),
    (
        "stale-blocks-scale-down",
        workload(per_replica(2, 4), per_replica(1, 1, name="kv_cache", stale=True)),
        4,
        "Hold",
        (Reason.MetricMissing, Reason.ScaleDown),
    ),
    (
        "missing-still-allows-scale-up",
        workload(per_replica(32, 4), for_total(None, 0.2)),
        8,
        "ScaleUp",
        (Reason.ScaleUp, Reason.MetricMissing),
    ),
    (
        "missing-with-others-at-target-holds",
        workload(per_replica(16, 4), for_total(None, 0.2)),
        4,
        "Hold",
        (Reason.WithinTolerance, Reason.MetricMissing),
    ),
    # Bounds.
    (
        "clamped-to-max",
        workload(per_replica(400, 4), spec=8, hi=10),
        10,
        "ScaleUp",
        (Reason.ScaleUp, Reason.ClampedToMax),
    ),
    (
        "clamped-to-min",
        workload(per_replica(0, 4), spec=8, lo=3),
        3,
        "ScaleDown",
        (Reason.ScaleDown, Reason.ClampedToMin),
    ),
    ("at-max-holds", workload(per_replica(400, 4), spec=10, hi=10), 10, "Hold", (Reason.ScaleUp, Reason.ClampedToMax)),
    # A count already outside the bounds goes straight to the bound, whatever the metrics say
    # and whatever the behavior rules (the HPA checks the bounds before anything else).
    (
        "above-max-goes-to-max",
        workload(
            per_replica(1000, 4),
            spec=20,
            hi=10,
            behavior=replace(NO_WINDOWS, scale_down=ScalingRules(0, "Disabled", ())),
        ),
        10,
        "ScaleDown",
        (Reason.ClampedToMax,),
    ),
    ("below-min-goes-to-min", workload(per_replica(0, 4), spec=1, lo=3), 3, "ScaleUp", (Reason.ClampedToMin,)),
    # The target scaled to zero by hand: stand aside, as the HPA does.
    ("zero-replicas-disabled", workload(per_replica(100, 4), spec=0), 0, "Hold", (Reason.ScalingDisabled,)),
    # Not-yet-ready replicas.
    ("pending-cover-holds", workload(per_replica(10, 4), spec=4, ready=2), 4, "Hold", (Reason.PendingReplicasCover,)),
    ("no-ready-zero-load-holds", workload(per_replica(0, 4), spec=3, ready=0), 3, "Hold", (Reason.NoReadyReplicas,)),
]


@pytest.mark.parametrize(
    ("inputs", "desired", "action", "reasons"),
    [case[1:] for case in DECISION_CASES],
    ids=[case[0] for case in DECISION_CASES],
)
def test_decision(inputs: ReactiveInputs, desired: int, action: str, reasons: tuple[Reason, ...]) -> None:
    decision = decide_reactive(inputs, ScalingState(), NOW)

    assert (decision.desired_replicas, decision.action, decision.reasons) == (desired, action, reasons)
    assert len(decision.proposals) == (0 if inputs.spec_replicas == 0 else len(inputs.metrics))
    assert decision.message.startswith(f"{inputs.spec_replicas} -> {desired}: ")


def test_recommended_replicas_shows_what_was_limited() -> None:
    decision = decide_reactive(workload(per_replica(400, 4), spec=8, hi=10), ScalingState(), NOW)

    assert decision.recommended_replicas == 100
    assert decision.desired_replicas == 10


def test_message_names_the_metric_and_the_limiting_policy() -> None:
    # The brief's own example: 42 waiting over 3 ready is 3.5x the target 4; the default scale-up
    # allows max(3 + 4 pods, 2 x 3) = 7.
    decision = decide_reactive(workload(per_replica(42, 4), spec=3, behavior=Behavior()), ScalingState(), NOW)

    assert decision.desired_replicas == 7
    assert decision.reasons == (Reason.ScaleUp, Reason.ScaleUpRateLimited)
    assert decision.message == (
        "3 -> 7: waiting=42 is 3.50x the target 4/replica over 3 ready; limited by scaleUp policy Pods 4/15s"
    )


def test_missing_metric_is_named_in_the_message() -> None:
    decision = decide_reactive(workload(per_replica(2, 4), for_total(None, 0.2, name="p95")), ScalingState(), NOW)

    assert "p95" in decision.message


def test_a_fresh_history_waits_the_scale_down_window() -> None:
    # The HPA seeds its history with the current count, so a newly watched target is not
    # scaled down on its first low reading; after the default 300 s window it is.
    low = workload(per_replica(4, 4), spec=4, behavior=Behavior())

    first = decide_reactive(low, ScalingState(), NOW)
    assert (first.desired_replicas, first.reasons) == (4, (Reason.ScaleDown, Reason.ScaleDownStabilized))

    later = decide_reactive(low, first.state, NOW + 301)
    assert (later.desired_replicas, later.reasons) == (1, (Reason.ScaleDown,))


def test_holds_for_missing_data_are_not_recorded_as_recommendations() -> None:
    # A hold says nothing about the load: it must not stretch a later stabilization window.
    decision = decide_reactive(workload(per_replica(None, 4), behavior=Behavior()), ScalingState(), NOW)

    assert decision.state.recommendations == ((NOW, 4),)  # only the seed


def test_every_decision_records_its_scale_event() -> None:
    up = decide_reactive(workload(per_replica(32, 4), spec=4), ScalingState(), NOW)
    assert up.state.scale_up_events == ((NOW, 4),)

    out_of_bounds = decide_reactive(workload(per_replica(8, 4), spec=20, hi=10), ScalingState(), NOW)
    assert out_of_bounds.state.scale_down_events == ((NOW, 10),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 5, "max_replicas": 4}, "min_replicas 5 > max_replicas 4"),
        ({"min_replicas": 0}, "no scale-to-zero"),
        ({"spec_replicas": -1}, "negative"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"tolerance": math.nan}, "tolerance"),
    ],
    ids=["min-above-max", "min-zero", "negative-spec", "negative-tolerance", "nan-tolerance"],
)
def test_invalid_inputs_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "spec_replicas": 2,
        "ready_replicas": 2,
        "min_replicas": 1,
        "max_replicas": 4,
        "metrics": (),
    }
    with pytest.raises(ValueError, match=message):
        ReactiveInputs(**(fields | kwargs))


@pytest.mark.parametrize("target", [0.0, -1.0, math.nan, math.inf], ids=["zero", "negative", "nan", "inf"])
def test_a_metric_needs_a_positive_target(target: float) -> None:
    with pytest.raises(ValueError, match="target"):
        MetricObservation("waiting", 1.0, "AverageValue", target)


def test_on_a_tie_the_first_metric_explains() -> None:
    decision = decide_reactive(
        workload(for_total(0.4, 0.2, name="p95"), per_replica(32, 4, name="waiting")), ScalingState(), NOW
    )

    assert decision.desired_replicas == 8
    assert "p95=0.4 is 2.00x the target 0.2" in decision.message
    assert "waiting" not in decision.message
