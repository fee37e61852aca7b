"""infercast policies: pure decision logic. Frozen inputs + explicit `now` -> decision + new state."""

from policies.reactive import decide_reactive, propose
from policies.reasons import Reason
from policies.scaling_types import (
    Behavior,
    MetricObservation,
    MetricProposal,
    ReactiveInputs,
    ScalingDecision,
    ScalingPolicyRule,
    ScalingRules,
    ScalingState,
)

__all__ = [
    "Behavior",
    "MetricObservation",
    "MetricProposal",
    "ReactiveInputs",
    "Reason",
    "ScalingDecision",
    "ScalingPolicyRule",
    "ScalingRules",
    "ScalingState",
    "decide_reactive",
    "propose",
]
