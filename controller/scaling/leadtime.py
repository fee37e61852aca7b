"""How long a new replica of a workload takes to serve: learned from its pods.

A GPU replica is useless until its model is loaded, so the predictive policy must provision
one *lead time* ahead. The spec gives a default; once pods have started under our eyes we
measure it instead, from each pod's conditions, in two parts:

* **start-up**: from the pod's scheduling to its ``Ready`` condition turning true (image pull,
  model load). Image pulls and model loads vary, and being late costs SLO minutes while being
  early costs a little GPU time, so the estimate is a high quantile of the recent start-ups.
* **scheduling delay** (GPU supply): from the pod's creation to its ``PodScheduled`` condition
  turning true. A pod that fits on a free node is bound within a second or two; one that finds
  no free GPU stays ``Pending`` (``PodScheduled=False``, reason ``Unschedulable``) until a node
  autoscaler has provisioned a node, which takes minutes. That wait belongs to the lead time
  only while the cluster is *short* of nodes for the workload: a pod of it is ``Unschedulable``
  now, or the pod scheduled last had to wait. The wait then expected is the high quantile of the
  recent waits, and at least as long as the oldest pod pending now (or scheduled since, not yet
  counted) has already waited. Once a pod was scheduled promptly again, nodes are free: the lead
  time is the start-up alone.

The lead time is start-up plus the expected scheduling delay, bounded by the longest lead time a
spec may set. Pods are read from the API as they are (no Events needed), and each pod counts
once, when Ready. Pure functions over pod dictionaries and an explicit ``now``; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

# Samples remembered per workload: enough for a stable p90, bounded for the status object.
MAX_SAMPLES = 20
QUANTILE = 0.9
#: A scheduling delay longer than this was a wait for a node, not the scheduler's own latency:
#: Kubernetes' scalability SLO puts the p99 start-up of a *schedulable* pod (creation to running,
#: image pull excluded) at 5 s, so a pod bound later was not schedulable when it was created.
PROMPT_SCHEDULING_S = 5.0
#: The longest lead time in force: the maximum of ``spec.forecast.leadTimeSeconds``. A pod that
#: stays Unschedulable for good must not stretch the forecast window without end.
MAX_LEAD_TIME_S = 3600.0


@dataclass(frozen=True)
class PodTimes:
    """What one pod's conditions say about its way to serving, in Unix seconds."""

    created: float
    scheduled: float | None
    """When ``PodScheduled`` turned true; ``None`` while pending or when the pod does not say."""
    ready: float | None
    """When ``Ready`` turned true on the pod's first start; ``None`` before, or after a restart."""
    unschedulable: bool = False
    """Pending now because no node fits it (``PodScheduled=False``, reason ``Unschedulable``)."""

    @property
    def wait(self) -> float | None:
        """How long the pod waited for a node: ``None`` when not scheduled yet, 0 when promptly."""
        if self.scheduled is None:
            return None
        delay = max(0.0, self.scheduled - self.created)
        return delay if delay > PROMPT_SCHEDULING_S else 0.0

    @property
    def startup(self) -> float | None:
        """Seconds from scheduling to Ready (from creation, when the pod was scheduled promptly)."""
        if self.ready is None:
            return None
        began = self.created + (self.wait or 0.0)
        return self.ready - began if self.ready >= began else None


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_times(pod: Mapping[str, Any]) -> PodTimes | None:
    """The pod's creation, scheduling and Ready times; ``None`` for a pod being deleted or without a creation time.

    A pod whose containers restarted became Ready again later: its last transition measures a
    recovery, not a start-up, so its ``ready`` is left out. A pod without a ``PodScheduled``
    time (some test doubles write only ``Ready``) counts as scheduled when it was created.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    created = _parse_time(meta.get("creationTimestamp"))
    if created is None or meta.get("deletionTimestamp"):
        return None
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    scheduled_condition = conditions.get("PodScheduled") or {}
    unschedulable = (
        scheduled_condition.get("status") == "False" and scheduled_condition.get("reason") == "Unschedulable"
    )
    ready_condition = conditions.get("Ready") or {}
    ready = _parse_time(ready_condition.get("lastTransitionTime")) if ready_condition.get("status") == "True" else None
    if any((c.get("restartCount") or 0) > 0 for c in status.get("containerStatuses") or []):
        ready = None
    if scheduled_condition.get("status") == "True":
        scheduled = _parse_time(scheduled_condition.get("lastTransitionTime"))
    elif scheduled_condition or unschedulable:
        scheduled = None
    else:
        scheduled = created if ready is not None else None
    return PodTimes(created, scheduled, ready, unschedulable)


@dataclass(frozen=True)
class Supply:
    """What the pods show now about free nodes for the workload's next replica."""

    pending: int = 0
    """Pods Unschedulable now."""
    short: bool = False
    """A pod is Unschedulable now, or the pod scheduled last had to wait for a node."""
    waited_s: float = 0.0
    """The longest wait of this shortage not in the samples yet: pods pending now (so far) or
    scheduled after waiting and not Ready yet."""


def observe_supply(pods: Sequence[PodTimes], counted_until: float, now: float) -> Supply:
    """The supply seen in the pods; ``counted_until`` is the creation time of the newest pod already counted."""
    pending = [p for p in pods if p.unschedulable]
    scheduled = [p for p in pods if p.scheduled is not None]
    last = max((p.scheduled for p in scheduled if p.scheduled is not None), default=None)
    last_waited = any((p.wait or 0.0) > 0 for p in scheduled if p.scheduled == last)
    uncounted_waits = [p.wait or 0.0 for p in scheduled if p.created > counted_until and p.ready is None]
    waited = max([now - p.created for p in pending] + uncounted_waits, default=0.0)
    return Supply(len(pending), bool(pending) or last_waited, max(0.0, waited))


