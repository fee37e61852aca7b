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

    # Traffic policies (CircuitBreakerPolicy, RoutingPolicy): per-backend health with hysteresis.
    BackendHealthy = "BackendHealthy"
    """The backend's failure score is below the upper threshold and it was not flagged: relaxed values."""
    BackendDegraded = "BackendDegraded"
    """The failure score reached the upper threshold: tighten outlier detection, move traffic away at once."""
    RecoveryPending = "RecoveryPending"
    """A flagged backend looks healthy again but has not stayed below the lower threshold for the hold period."""
    BackendRecovered = "BackendRecovered"
    """A flagged backend stayed below the lower threshold for the whole hold period: relax."""
    BackendDataMissing = "BackendDataMissing"
    """No signal of the backend could be read: its current values and weight are kept."""
    ReplicasFailing = "ReplicasFailing"
    """A replica fails on its own (its 5xx share an outlier among its peers'): its pool's breakers are tight."""
    ReplicasStalled = "ReplicasStalled"
    """A replica stalled (sequences running, no token over the interval): its pool's breakers are tight,
    so Envoy ejects it at its first timeout."""
    EjectionCappedByCapacity = "EjectionCappedByCapacity"
    """maxEjectionPercent was lowered so that ejections never take away capacity the forecast load needs."""
    ConnectionPoolFromCapacity = "ConnectionPoolFromCapacity"
    """The connection pool limits were recomputed from ready replicas (Little's law)."""
    RetriesCutByCapacity = "RetriesCutByCapacity"
    """Overload (the forecast load needs every ready replica, a latency at its limit): no retries, only more load."""
    WeightsFollowCapacity = "WeightsFollowCapacity"
    """Route weights are proportional to each healthy backend's capacity."""
    WeightStepLimited = "WeightStepLimited"
    """The weights moved by at most maxStepPercent this cycle; the target is further away."""
    AllBackendsUnhealthy = "AllBackendsUnhealthy"
    """Every backend is flagged: traffic stays on the least-bad ones instead of going nowhere."""
    WeightsHeld = "WeightsHeld"
    """The weights already match the target (or no backend could be judged): nothing to move."""
    CanaryStep = "CanaryStep"
    """The canary is as good as the stable backend within the margins: one more step of weight."""
    CanaryWaiting = "CanaryWaiting"
    """The canary has not spent stepIntervalSeconds at its current weight, or its data is missing: hold."""
    CanaryTooFewRequests = "CanaryTooFewRequests"
    """The canary or the stable backend served fewer than minRequests in the window: too few to compare, hold."""
    CanaryPromoted = "CanaryPromoted"
    """The canary carries all of the traffic."""
    CanaryRolledBack = "CanaryRolledBack"
    """The canary was worse than stable beyond a margin (or failed outright): all traffic back to stable."""

    # Predictive scaling (policies/predictive.py): which path decided and why.
    ForecastScaleUp = "ForecastScaleUp"
    """The forecast's chosen quantile over now .. now + lead time + interval needs more replicas."""
    ForecastScaleDown = "ForecastScaleDown"
    """The forecast's upper quantile stays below the remaining capacity for the whole lead time."""
    ForecastWithinCapacity = "ForecastWithinCapacity"
    """The forecast needs exactly the current count."""
    ReactiveScaleUp = "ReactiveScaleUp"
    """The load observed now needs more than the forecast asked for (the forecast missed)."""
    LatencyPanic = "LatencyPanic"
    """The observed TTFT is above its SLO with no replica starting: add replicas at once."""
    FollowingLastForecast = "FollowingLastForecast"
    """No fresh forecast or load this cycle: the last good forecast still covers the window."""
    ForecastExpired = "ForecastExpired"
    """No fresh forecast and the last good one no longer reaches into the window: hold."""
