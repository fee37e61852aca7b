"""infercast policies: pure decision logic. Frozen inputs + explicit `now` -> decision + new state."""

from policies.reactive import decide_reactive, propose
from policies.reasons import Reason
from policies.scaling_types import (
    Action,
    Behavior,
    MetricObservation,
    MetricProposal,
    ReactiveInputs,
    ScalingDecision,
    ScalingPolicyRule,
    ScalingRules,
    ScalingState,
    SelectPolicy,
    TargetType,
)

__all__ = [
    "Action",
    "Behavior",
    "MetricObservation",
    "MetricProposal",
    "ReactiveInputs",
    "Reason",
    "ScalingDecision",
    "ScalingPolicyRule",
    "ScalingRules",
    "ScalingState",
    "SelectPolicy",
    "TargetType",
    "decide_reactive",
    "propose",
]
