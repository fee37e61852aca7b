"""Per-replica capacity learned online: the load one ready replica has served within the SLO.

The predictive policy divides the forecast load by this number, so a capacity that is too high
costs SLO minutes and one that is too low costs GPUs. When the spec does not give it, the
controller learns it from what it sees every cycle: the load (in the forecast's unit), the
ready replicas, a latency signal (TTFT p95 for vLLM, queue time for TGI and Triton) and the
queue length. The estimator only trusts what it has seen happen:

* a cycle is **healthy** when every signal is present, the latency is within the SLO and the
  queue is short (at most :data:`SHORT_QUEUE_PER_REPLICA` waiting requests per ready
  replica): its load per ready replica was then served within the SLO, a lower bound of the
  true capacity;
* the estimate is the :data:`CONFIRMATIONS`-th highest healthy load per replica seen: a single
  spike (a scrape glitch, a counter artefact) cannot raise it, only that many cycles can;
* a cycle is **saturated** when the latency is above the SLO *and* the queue is long: the
  replicas failed at that load per replica, so the estimate drops to it (a burst that raises
  the latency for a moment without a queue is not evidence against the capacity);
* a cycle with any signal missing, or no ready replica, changes nothing: missing data never
  grows the capacity (nor shrinks it, which would scale up on an outage of the metrics).

It learns only what the fleet has shown: a fleet never run near its capacity under-estimates it,
which costs GPUs, not SLO. Pure functions; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: Healthy cycles that must have shown a load per replica before the estimate reaches it.
CONFIRMATIONS = 3
#: Waiting requests per ready replica that still count as "no queue" (one request being admitted).
SHORT_QUEUE_PER_REPLICA = 1.0

Source = Literal["spec", "learned", "unknown"]


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class CapacityObservation:
    """One cycle's signals; any of them ``None`` (or NaN, or negative) when missing."""

    load: float | None
    ready_replicas: int
    latency_s: float | None
    queue: float | None

    @property
    def complete(self) -> bool:
        return self.ready_replicas > 0 and all(_usable(v) for v in (self.load, self.latency_s, self.queue))

    @property
    def load_per_replica(self) -> float:
        assert self.load is not None and self.ready_replicas > 0, "only for complete observations"
        return self.load / self.ready_replicas


@dataclass(frozen=True)
class Capacity:
    """The capacity in force, where it comes from, and the evidence behind a learned one.

    ``samples`` are the highest healthy loads per replica seen, highest first, at most
    :data:`CONFIRMATIONS` of them; ``per_replica`` is ``None`` while fewer have been seen.
    """

    per_replica: float | None
    source: Source
    samples: tuple[float, ...] = ()

    @classmethod
    def from_spec(cls, per_replica: float) -> Capacity:
        return cls(per_replica, "spec")

    @classmethod
    def from_samples(cls, samples: tuple[float, ...]) -> Capacity:
        kept = tuple(sorted(samples, reverse=True)[:CONFIRMATIONS])
        if len(kept) < CONFIRMATIONS:
            return cls(None, "unknown", kept)
        return cls(kept[-1], "learned", kept)

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"source": self.source, "samples": [round(s, 3) for s in self.samples]}
        if self.per_replica is not None:
            status["perReplica"] = round(self.per_replica, 3)
        return status

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> Capacity:
        """The learned capacity a status holds; anything malformed gives "unknown", never a crash."""
        try:
            samples = tuple(float(s) for s in (raw or {}).get("samples") or ())
        except (TypeError, ValueError):
            return cls.from_samples(())
        return cls.from_samples(tuple(s for s in samples if math.isfinite(s) and s > 0))


def learn(previous: Capacity, seen: CapacityObservation, latency_slo_s: float) -> Capacity:
    """The estimate after one more cycle (see the module docstring for the rules)."""
    if previous.source == "spec" or not seen.complete:
        return previous
    assert seen.latency_s is not None and seen.queue is not None  # complete
    per_replica = seen.load_per_replica
    if per_replica <= 0:
        return previous  # an idle fleet shows nothing about its capacity
    long_queue = seen.queue > SHORT_QUEUE_PER_REPLICA * seen.ready_replicas
    if seen.latency_s <= latency_slo_s and not long_queue:
        return Capacity.from_samples((*previous.samples, per_replica))
    if seen.latency_s > latency_slo_s and long_queue:
        return Capacity.from_samples(tuple(min(s, per_replica) for s in previous.samples))
    return previous
