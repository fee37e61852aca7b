"""Per-backend health for the traffic policies: one failure score, judged with hysteresis.

A circuit breaker or a router that reacts to every wiggle of a noisy latency series would flap:
tighten, relax, tighten, moving traffic back and forth each cycle. So a backend has two states,
*flagged* or not, and two thresholds on its failure score:

* a score at or above ``upper`` flags the backend at once (reacting late to a failing GPU pool
  costs requests; reacting early costs little, since relaxing is always possible later);
* a flagged backend is released only after its score has stayed below ``lower`` for ``hold_s``
  seconds without interruption; a score between the thresholds restarts that wait.

The score itself is the largest of the detector's anomaly score (learned baseline, computed by
the controller with :mod:`forecasting` and copied in as a number) and the service-level limits of
the spec: ``value / limit / 2``, so a value at its limit scores 0.5, the detector's alert level,
and twice the limit scores 1. The limits catch what the detector cannot yet see (it needs a long
history before it scores anything) and what is bad in absolute terms however normal it became.

Missing data never changes a backend's state: a policy that cannot see does not act.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from policies.reasons import Reason


def finite(value: float | None) -> float | None:
    """``value`` when it is a usable non-negative number; ``None`` for missing, NaN, inf or negative."""
    if value is None or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


@dataclass(frozen=True)
class BackendSignals:
    """What the controller read about one backend in one cycle; ``None`` is missing.

    ``failure_score`` is the detector's anomaly score in [0, 1] (the largest over the backend's
    metrics); ``error_rate`` the fraction of 5xx responses; ``saturation`` the KV-cache usage
    fraction; ``failing_replicas`` how many replicas fail on their own (their 5xx share an outlier
    among their peers', or stalled), ``stalled_replicas`` how many of them stalled (sequences
    running and no token generated over the policy's interval: a hung engine); ``needed_replicas``
    the replicas the forecast load needs at the policy's quantile;
    ``requests`` how many requests the backend served over the window its rates and quantiles
    are computed on (how much a p95 of that window can be trusted).
    """

    name: str
    failure_score: float | None = None
    error_rate: float | None = None
    latency_ms: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    saturation: float | None = None
    ready_replicas: int | None = None
    failing_replicas: int | None = None
    stalled_replicas: int | None = None
    needed_replicas: float | None = None
    requests: float | None = None


@dataclass(frozen=True)
class HealthLimits:
    """Service-level limits (``None``: not checked) and the hysteresis of the flagged state."""

    max_error_rate: float | None = 0.05
    max_latency_ms: float | None = None
    max_ttft_s: float | None = None
    max_tpot_s: float | None = None
    max_saturation: float | None = None
    upper: float = 0.5
    lower: float = 0.2
    hold_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower < self.upper <= 1.0:
            raise ValueError(f"need 0 <= lower < upper <= 1, got lower={self.lower} upper={self.upper}")
        if not (math.isfinite(self.hold_s) and self.hold_s >= 0):
            raise ValueError(f"hold_s must be a non-negative number, got {self.hold_s}")
        for limit in (self.max_error_rate, self.max_latency_ms, self.max_ttft_s, self.max_tpot_s, self.max_saturation):
            if limit is not None and not (math.isfinite(limit) and limit > 0):
                raise ValueError(f"a limit must be a positive number, got {limit}")


def failure_score(signals: BackendSignals, limits: HealthLimits) -> float | None:
    """The backend's failure score in [0, 1], or ``None`` when nothing about it could be read."""
    parts: list[float] = []
    detector = finite(signals.failure_score)
    if detector is not None:
        parts.append(min(detector, 1.0))
    for value, limit in (
        (signals.error_rate, limits.max_error_rate),
        (signals.latency_ms, limits.max_latency_ms),
        (signals.ttft_s, limits.max_ttft_s),
        (signals.tpot_s, limits.max_tpot_s),
        (signals.saturation, limits.max_saturation),
    ):
        seen = finite(value)
        if seen is not None and limit is not None:
            parts.append(min(seen / limit / 2.0, 1.0))
    return max(parts) if parts else None


@dataclass(frozen=True)
class BackendHealth:
    """The hysteresis state of one backend: flagged or not, and since when it has looked calm."""

    flagged: bool = False
    calm_since: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"flagged": self.flagged, "calmSince": self.calm_since}

    @classmethod
    def from_dict(cls, data: object) -> BackendHealth:
        """Never raises: a corrupted status degrades to "not flagged, no calm period yet"."""
        if not isinstance(data, Mapping):
            return cls()
        calm = data.get("calmSince")
        calm_since = float(calm) if isinstance(calm, int | float) and not isinstance(calm, bool) else None
        return cls(flagged=data.get("flagged") is True, calm_since=finite(calm_since))


def assess(
    score: float | None, previous: BackendHealth, limits: HealthLimits, now: float
) -> tuple[BackendHealth, Reason]:
    """The backend's new hysteresis state and the reason for it."""
    if score is None:
        return previous, Reason.BackendDataMissing
    if score >= limits.upper:
        return BackendHealth(flagged=True), Reason.BackendDegraded
    if not previous.flagged:
        return BackendHealth(), Reason.BackendHealthy
    if score >= limits.lower:
        return BackendHealth(flagged=True), Reason.RecoveryPending
    # A calm_since in the future (a clock step back) restarts the wait rather than ending it early.
    calm_since = previous.calm_since if previous.calm_since is not None and previous.calm_since <= now else now
    if now - calm_since >= limits.hold_s:
        return BackendHealth(), Reason.BackendRecovered
    return BackendHealth(flagged=True, calm_since=calm_since), Reason.RecoveryPending


@dataclass(frozen=True)
class BackendVerdict:
    """One backend's judgement in one cycle, for decisions and their audit record."""

    name: str
    score: float | None
    health: BackendHealth
    reason: Reason

    @property
    def missing(self) -> bool:
        return self.reason is Reason.BackendDataMissing


def judge(
    signals: BackendSignals, previous: Mapping[str, BackendHealth], limits: HealthLimits, now: float
) -> BackendVerdict:
    score = failure_score(signals, limits)
    health, reason = assess(score, previous.get(signals.name, BackendHealth()), limits, now)
    return BackendVerdict(signals.name, score, health, reason)


def health_to_dict(health: Mapping[str, BackendHealth]) -> dict[str, dict[str, object]]:
    return {name: state.to_dict() for name, state in sorted(health.items())}


def health_from_dict(data: object) -> dict[str, BackendHealth]:
    if not isinstance(data, Mapping):
        return {}
    return {str(name): BackendHealth.from_dict(value) for name, value in data.items()}
