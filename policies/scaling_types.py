"""The values a scaling policy takes and returns.

Everything is a frozen dataclass: a decision is a pure function of its inputs, the remembered
state and an explicit ``now`` (float seconds since the epoch), so a test can replay any situation
and the controller can persist the state in the CR's status and pick up after a restart exactly
where it left off. Validation happens at construction so that a bad spec fails where it is
built, not deep inside a decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from policies.reasons import Reason

TargetType = Literal["AverageValue", "Value"]
PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
Action = Literal["ScaleUp", "ScaleDown", "Hold"]

# The API server's limits on HPA behavior fields; a value outside them is a spec error.
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_POLICY_PERIOD_SECONDS = 1800


@dataclass(frozen=True)
class MetricObservation:
    """One metric of the workload as the controller read it.

    ``value`` is the metric's *total* over the workload (for example the sum of waiting requests
    over its ready pods). ``target_type`` says how to compare it with ``target``:

    * ``"AverageValue"``: ``target`` is per ready replica (HPA Pods/External ``AverageValue``);
    * ``"Value"``: ``target`` is for the total (HPA Object/External ``Value``).

    ``None``, a non-finite or a negative value, or ``stale=True`` all count as missing: a
    Prometheus query that returned NaN must not be mistaken for zero load.
    """

    name: str
    value: float | None
    target_type: TargetType
    target: float
    stale: bool = False

    def __post_init__(self) -> None:
        if self.target_type not in ("AverageValue", "Value"):
            raise ValueError(f"metric {self.name!r}: unknown target type {self.target_type!r}")
        if not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"metric {self.name!r}: target must be a positive number, got {self.target}")

    @property
    def missing(self) -> bool:
        return self.stale or self.value is None or not math.isfinite(self.value) or self.value < 0


@dataclass(frozen=True)
class ScalingPolicyRule:
    """At most ``value`` pods (or percent of the count at the period's start) per ``period_seconds``."""

    type: PolicyType
    value: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise ValueError(f"unknown scaling policy type {self.type!r}")
        if self.value <= 0:
            raise ValueError(f"scaling policy value must be > 0, got {self.value}")
        if not 0 < self.period_seconds <= MAX_POLICY_PERIOD_SECONDS:
            raise ValueError(
                f"scaling policy period must be in (0, {MAX_POLICY_PERIOD_SECONDS}] s, got {self.period_seconds}"
            )

    def __str__(self) -> str:
        unit = "%" if self.type == "Percent" else ""
        return f"{self.type} {self.value}{unit}/{self.period_seconds}s"


@dataclass(frozen=True)
class ScalingRules:
    """One direction of an HPA ``behavior``: stabilization window and rate-limit policies."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicyRule, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.stabilization_window_seconds <= MAX_STABILIZATION_WINDOW_SECONDS:
            raise ValueError(
                f"stabilization window must be in [0, {MAX_STABILIZATION_WINDOW_SECONDS}] s, "
                f"got {self.stabilization_window_seconds}"
            )
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"unknown selectPolicy {self.select_policy!r}")
        if not self.policies and self.select_policy != "Disabled":
            raise ValueError("at least one scaling policy is required unless selectPolicy is Disabled")

    @property
    def longest_period_seconds(self) -> int:
        return max((rule.period_seconds for rule in self.policies), default=0)

    @classmethod
    def default_scale_up(cls) -> ScalingRules:
        """HPA default: no window; add max(4 pods, 100 %) per 15 s."""
        return cls(0, "Max", (ScalingPolicyRule("Percent", 100, 15), ScalingPolicyRule("Pods", 4, 15)))

    @classmethod
    def default_scale_down(cls) -> ScalingRules:
        """HPA default: 300 s window; remove up to 100 % per 15 s."""
        return cls(300, "Max", (ScalingPolicyRule("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    """HPA ``spec.behavior``; the defaults are the HPA's documented ones.

    Scale up: no stabilization, at most max(4 pods, 100 %) added per 15 s.
    Scale down: 300 s stabilization, up to 100 % removed per 15 s.
    """

    scale_up: ScalingRules = field(default_factory=ScalingRules.default_scale_up)
    scale_down: ScalingRules = field(default_factory=ScalingRules.default_scale_down)

    @property
    def longest_window_seconds(self) -> int:
        return max(self.scale_up.stabilization_window_seconds, self.scale_down.stabilization_window_seconds)

    @property
    def longest_period_seconds(self) -> int:
        return max(self.scale_up.longest_period_seconds, self.scale_down.longest_period_seconds)


@dataclass(frozen=True)
class ReactiveInputs:
    """What the reactive policy sees of the workload at one instant.

    ``spec_replicas`` is the target's desired count (``scale.spec.replicas``, the HPA's
    ``currentReplicas``); ``ready_replicas`` the pods that serve and therefore produced the metric
    totals. ``min_replicas`` must be at least 1: scale-to-zero is not supported (see
    docs/reactive-policy.md).
    """

    spec_replicas: int
    ready_replicas: int
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricObservation, ...]
    behavior: Behavior = field(default_factory=Behavior)
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if self.spec_replicas < 0 or self.ready_replicas < 0:
            raise ValueError("replica counts cannot be negative")
        if self.min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1 (no scale-to-zero), got {self.min_replicas}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        if not (math.isfinite(self.tolerance) and 0 <= self.tolerance < 1):
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")


Timed = tuple[tuple[float, int], ...]
"""(time, replicas) pairs, oldest first."""

_STATE_KEYS = (
    ("recommendations", "recommendations"),
    ("scale_up_events", "scaleUpEvents"),
    ("scale_down_events", "scaleDownEvents"),
)


@dataclass(frozen=True)
class ScalingState:
    """Everything the algorithm remembers between decisions.

    The HPA keeps this in memory and loses it on a controller restart (which is why a fresh HPA
    waits a whole scale-down window). We persist it in the CR's status instead, hence the
    JSON-friendly ``to_dict`` and a ``from_dict`` that never raises: a corrupted status must
    degrade to "no history", never crash the controller.
    """

    recommendations: Timed = ()
    """(time, replicas) the metrics recommended, before stabilization."""
    scale_up_events: Timed = ()
    """(time, replicas added) for each scale-up the policy decided."""
    scale_down_events: Timed = ()
    """(time, replicas removed) for each scale-down the policy decided."""

    def to_dict(self) -> dict[str, list[dict[str, float | int]]]:
        return {
            key: [{"time": time, "replicas": replicas} for time, replicas in getattr(self, attr)]
            for attr, key in _STATE_KEYS
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> ScalingState:
        """Rebuild a state from ``to_dict`` output; malformed parts are dropped, never raised."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(**{attr: _parse_timed(data.get(key)) for attr, key in _STATE_KEYS})


