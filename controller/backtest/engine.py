"""A first-order model of a fleet of vLLM replicas behind a least-loaded router.

The demo needs waiting/running requests and latencies that react to the replica count the
operator sets, the way a real vLLM fleet would, without a GPU. This module is the pure core of
that simulation: it knows nothing of Kubernetes, HTTP or the wall clock. Time is a float in
seconds that the caller passes in, so the same inputs always give the same outputs.

The model, per replica (one GPU, an 8B-class model):

* it holds at most ``max_seqs`` requests (awaiting prefill, prefilling or decoding);
* prefill has priority over decoding and is not chunked, as in vLLM's V0 scheduler: while a
  request awaits prefill the replica prefills one prompt at a time (FIFO) and decoding pauses;
  the prefill produces the first token;
* otherwise all decoding sequences advance together, one token per step of
  ``step_base_s + step_per_seq_s * n``.

Requests that find no ready replica with a free slot wait in one global FIFO queue at the router
and are dispatched, oldest first, to the ready replica holding the fewest requests as soon as a
slot frees or a replica becomes ready. Scaling follows a ReplicaSet: new replicas cold-start;
a scale-down cancels cold-starting replicas first, then drains the most recently ready ones
(they take no new requests, hand back the prompts they have not started and finish the rest).

The simulation is event-driven with exact event times. Decoding is treated as a fluid between
events (every decoding sequence advances at ``1 / step`` tokens per second), which keeps the
cost per event at O(replicas + log sequences) whatever the load: cheap enough to run in real time
next to an operator and Prometheus on a shared laptop.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count
from typing import NamedTuple

# Float slack when an event is due "now": prefill remainders and decode counters are computed
# from differences of times, so they land a few ulps away from zero.
_EPSILON = 1e-9


def _slack_s(now: float) -> float:
    """How close to ``now`` an event counts as due, in seconds.

    Past 2**17 s (36 h) of simulated time an interval shorter than a few ulps of ``now`` cannot
    be added to it (``now + dt == now``): such an event must be settled now, or time would stop.
    """
    return max(_EPSILON, 4 * math.ulp(now))


@dataclass(frozen=True)
class Request:
    """One inference request: when it reaches the router and how many tokens it moves."""

    arrival_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class EngineParams:
    """The engine model's constants (defaults: one GPU serving an 8B-class model)."""

    max_seqs: int = 128
    prefill_tokens_per_s: float = 12_000.0
    step_base_s: float = 0.012
    step_per_seq_s: float = 0.00012
    cold_start_s: float = 90.0

    def __post_init__(self) -> None:
        if self.max_seqs < 1:
            raise ValueError(f"max_seqs must be >= 1, got {self.max_seqs}")
        if self.prefill_tokens_per_s <= 0 or self.step_base_s <= 0 or self.step_per_seq_s < 0:
            raise ValueError("prefill rate and decode step must be positive")
        if self.cold_start_s < 0:
            raise ValueError(f"cold_start_s must be >= 0, got {self.cold_start_s}")


class ReplicaPhase(enum.Enum):
    STARTING = "Starting"
    READY = "Ready"
    DRAINING = "Draining"


@dataclass(frozen=True)
class FirstToken:
    """A prefill finished: the request's first token is out (vLLM observes TTFT here)."""

    replica_id: int
    request: Request
    ttft_s: float


@dataclass(frozen=True)
class Finished:
    """A request produced its last token."""

    replica_id: int
    request: Request
    e2e_s: float


@dataclass(frozen=True)
class ReplicaGone:
    """A replica released its GPU: a cancelled cold start or a drained replica."""

    replica_id: int


EngineEvent = FirstToken | Finished | ReplicaGone


class ReplicaSnapshot(NamedTuple):
    """What one replica's vLLM ``/metrics`` would show, plus its lifecycle.

    A named tuple rather than a frozen dataclass: the backtest takes one of every replica every
    simulated second, and a tuple is built several times faster."""

    replica_id: int
    phase: ReplicaPhase
    created_s: float
    ready_s: float
    running: int
    awaiting_prefill: int
    prompt_tokens_total: int
    generation_tokens_total: float
    prefill_seconds_total: float = 0.0
    """Time spent prefilling (vLLM's ``request_prefill_time_seconds`` sum)."""
    decoding_seconds_total: float = 0.0
    """Integral of the decoding sequences over time (their mean over a span is the span's running batch)."""


