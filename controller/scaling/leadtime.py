"""How long a new replica of a workload takes to serve: learned from its pods.

A GPU replica is useless until its model is loaded, so the predictive policy must provision
one *lead time* ahead. The spec gives a default; once pods have started under our eyes we
measure it instead: for each pod, the time from its creation (the scale-up, give or take the
ReplicaSet controller's milliseconds) to its ``Ready`` condition turning true. Image pulls and
model loads vary, and being late costs SLO minutes while being early costs a little GPU time, so
the estimate is a high quantile of the recent start-ups, not their mean.

Pure functions over pod dictionaries as the API returns them; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

# Start-ups remembered per workload: enough for a stable p90, bounded for the status object.
MAX_SAMPLES = 20
QUANTILE = 0.9


@dataclass(frozen=True)
class LeadTime:
    """The lead time in force, and where it comes from."""

    seconds: float
    source: Literal["default", "measured"]
    samples: tuple[float, ...] = ()  # recent start-up durations, oldest first
    last_pod_created: float = 0.0  # the newest pod already counted, so no pod counts twice

    def to_status(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "source": self.source,
            "samples": [round(s, 1) for s in self.samples],
            "lastPodCreated": self.last_pod_created,
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None, default_s: float) -> LeadTime:
        """Tolerant of anything: a corrupted status falls back to the default, never to a crash."""
        try:
            samples = tuple(float(s) for s in (raw or {}).get("samples", ()) if math.isfinite(float(s)) and s > 0)
            last = float((raw or {}).get("lastPodCreated", 0.0))
        except (TypeError, ValueError):
            samples, last = (), 0.0
        return estimate(samples, default_s, last)


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def startup_seconds(pod: Mapping[str, Any]) -> tuple[float, float] | None:
    """(created, seconds from creation to Ready) of a pod that became Ready once, else None.

    A pod whose containers restarted became Ready again later: its last transition measures a
    recovery, not a start-up, so it is left out.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    created = _parse_time(meta.get("creationTimestamp"))
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if created is None or not ready or ready.get("status") != "True":
        return None
    if any((c.get("restartCount") or 0) > 0 for c in status.get("containerStatuses") or []):
        return None
    became_ready = _parse_time(ready.get("lastTransitionTime"))
    if became_ready is None or became_ready < created:
        return None
    return created, became_ready - created


def estimate(samples: Iterable[float], default_s: float, last_pod_created: float = 0.0) -> LeadTime:
    kept = tuple(samples)[-MAX_SAMPLES:]
    if not kept:
        return LeadTime(default_s, "default", (), last_pod_created)
    ordered = sorted(kept)
    # Nearest-rank quantile: with few samples this is the maximum, the cautious choice.
    rank = min(len(ordered) - 1, math.ceil(QUANTILE * len(ordered)) - 1)
    return LeadTime(ordered[rank], "measured", kept, last_pod_created)


def learn(previous: LeadTime, pods: Iterable[Mapping[str, Any]], default_s: float) -> LeadTime:
    """Add the start-ups of pods created after the last one counted (see :func:`add_startups`)."""
    return add_startups(previous, (m for pod in pods if (m := startup_seconds(pod)) is not None), default_s)


def add_startups(previous: LeadTime, startups: Iterable[tuple[float, float]], default_s: float) -> LeadTime:
    """Add (created, seconds to Ready) start-ups of replicas created after the last one counted.

    The operator's come from pods, the backtester's from its simulated replicas. A replica that
    turns Ready only after a younger sibling was counted is skipped: start-ups are plentiful, and
    a high-water mark keeps the status small where a set of pod names would not.
    """
    new = sorted((created, seconds) for created, seconds in startups if created > previous.last_pod_created)
    if not new:
        return previous
    return estimate((*previous.samples, *(s for _, s in new)), default_s, new[-1][0])