def _parse_timed(items: object) -> Timed:
    if not isinstance(items, list | tuple):
        return ()
    parsed: list[tuple[float, int]] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        time, replicas = item.get("time"), item.get("replicas")
        # bool is an int subclass: a stray `true` must not become one replica.
        if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
            continue
        if isinstance(replicas, bool) or not isinstance(replicas, int | float):
            continue
        if not (math.isfinite(replicas) and float(replicas).is_integer() and replicas >= 0):
            continue
        parsed.append((float(time), int(replicas)))
    return tuple(sorted(parsed, key=lambda entry: entry[0]))


@dataclass(frozen=True)
class MetricProposal:
    """What one metric asks for, for the audit log.

    ``usage_ratio`` is the metric over its target on the ready replicas (``None`` when it cannot
    be computed: missing metric, or no ready replica for an ``AverageValue`` target);
    ``replicas`` is ``None`` only for a missing metric.
    """

    name: str
    value: float | None
    usage_ratio: float | None
    replicas: int | None
    reason: Reason


@dataclass(frozen=True)
class ScalingDecision:
    """The outcome of one decision, its explanation and the state to persist.

    ``reasons[0]`` is what the metrics asked for (or the gate that stopped the decision before
    the behavior rules: ``ScalingDisabled``, ``ClampedToMin/Max`` for a count already out of
    bounds, ``AllMetricsMissing``, ``MetricMissing``); the following codes are the rules that
    changed the number afterwards, in the order they were applied.
    """

    desired_replicas: int
    action: Action
    reasons: tuple[Reason, ...]
    message: str
    proposals: tuple[MetricProposal, ...]
    recommended_replicas: int
    state: ScalingState