@dataclass(frozen=True)
class FleetSnapshot:
    now_s: float
    router_waiting: int
    replicas: tuple[ReplicaSnapshot, ...]

    @property
    def ready(self) -> tuple[ReplicaSnapshot, ...]:
        return tuple(r for r in self.replicas if r.phase is ReplicaPhase.READY)


class _Decoding(NamedTuple):
    # Ordered by the decode counter value at which the sequence emits its last token, then by
    # admission (``seq`` is unique per replica, so ``request`` is never compared). A tuple: the
    # heap compares them in C.
    finish_at: float
    seq: int
    request: Request


@dataclass
class _Replica:
    replica_id: int
    created_s: float
    ready_s: float
    params: EngineParams
    phase: ReplicaPhase = ReplicaPhase.STARTING
    awaiting: deque[Request] = field(default_factory=deque)
    prefilling: Request | None = None
    prefill_left_s: float = 0.0
    decoding: list[_Decoding] = field(default_factory=list)
    # Tokens emitted so far by a sequence that has decoded since this replica started: a
    # sequence admitted at counter c with g tokens to go finishes when the counter reaches c + g.
    decode_counter: float = 0.0
    prompt_tokens_total: int = 0
    generation_tokens_total: float = 0.0
    prefill_seconds_total: float = 0.0
    decoding_seconds_total: float = 0.0
    # Tie-breaker for sequences that finish at the same counter value: admission order.
    admissions: count[int] = field(default_factory=count)
    # step_s() of the current batch, kept in step with ``decoding`` (recomputed when it changes).
    decode_step_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.decode_step_s = self._compute_step_s()

    @property
    def held(self) -> int:
        return len(self.awaiting) + (self.prefilling is not None) + len(self.decoding)

    @property
    def busy(self) -> bool:
        """Prefilling or decoding: time changes this replica, and it may have an event due."""
        return self.prefilling is not None or bool(self.decoding)

    def _compute_step_s(self) -> float:
        return self.params.step_base_s + self.params.step_per_seq_s * len(self.decoding)

    def next_event_s(self, now: float) -> float:
        if self.prefilling is not None:
            return now + self.prefill_left_s
        if self.decoding:
            left = self.decoding[0].finish_at - self.decode_counter  # tokens to go; <= 0: due now
            return now + left * self.decode_step_s if left > 0.0 else now
        return math.inf

    def admit(self, request: Request) -> None:
        self.awaiting.append(request)
        self._start_next_prefill()

    def run_until(self, now: float, dt: float, slack: float, events: list[EngineEvent]) -> None:
        """Run for the ``dt`` seconds up to ``now``, which the caller guarantees does not cross an
        event, then :meth:`settle` if one is due (``slack`` is :func:`_slack_s` of ``now``)."""
        decoding = self.decoding
        if dt > 0:
            # Sequences paused by a prefill are still running (in the batch), as vLLM counts them.
            self.decoding_seconds_total += dt * len(decoding)
            if self.prefilling is not None:
                self.prefill_left_s -= dt
                self.prefill_seconds_total += dt
            elif decoding:
                tokens_each = dt / self.decode_step_s
                self.decode_counter += tokens_each
                self.generation_tokens_total += tokens_each * len(decoding)
        # settle's own tests, so that it is called only when it has something to emit.
        if (self.prefilling is not None and self.prefill_left_s <= slack) or (
            decoding
            and (
                decoding[0].finish_at <= self.decode_counter + _EPSILON
                or (decoding[0].finish_at - self.decode_counter) * self.decode_step_s <= slack
            )
        ):
            self.settle(now, events, slack)

    def settle(self, now: float, events: list[EngineEvent], slack: float) -> None:
        """Emit the events due at ``now`` (``slack``: :func:`_slack_s` of it): a finished prefill,
        finished sequences."""
        if self.prefilling is not None and self.prefill_left_s <= slack:
            request = self.prefilling
            self.prefilling = None
            self.prompt_tokens_total += request.prompt_tokens
            self.generation_tokens_total += 1
            events.append(FirstToken(self.replica_id, request, now - request.arrival_s))
            if request.output_tokens <= 1:
                events.append(Finished(self.replica_id, request, now - request.arrival_s))
            else:
                finish_at = self.decode_counter + request.output_tokens - 1
                heapq.heappush(self.decoding, _Decoding(finish_at, next(self.admissions), request))
                self.decode_step_s = self._compute_step_s()
            self._start_next_prefill()
        decoding = self.decoding
        while decoding and (
            decoding[0].finish_at <= self.decode_counter + _EPSILON
            or (decoding[0].finish_at - self.decode_counter) * self.decode_step_s <= slack
        ):
            done = heapq.heappop(decoding)
            self.decode_step_s = self._compute_step_s()
            events.append(Finished(self.replica_id, done.request, now - done.request.arrival_s))

    def take_back_unstarted(self) -> list[Request]:
        """A draining replica hands the prompts it has not started back to the router."""
        unstarted = list(self.awaiting)
        self.awaiting.clear()
        return unstarted

    def _start_next_prefill(self) -> None:
        if self.prefilling is None and self.awaiting:
            self.prefilling = self.awaiting.popleft()
            self.prefill_left_s = max(1, self.prefilling.prompt_tokens) / self.params.prefill_tokens_per_s

    def snapshot(self) -> ReplicaSnapshot:
        # Positional, in the order of the fields (keywords cost as much as building the tuple).
        return ReplicaSnapshot(
            self.replica_id,
            self.phase,
            self.created_s,
            self.ready_s,
            (self.prefilling is not None) + len(self.decoding),
            len(self.awaiting),
            self.prompt_tokens_total,
            self.generation_tokens_total,
            self.prefill_seconds_total,
            self.decoding_seconds_total,
        )