def _high_quantile(samples: Sequence[float]) -> float:
    """Nearest-rank p90: with few samples this is the maximum, the cautious choice."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(QUANTILE * len(ordered)) - 1)]


def _samples(raw: Any) -> tuple[float, ...]:
    return tuple(float(s) for s in raw or () if math.isfinite(float(s)) and float(s) >= 0)[-MAX_SAMPLES:]


@dataclass(frozen=True)
class LeadTime:
    """The lead time in force and its evidence: recent start-ups, recent waits for a node, the supply now."""

    default_s: float
    startups: tuple[float, ...] = ()
    """Recent start-up durations (scheduled to Ready), oldest first."""
    waits: tuple[float, ...] = ()
    """Recent waits for a node (creation to scheduled) of pods that had to wait, oldest first."""
    last_pod_created: float = 0.0
    """The newest pod already counted, so no pod counts twice."""
    supply: Supply = Supply()

    @property
    def source(self) -> Literal["default", "measured"]:
        return "measured" if self.startups else "default"

    @property
    def startup_s(self) -> float:
        return _high_quantile(self.startups) if self.startups else self.default_s

    @property
    def scheduling_delay_s(self) -> float:
        """The wait for a node a new replica is expected to have: 0 while nodes are free."""
        if not self.supply.short:
            return 0.0
        return max(_high_quantile(self.waits) if self.waits else 0.0, self.supply.waited_s)

    @property
    def seconds(self) -> float:
        return min(MAX_LEAD_TIME_S, self.startup_s + self.scheduling_delay_s)

    def to_status(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "source": self.source,
            "samples": [round(s, 1) for s in self.startups],
            "lastPodCreated": self.last_pod_created,
            "startupSeconds": round(self.startup_s, 1),
            "supply": "Short" if self.supply.short else "Available",
            "pendingReplicas": self.supply.pending,
            "schedulingDelaySeconds": round(self.scheduling_delay_s, 1),
            "schedulingSamples": [round(s, 1) for s in self.waits],
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None, default_s: float) -> LeadTime:
        """Tolerant of anything: a corrupted status falls back to the default, never to a crash.

        The supply is restored as it was last seen (the delay it added included), for a cycle
        that cannot list the pods.
        """
        raw = raw or {}
        try:
            startups, waits = _samples(raw.get("samples")), _samples(raw.get("schedulingSamples"))
            last = float(raw.get("lastPodCreated", 0.0))
            short = raw.get("supply") == "Short"
            supply = Supply(
                pending=max(0, int(raw.get("pendingReplicas", 0))),
                short=short,
                waited_s=max(0.0, float(raw.get("schedulingDelaySeconds", 0.0))) if short else 0.0,
            )
        except (TypeError, ValueError):
            return cls(default_s)
        return cls(default_s, startups, waits, last, supply)


def pods_may_tell_more(spec_replicas: int, ready_replicas: int, previous_status: Mapping[str, Any]) -> bool:
    """Whether listing the target's pods may add to what the lead time knows.

    Not while the workload is settled, all its replicas Ready now and at the previous cycle
    (``previous_status``: the policy's ``currentReplicas`` and ``readyReplicas``): no pod is
    pending or starting, and every start-up that finished was seen by the cycle that saw its pod
    unsettled. So a fleet at rest costs the API server no pod list per cycle.
    """
    before = (previous_status.get("currentReplicas"), previous_status.get("readyReplicas"))
    return not (spec_replicas == ready_replicas and before == (spec_replicas, ready_replicas))


def learn(previous: LeadTime, pods: Iterable[Mapping[str, Any]], default_s: float, now: float) -> LeadTime:
    """Add the start-ups and waits of pods created after the last one counted; see the supply now."""
    times = [t for pod in pods if (t := pod_times(pod)) is not None]
    started = [(t.created, startup, t.wait or 0.0) for t in times if (startup := t.startup) is not None]
    counted = _count(previous, started, default_s)
    return replace(counted, supply=observe_supply(times, counted.last_pod_created, now))


def add_startups(previous: LeadTime, startups: Iterable[tuple[float, float]], default_s: float) -> LeadTime:
    """Add (created, seconds to Ready) start-ups of replicas that never waited for a node: the backtester's."""
    return _count(previous, [(created, seconds, 0.0) for created, seconds in startups], default_s)


def _count(previous: LeadTime, started: Iterable[tuple[float, float, float]], default_s: float) -> LeadTime:
    """Add (created, start-up, wait for a node) of replicas created after the last one counted.

    The operator's come from pods, the backtester's from its simulated replicas. A replica that
    turns Ready only after a younger sibling was counted is skipped: start-ups are plentiful, and
    a high-water mark keeps the status small where a set of pod names would not.
    """
    new = sorted(replica for replica in started if replica[0] > previous.last_pod_created)
    return replace(
        previous,
        default_s=default_s,
        startups=(*previous.startups, *(s for _, s, _ in new))[-MAX_SAMPLES:],
        waits=(*previous.waits, *(w for _, _, w in new if w > 0))[-MAX_SAMPLES:],
        last_pod_created=new[-1][0] if new else previous.last_pod_created,
    )
