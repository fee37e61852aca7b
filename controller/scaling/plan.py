"""What a ScalingPolicy's cycle decided, in one shape for both policies, and the reactive policy's plan.

A cycle observes (:mod:`controller.scaling.observe`), then asks one planner for a
:class:`ScalingPlan`: :func:`plan_reactive` for a policy without ``spec.forecast`` (the HPA
algorithm of :func:`policies.decide_reactive`, plus the spec's fallback for an outage of every
metric) or :func:`controller.scaling.predictive.plan_predictive` with it. The plan carries all the
decision record, the Events and the status say, so the cycle builds its record once from it.
Pure functions: no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.actuators import ScaleObservation
from controller.scaling.observe import MetricReading
from controller.scaling.spec import ScalingPolicySpec
from policies import MetricObservation, ReactiveInputs, ScalingDecision, ScalingState, decide_reactive
from policies.predictive import Path


@dataclass(frozen=True)
class ScalingPlan:
    """The count decided, why, and what the record and the status show of it.

    ``recommended`` is what the metrics (or the forecast and reactive paths) asked for before the
    behavior rules and the bounds; ``path`` names the predictive path that set the count (``None``
    for a reactive policy); ``forecast`` is the predictive record's ``inputs.forecast``;
    ``status`` the status fields only a predictive policy has.
    """

    desired: int
    recommended: int
    reasons: tuple[str, ...]
    message: str
    state: ScalingState
    proposals: list[dict[str, Any]]
    path: Path | None = None
    forecast: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)


def decide_on_metrics(
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    readings: Sequence[MetricReading],
    state: ScalingState,
    now: float,
) -> ScalingDecision:
    """The reactive policy's decision on the spec's metrics."""
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
    return decide_reactive(inputs, state, now)


def reactive_proposals(decision: ScalingDecision) -> list[dict[str, Any]]:
    return [
        {"metric": p.name, "usageRatio": p.usage_ratio, "replicas": p.replicas, "reason": str(p.reason)}
        for p in decision.proposals
    ]


def plan_reactive(
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    readings: Sequence[MetricReading],
    state: ScalingState,
    now: float,
) -> ScalingPlan:
    """The reactive policy, with every metric gone and ``onMetricsUnavailable: Fallback`` raised to the fallback.

    Never down: the fallback is a floor for an outage, not a target, so a service that was scaled
    past it for real load keeps its replicas while infercast is blind.
    """
    decision = decide_on_metrics(spec, observed, readings, state, now)
    desired, reasons, message = decision.desired_replicas, tuple(str(r) for r in decision.reasons), decision.message
    fallback = spec.fallback
    blind = all(r.value is None for r in readings)
    if blind and fallback.on_metrics_unavailable == "Fallback" and fallback.replicas is not None:
        floor = min(max(fallback.replicas, spec.min_replicas), spec.max_replicas)
        desired = max(decision.desired_replicas, observed.spec_replicas, floor)
    if desired != decision.desired_replicas:
        reasons = ("FallbackReplicas", *reasons)
        message = f"every metric is unavailable: fallback to {desired} replicas (never down); {message}"
    return ScalingPlan(
        desired=desired,
        recommended=decision.recommended_replicas,
        reasons=reasons,
        message=message,
        state=decision.state,
        proposals=reactive_proposals(decision),
    )