class FleetEngine:
    """The simulated fleet: replicas, the router queue and the simulated clock.

    ``initial_replicas`` start ready at time 0 (a warm fleet, as a Deployment that has been
    running). Drive it with :meth:`advance` and :meth:`scale`; read it with :meth:`snapshot`.
    """

    def __init__(self, params: EngineParams, initial_replicas: int = 1) -> None:
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas must be >= 0, got {initial_replicas}")
        self.params = params
        self._now = 0.0
        self._ids = count()
        self._replicas: list[_Replica] = []
        self._queue: deque[Request] = deque()
        for _ in range(initial_replicas):
            replica = self._new_replica(ready_s=0.0)
            replica.phase = ReplicaPhase.READY

    @property
    def now_s(self) -> float:
        return self._now

    @property
    def desired(self) -> int:
        """Replicas that count towards the desired count: starting or ready, not draining."""
        return sum(r.phase is not ReplicaPhase.DRAINING for r in self._replicas)

    def scale(self, replicas: int) -> list[EngineEvent]:
        """Apply a new desired count at the current time, as a ReplicaSet would."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        events: list[EngineEvent] = []
        for _ in range(replicas - self.desired):
            self._new_replica(ready_s=self._now + self.params.cold_start_s)
        surplus = self.desired - replicas
        if surplus > 0:
            for replica in self._scale_down_order()[:surplus]:
                if replica.phase is ReplicaPhase.STARTING:
                    self._replicas.remove(replica)
                    events.append(ReplicaGone(replica.replica_id))
                else:
                    replica.phase = ReplicaPhase.DRAINING
                    self._requeue(replica.take_back_unstarted())
            self._retire_drained(events)
            self._dispatch()
        return events

    def advance(self, until_s: float, arrivals: Iterable[Request] = ()) -> list[EngineEvent]:
        """Run the fleet up to ``until_s``, feeding ``arrivals`` at their arrival times.

        Arrivals must be sorted by time; one that is already in the past (the caller polls the
        trace at a coarser tick) joins the router queue now but keeps its arrival time, so its
        latency still counts from when it arrived.
        """
        if until_s < self._now:
            raise ValueError(f"time runs forward: now {self._now}, asked {until_s}")
        events: list[EngineEvent] = []
        pending = deque(arrivals)
        replicas = self._replicas
        starting_phase, draining_phase = ReplicaPhase.STARTING, ReplicaPhase.DRAINING
        slack, slack_until = _EPSILON, -math.inf
        while True:
            # The earliest of: the target time, the next arrival, each busy replica's next event and
            # each cold start's end. Idle replicas have no event and time changes nothing in them,
            # so only busy ones are advanced and settled (the same arithmetic as for every one).
            now = self._now
            times = [until_s, pending[0].arrival_s] if pending else [until_s]
            busy: list[_Replica] = []
            starting = draining = False
            for replica in replicas:
                if replica.prefilling is not None:
                    times.append(now + replica.prefill_left_s)
                elif replica.decoding:  # next_event_s, inlined: this loop is the backtest's hot spot
                    left = replica.decoding[0].finish_at - replica.decode_counter
                    times.append(now + left * replica.decode_step_s if left > 0.0 else now)
                else:
                    if replica.phase is starting_phase:
                        starting = True
                        times.append(replica.ready_s)
                    elif replica.phase is draining_phase:
                        draining = True
                    continue
                busy.append(replica)
                if replica.phase is draining_phase:
                    draining = True
            next_s = max(min(times), now)
            dt = next_s - now
            self._now = now = next_s
            if now >= slack_until:  # _slack_s depends on now's binade [2**(e - 1), 2**e) only
                slack, slack_until = _slack_s(now), math.ldexp(1.0, math.frexp(now)[1])
            for replica in busy:
                replica.run_until(now, dt, slack, events)
            if starting:
                for replica in replicas:
                    if replica.phase is starting_phase and replica.ready_s <= now:
                        replica.phase = ReplicaPhase.READY
            while pending and pending[0].arrival_s <= now:
                self._queue.append(pending.popleft())
            if self._queue:
                self._dispatch()
            if draining:
                self._retire_drained(events)
            if now >= until_s and not pending and not self._due_now():
                return events

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(
            now_s=self._now,
            router_waiting=len(self._queue),
            replicas=tuple(r.snapshot() for r in self._replicas),
        )

    def _new_replica(self, ready_s: float) -> _Replica:
        replica = _Replica(next(self._ids), created_s=self._now, ready_s=ready_s, params=self.params)
        self._replicas.append(replica)
        return replica

    def _scale_down_order(self) -> list[_Replica]:
        """Cold-starting replicas first (newest first), then the most recently ready."""
        starting = [r for r in self._replicas if r.phase is ReplicaPhase.STARTING]
        ready = [r for r in self._replicas if r.phase is ReplicaPhase.READY]
        starting.sort(key=lambda r: (r.created_s, r.replica_id), reverse=True)
        ready.sort(key=lambda r: (r.ready_s, r.replica_id), reverse=True)
        return starting + ready

    def _requeue(self, requests: list[Request]) -> None:
        merged = sorted([*self._queue, *requests], key=lambda r: r.arrival_s)
        self._queue = deque(merged)

    def _dispatch(self) -> None:
        ready = [r for r in self._replicas if r.phase is ReplicaPhase.READY]
        while self._queue and ready:
            # r.held, inlined: one key per ready replica per request dispatched.
            target = min(
                ready,
                key=lambda r: (len(r.awaiting) + (r.prefilling is not None) + len(r.decoding), r.ready_s, r.replica_id),
            )
            if target.held >= self.params.max_seqs:
                return
            target.admit(self._queue.popleft())

    def _retire_drained(self, events: list[EngineEvent]) -> None:
        for replica in [r for r in self._replicas if r.phase is ReplicaPhase.DRAINING and r.held == 0]:
            self._replicas.remove(replica)
            events.append(ReplicaGone(replica.replica_id))

    def _due_now(self) -> bool:
        now = self._now
        due = now + _slack_s(now)
        return any(r.busy and r.next_event_s(now) <= due for r in self._replicas)
