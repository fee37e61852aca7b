"""Machine-readable reason codes shared by every policy.

A decision carries the codes of every rule that shaped it so that an Event, a log line or the
CR's status can say *why* without parsing prose. The values are CamelCase like Kubernetes
condition reasons and are part of the operator's public surface: dashboards and alerts match on
them, so a value is never renamed, only added.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a policy proposed, limited or refused a change."""

    # What the metrics ask for (one per metric proposal; the decisive one leads a decision).
    ScaleUp = "ScaleUp"
    """The usage ratio is above the target by more than the tolerance."""
    ScaleDown = "ScaleDown"
    """The usage ratio is below the target by more than the tolerance."""
    WithinTolerance = "WithinTolerance"
    """The usage ratio is within the tolerance of 1.0: keep the current count."""
    NoChange = "NoChange"
    """Outside the tolerance, but rounding (or replicas still terminating) gives the current count."""
    PendingReplicasCover = "PendingReplicasCover"
    """Counting the not-yet-ready replicas as idle, the current count already covers the load."""
    NoReadyReplicas = "NoReadyReplicas"
    """No ready replica to measure on and nothing that asks for more: keep the current count."""

    # Missing data: hold rather than act on a partial picture.
    MetricMissing = "MetricMissing"
    """A metric is missing or stale: scaling down is forbidden (scaling up is still allowed)."""
    AllMetricsMissing = "AllMetricsMissing"
    """No metric could be read: hold."""

    # HPA behavior: stabilization windows and rate limits.
    ScaleUpStabilized = "ScaleUpStabilized"
    """A lower recommendation within the scale-up window held the scale-up back."""
    ScaleDownStabilized = "ScaleDownStabilized"
    """A higher recommendation within the scale-down window held the scale-down back."""
    ScaleUpRateLimited = "ScaleUpRateLimited"
    """The scale-up policies allow fewer replicas to be added in their period."""
    ScaleDownRateLimited = "ScaleDownRateLimited"
    """The scale-down policies allow fewer replicas to be removed in their period."""
    ScaleUpDisabled = "ScaleUpDisabled"
    """The scale-up rules have ``selectPolicy: Disabled``."""
    ScaleDownDisabled = "ScaleDownDisabled"
    """The scale-down rules have ``selectPolicy: Disabled``."""

    # Bounds and the off switch.
    ClampedToMin = "ClampedToMin"
    """The result was raised to ``min_replicas``."""
    ClampedToMax = "ClampedToMax"
    """The result was lowered to ``max_replicas``."""
    ScalingDisabled = "ScalingDisabled"
    """The target was scaled to zero by someone else: the autoscaler stands aside (as the HPA does)."""
