"""One GPU replica (a host) of a traffic backtest: its own FIFO queue, prefill and fluid decode.

The autoscaling engine (:mod:`controller.backtest.engine`) routes from one global queue and
ties replicas to a scaling life cycle; a traffic backtest needs what that engine lacks: every
host keeps an unbounded waiting queue of its own (vLLM's), runs at a speed that faults change in
the middle of work, freezes when it hangs, and drops a single attempt when the proxy times it
out. The constants are the same (:class:`~controller.backtest.engine.EngineParams`).

Per host, with time multiplier ``m`` (slow faults / subset speed):

* prefill has priority and is not chunked (vLLM V0): while an attempt waits and fewer than
  ``max_seqs`` sequences decode, the host prefills the oldest waiting attempt at
  ``prefill_tokens_per_s / m`` tokens/s and decoding pauses; the prefill's end is the first token;
* otherwise every decoding sequence advances one token per step of
  ``m * (step_base_s + step_per_seq_s * n)``, as a fluid between events (exact event times);
* a hang stops all progress; work done before a speed change or a hang is kept;
* a sequence limit (our KV-cache saturation fault, not the judge's) lowers ``max_seqs`` while it
  lasts: no prefill starts while that many sequences decode, the sequences above it run on.

The host only moves attempts through its own states and reports first tokens and finished
streams; routing, timeouts, outlier detection and retries belong to the proxy and the simulator.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from controller.backtest.engine import EngineParams

# Where an attempt is. Only the simulator moves attempts between PENDING and DONE.
PENDING = 0  # waiting in its subset's connection pool
QUEUED = 1  # in a host's waiting queue
PREFILLING = 2
DECODING = 3
DONE = 4  # finished or failed


class Attempt:
    """One attempt (``number`` 0 is the first, >= 1 a retry) of one request."""

    __slots__ = (
        "first_token_s",
        "host",
        "number",
        "output_tokens",
        "prompt_tokens",
        "request",
        "sent_s",
        "state",
        "subset",
        "tried",
    )

    def __init__(self, request: int, number: int, subset: int, prompt_tokens: int, output_tokens: int) -> None:
        self.request = request
        self.number = number
        self.subset = subset
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.state = PENDING
        self.host: Host | None = None
        self.sent_s = 0.0
        self.first_token_s = math.nan
        # Hosts the request's earlier attempts were sent to (a retry avoids them).
        self.tried: list[int] = []

    def retry(self) -> Attempt:
        """The next attempt of the same request; it avoids the hosts tried so far."""
        assert self.host is not None
        following = Attempt(self.request, self.number + 1, self.subset, self.prompt_tokens, self.output_tokens)
        following.tried = [*self.tried, self.host.index]
        return following


class Host:
    """One replica's engine state. Times are simulated seconds passed in by the caller."""

    __slots__ = (
        "_admissions",
        "_counter",
        "_decoding",
        "_hangs",
        "_max_seqs_engine",
        "_prefill_end_s",
        "_prefill_left_tokens",
        "_prefill_rate",
        "_queue",
        "_seq_limits",
        "_slow_factors",
        "_speed",
        "_step_base_s",
        "_step_per_seq_s",
        "_synced_s",
        "active",
        "generated",
        "index",
        "max_seqs",
        "multiplier",
        "prefill_tokens_per_s",
        "prefilling",
        "queued",
    )

    def __init__(self, index: int, params: EngineParams, speed: float = 1.0) -> None:
        self.index = index
        self.max_seqs = self._max_seqs_engine = params.max_seqs
        self._seq_limits: list[int] = []
        self.prefill_tokens_per_s = params.prefill_tokens_per_s
        self._step_base_s = params.step_base_s
        self._step_per_seq_s = params.step_per_seq_s
        self._speed = speed
        self._slow_factors: list[float] = []
        self._hangs = 0
        self.multiplier = 1.0 / speed
        self._prefill_rate = self.prefill_tokens_per_s / self.multiplier
        self._queue: deque[Attempt] = deque()
        self.queued = 0
        self.prefilling: Attempt | None = None
        self._prefill_end_s = math.inf
        self._prefill_left_tokens = 0.0
        # A sequence admitted when the counter is c with g tokens to go finishes at counter c + g.
        self._decoding: list[tuple[float, int, Attempt]] = []
        self._counter = 0.0
        self._synced_s = 0.0
        self._admissions = 0
        # Attempts the proxy sent here that have not finished or failed (least request reads it).
        self.active = 0
        # Tokens generated so far, first tokens included (vLLM's generation_tokens_total), up to
        # _synced_s: an observation only, which no decision of the host reads.
        self.generated = 0.0

    @property
    def running(self) -> int:
        """Sequences being prefilled or decoded (vLLM's num_requests_running)."""
        return (self.prefilling is not None) + len(self._decoding)

    def generated_until(self, now: float) -> float:
        """Tokens generated up to ``now`` (the counter a scrape at ``now`` would read), without
        settling anything: decode is a fluid, so between events it adds one token per decoding
        sequence per step, in fractions."""
        if self._decoding and self.prefilling is None and not self._hangs:
            return self.generated + (now - self._synced_s) / self._step_s() * len(self._decoding)
        return self.generated

    def next_event_s(self) -> float:
        """When the next prefill or stream ends if nothing else happens; inf when none will."""
        if self._hangs:
            return math.inf
        if self.prefilling is not None:
            return self._prefill_end_s
        if self._decoding:
            return self._synced_s + (self._decoding[0][0] - self._counter) * self._step_s()
        return math.inf

    def admit(self, attempt: Attempt, now: float) -> None:
        attempt.state = QUEUED
        self._queue.append(attempt)
        self.queued += 1
        if self.prefilling is None and not self._hangs and len(self._decoding) < self.max_seqs:
            self._sync(now)
            self._start_prefill(now)

    def complete(self, now: float) -> tuple[Attempt | None, list[Attempt]]:
        """Settle the event due at ``now``: the attempt that got its first token, the finished ones."""
        finished: list[Attempt] = []
        first = self.prefilling
        if first is not None:
            self.prefilling = None
            self._synced_s = now
            first.first_token_s = now
            self.generated += 1
            if first.output_tokens > 1:
                first.state = DECODING
                entry = (self._counter + first.output_tokens - 1, self._admissions, first)
                heapq.heappush(self._decoding, entry)
                self._admissions += 1
            else:
                finished.append(first)
        else:
            self.generated += (self._decoding[0][0] - self._counter) * len(self._decoding)
            self._counter = self._decoding[0][0]
            self._synced_s = now
            while self._decoding and self._decoding[0][0] <= self._counter:
                finished.append(heapq.heappop(self._decoding)[2])
        if self._queue and len(self._decoding) < self.max_seqs:
            self._start_prefill(now)
        return first, finished

    def drop(self, attempt: Attempt, now: float) -> None:
        """Forget an attempt that has no first token yet (the proxy timed it out)."""
        if attempt is self.prefilling:
            self.prefilling = None
            self._synced_s = now
            if not self._hangs and len(self._decoding) < self.max_seqs:
                self._start_prefill(now)
        else:
            self.queued -= 1  # left in the deque, skipped when its turn comes
        attempt.state = DONE

    def set_slow(self, factor: float, active: bool, now: float) -> None:
        """A slow fault with ``factor`` starts (``active``) or ends on this host."""
        if active:
            self._slow_factors.append(factor)
        else:
            self._slow_factors.remove(factor)
        self._sync(now)
        left = self._prefill_tokens_left(now)
        self.multiplier = math.prod(self._slow_factors) / self._speed
        self._prefill_rate = self.prefill_tokens_per_s / self.multiplier
        if self.prefilling is not None and not self._hangs:
            self._prefill_end_s = now + left / self._prefill_rate

    def set_hang(self, active: bool, now: float) -> None:
        """A hang fault starts (``active``) or ends on this host."""
        if active:
            self._sync(now)
            if not self._hangs and self.prefilling is not None:
                self._prefill_left_tokens = self._prefill_tokens_left(now)
            self._hangs += 1
            return
        self._hangs -= 1
        if self._hangs:
            return
        self._synced_s = now
        if self.prefilling is not None:
            self._prefill_end_s = now + self._prefill_left_tokens / self._prefill_rate
        elif self._queue and len(self._decoding) < self.max_seqs:
            self._start_prefill(now)

    def set_seq_limit(self, limit: int, active: bool, now: float) -> None:
        """A sequence limit of ``limit`` starts (``active``) or ends on this host; the lowest active one applies."""
        if active:
            self._seq_limits.append(limit)
        else:
            self._seq_limits.remove(limit)
        self.max_seqs = min(self._seq_limits, default=self._max_seqs_engine)
        if self.prefilling is None and not self._hangs and self._queue and len(self._decoding) < self.max_seqs:
            self._sync(now)
            self._start_prefill(now)

    def _step_s(self) -> float:
        return self.multiplier * (self._step_base_s + self._step_per_seq_s * len(self._decoding))

    def _sync(self, now: float) -> None:
        """Account the decode progress up to ``now`` (decoding runs only when nothing blocks it)."""
        if self._decoding and self.prefilling is None and not self._hangs:
            steps = (now - self._synced_s) / self._step_s()
            self._counter += steps
            self.generated += steps * len(self._decoding)
        self._synced_s = now

    def _prefill_tokens_left(self, now: float) -> float:
        if self.prefilling is None:
            return 0.0
        if self._hangs:
            return self._prefill_left_tokens
        return (self._prefill_end_s - now) * self._prefill_rate

    def _start_prefill(self, now: float) -> None:
        while self._queue:
            attempt = self._queue.popleft()
            if attempt.state == QUEUED:
                self.queued -= 1
                attempt.state = PREFILLING
                self.prefilling = attempt
                self._prefill_end_s = now + attempt.prompt_tokens / self._prefill_rate
                return
