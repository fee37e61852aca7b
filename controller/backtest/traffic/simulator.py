"""The event loop of a traffic backtest: requests, faults, proxies, hosts and settings over time.

It follows the judge's README (``bench/traffic/README.md`` of the shared benchmark folder) rule by rule: subset choice
by weight, the pool, least-request host choice, error faults, first-token timeouts, outlier
detection and ejection sweeps, retries after a host 5xx, and timeline or controller changes.
Events at equal times run in the README's order, whatever their source:

    changes (timeline, controller) < fault starts/ends < ejection sweeps < engine events
    < timeouts < retries < arrivals,

and events of one kind in the order they were scheduled. Timeouts and retries are scheduled at a
fixed delay after an event, so their times never decrease and each lives in a FIFO; arrivals are
the scenario's sorted requests; the rest share one heap. Every random draw is a function of
(seed, request, attempt, stream) (:mod:`controller.backtest.traffic.draws`).

The loop records what the scores need (per request: outcome, latencies, attempts, whether an
attempt met a faulty host; every ejection; every change applied) and, for a controller, the
per-window tallies it observes. It does not score: :mod:`controller.backtest.traffic.score` does.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np

from controller.backtest.engine import EngineParams
from controller.backtest.traffic.draws import (
    ERROR_STREAM,
    FIRST_PICK_STREAM,
    SECOND_PICK_STREAM,
    SUBSET_STREAM,
    draw_from_key,
    first_attempt_draws,
    request_key,
)
from controller.backtest.traffic.engine import DONE, PENDING, PREFILLING, QUEUED, Attempt, Host
from controller.backtest.traffic.observe import HostTally, Observation, SubsetTally
from controller.backtest.traffic.proxy import ProxyParams, SubsetProxy
from controller.backtest.traffic.scenario import CANARY, Fault, Scenario
from controller.backtest.traffic.settings import Change, ProxySettings
from controller.backtest.traffic.timeline import Controller, Timeline

# Event kinds in their order at equal times (timeouts, retries and arrivals have their own queues).
_CHANGE, _FAULT, _SWEEP, _ENGINE = 0, 1, 2, 3
# Payloads of _CHANGE events.
_TIMELINE_ROW, _CONTROLLER_TICK = 0, 1

#: Told every response of a host, in time order, as ``(time_s, subset index, host index, status)``:
#: the sequence Envoy's outlier detection counts (a first token is a 200, a host failure its 5xx, a
#: first-token timeout a 504), whether or not the host is ejected.
ResponseHook = Callable[[float, int, int, int], None]

SUCCESS = 200
NO_ROUTE = 503
OVERFLOW = 503
NO_HEALTHY_UPSTREAM = 503
TIMEOUT = 504


@dataclass(frozen=True)
class Ejection:
    """One ejection of a host; ``end_s`` is None when the host was still out when the run ended."""

    subset: str
    host: int
    start_s: float
    end_s: float | None


@dataclass
class RunRecord:
    """What happened in one run, per request (index order) and per ejection and change."""

    scenario: Scenario
    subset: np.ndarray  # subset index chosen at arrival, -1 when no route
    status: np.ndarray  # 200, or the status of the failure the client saw
    local: np.ndarray  # failed by the proxy itself
    ttft_s: np.ndarray  # NaN unless successful
    tpot_s: np.ndarray  # NaN unless successful with more than one output token
    attempts: np.ndarray
    faulty: np.ndarray  # an attempt was sent to a host with an active fault
    canary_faulty: np.ndarray  # ... to a canary host with an active fault
    ejections: list[Ejection] = field(default_factory=list)
    decisions: list[Change] = field(default_factory=list)
    final_settings: dict[str, ProxySettings] = field(default_factory=dict)


class Simulation:
    """One run of a scenario under a timeline, optionally with a controller on top."""

    def __init__(
        self,
        scenario: Scenario,
        timeline: Timeline,
        controller: Controller | None = None,
        engine: EngineParams | None = None,
        proxy: ProxyParams | None = None,
        seed: int | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.scenario = scenario
        self.on_response = on_response
        self.engine = engine or EngineParams()
        self.params = proxy or ProxyParams()
        self.seed = scenario.seed if seed is None else seed
        self.controller = controller
        requests = scenario.requests
        self.arrival_s: list[float] = requests.arrival_s.tolist()
        self.prompt_tokens: list[int] = requests.prompt_tokens.tolist()
        self.output_tokens: list[int] = requests.output_tokens.tolist()
        n = len(self.arrival_s)
        self.first_draws = first_attempt_draws(self.seed, n).tolist()
        self.proxies: list[SubsetProxy] = []
        for index, subset in enumerate(scenario.subsets):
            hosts = [Host(h, self.engine, subset.speed) for h in range(subset.hosts)]
            self.proxies.append(SubsetProxy(index, subset.name, hosts, subset.settings, self.params))
        self.by_name = {p.name: p for p in self.proxies}
        self.canary = self.by_name[CANARY].index if CANARY in self.by_name else -1
        # Per host (subset, host): active error faults as (fault order, p, status), active fault count.
        self.error_faults: dict[tuple[int, int], list[tuple[int, float, int]]] = {}
        self.faults_active: dict[tuple[int, int], int] = {}
        self.host_tallies = [[HostTally() for _ in p.hosts] for p in self.proxies]
        self.subset_tallies = [SubsetTally() for _ in self.proxies]
        self.window_start_s = 0.0
        # Per request.
        self.chosen = [-1] * n
        self.status = [0] * n
        self.local = [False] * n
        self.first_token = [math.nan] * n
        self.finish = [math.nan] * n
        self.attempts = [0] * n
        self.faulty = [False] * n
        self.canary_faulty = [False] * n
        self.keys: dict[int, int] = {}
        self.done = 0
        # Event sources.
        self.heap: list[tuple[Any, ...]] = []
        self.seq = count()
        self.timeouts: deque[tuple[float, Attempt]] = deque()
        self.retries: deque[tuple[float, Attempt]] = deque()
        self.scheduled_s: dict[Host, float] = {}
        self.ejections: list[Ejection] = []
        self.open_ejections: dict[tuple[int, int], int] = {}
        self.decisions: list[Change] = []
        self._init_settings(timeline)
        self._weights_changed()
        self._schedule_initial_events(timeline)

    # ----------------------------------------------------------------- setup
    def _init_settings(self, timeline: Timeline) -> None:
        for change in timeline.initial():
            proxy = self._proxy(change.subset)
            proxy.settings = proxy.settings.with_values({change.field: change.value})
        for proxy in self.proxies:
            for name, value in proxy.settings.as_dict().items():
                self.decisions.append(Change(0.0, proxy.name, name, value))

    def _schedule_initial_events(self, timeline: Timeline) -> None:
        duration = self.scenario.duration_s
        for change in timeline.scheduled(duration):
            self._proxy(change.subset)
            self._push(change.time_s, _CHANGE, _TIMELINE_ROW, change)
        if self.controller is not None:
            interval = self.controller.interval_s
            if interval <= 0:
                raise ValueError(f"a controller's interval must be > 0, got {interval}")
            tick = 1
            while tick * interval <= duration:
                self._push(tick * interval, _CHANGE, _CONTROLLER_TICK, None)
                tick += 1
        transitions: list[tuple[float, int, bool, Fault]] = []
        for order, fault in enumerate(self.scenario.faults):
            for start, end in fault.spans():
                transitions.append((start, order, True, fault))
                transitions.append((end, order, False, fault))
        for time_s, order, active, fault in sorted(transitions, key=lambda t: (t[0], t[1], t[2])):
            self._push(time_s, _FAULT, order, (fault, active))
        for proxy in self.proxies:
            self._push(proxy.settings.interval_s, _SWEEP, proxy.index, None)

    def _push(self, time_s: float, kind: int, tag: int, payload: object) -> None:
        heapq.heappush(self.heap, (time_s, kind, next(self.seq), tag, payload))

    def _proxy(self, name: str) -> SubsetProxy:
        if name not in self.by_name:
            raise ValueError(f"unknown subset {name!r}; known: {', '.join(self.by_name)}")
        return self.by_name[name]

    # ------------------------------------------------------------------ loop
    def run(self) -> RunRecord:
        """Run until every request has ended and the duration is over (call once)."""
        n = len(self.arrival_s)
        arrivals = self.arrival_s
        heap, timeouts, retries = self.heap, self.timeouts, self.retries
        duration = self.scenario.duration_s
        next_request = 0
        while True:
            arrival = arrivals[next_request] if next_request < n else math.inf
            at_heap = heap[0][0] if heap else math.inf
            at_timeout = timeouts[0][0] if timeouts else math.inf
            at_retry = retries[0][0] if retries else math.inf
            if self.done == n and next_request == n and at_heap > duration:
                break
            if at_heap <= at_timeout and at_heap <= at_retry and at_heap <= arrival:
                now, kind, _, tag, payload = heapq.heappop(heap)
                if kind == _ENGINE:
                    self._engine_event(payload, now)
                elif kind == _SWEEP:
                    self._sweep(self.proxies[tag], now)
                elif kind == _FAULT:
                    self._fault(tag, payload[0], payload[1], now)
                elif tag == _TIMELINE_ROW:
                    self._apply(payload.subset, payload.field, payload.value, now)
                else:
                    self._tick(now)
            elif at_timeout <= at_retry and at_timeout <= arrival:
                now, attempt = timeouts.popleft()
                self._timeout(attempt, now)
            elif at_retry <= arrival:
                now, attempt = retries.popleft()
                self._enter_pool(attempt, now)
            else:
                now = arrival
                self._arrive(next_request, now)
                next_request += 1
        return self._record()

    # ---------------------------------------------------------------- events
    def _arrive(self, request: int, now: float) -> None:
        if self.total_weight <= 0:
            self._fail_request(request, -1, NO_ROUTE, True)
            return
        x = self.first_draws[SUBSET_STREAM][request] * self.total_weight
        subset = self.last_weighted
        for index, bound in enumerate(self.cumulative_weights):
            if x < bound:
                subset = index
                break
        self.chosen[request] = subset
        self.subset_tallies[subset].requests += 1
        attempt = Attempt(request, 0, subset, self.prompt_tokens[request], self.output_tokens[request])
        self._enter_pool(attempt, now)

    def _enter_pool(self, attempt: Attempt, now: float) -> None:
        proxy = self.proxies[attempt.subset]
        tally = self.subset_tallies[attempt.subset]
        self.attempts[attempt.request] += 1
        tally.attempts += 1
        tally.retries += attempt.number > 0
        waits = proxy.must_wait()
        if waits and proxy.pending_full():
            attempt.state = DONE
            self._fail_request(attempt.request, attempt.subset, OVERFLOW, True)
            return
        self.timeouts.append((now + self.params.request_timeout_s, attempt))
        if waits:
            proxy.wait(attempt)
        else:
            self._send(proxy, attempt, now)

    def _send(self, proxy: SubsetProxy, attempt: Attempt, now: float) -> None:
        request, number = attempt.request, attempt.number
        if number == 0:
            first_draw = self.first_draws[FIRST_PICK_STREAM][request]
            second_draw = self.first_draws[SECOND_PICK_STREAM][request]
        else:
            key = self._key(request)
            first_draw = draw_from_key(key, number, FIRST_PICK_STREAM)
            second_draw = draw_from_key(key, number, SECOND_PICK_STREAM)
        index = proxy.pick_host(first_draw, second_draw, attempt.tried)
        if index is None:
            attempt.state = DONE
            self._fail_request(request, proxy.index, NO_HEALTHY_UPSTREAM, True)
            return
        host = proxy.hosts[index]
        attempt.host = host
        attempt.sent_s = now
        proxy.in_flight += 1
        host.active += 1
        self.host_tallies[proxy.index][index].sent += 1
        where = (proxy.index, index)
        if self.faults_active.get(where):
            self.faulty[request] = True
            if proxy.index == self.canary:
                self.canary_faulty[request] = True
            errors = self.error_faults.get(where)
            if errors:
                _, p, status = max(errors, key=lambda e: (e[1], -e[0]))
                threshold = (
                    self.first_draws[ERROR_STREAM][request]
                    if number == 0
                    else draw_from_key(self._key(request), number, ERROR_STREAM)
                )
                if threshold < p:
                    self._host_failure(proxy, attempt, status, now)
                    return
        host.admit(attempt, now)
        self._reschedule(host)

    def _engine_event(self, host: Host, now: float) -> None:
        if self.scheduled_s.get(host) != now:
            return  # superseded by a later schedule of this host
        del self.scheduled_s[host]
        first, finished = host.complete(now)
        self._reschedule(host)
        if first is not None:
            self._first_token(first, now)
        for attempt in finished:
            self._finish(attempt, now)

    def _first_token(self, attempt: Attempt, now: float) -> None:
        proxy = self.proxies[attempt.subset]
        host = attempt.host
        assert host is not None
        proxy.on_response(host.index, SUCCESS, now)
        if self.on_response is not None:
            self.on_response(now, proxy.index, host.index, SUCCESS)
        tally = self.host_tallies[proxy.index][host.index]
        tally.responses += 1
        tally.ttft_s.append(now - attempt.sent_s)
        request = attempt.request
        self.first_token[request] = now
        subset_tally = self.subset_tallies[proxy.index]
        subset_tally.streams_started += 1
        subset_tally.client_ttft_s.append(now - self.arrival_s[request])

    def _finish(self, attempt: Attempt, now: float) -> None:
        proxy = self.proxies[attempt.subset]
        host = attempt.host
        assert host is not None
        attempt.state = DONE
        request = attempt.request
        self.finish[request] = now
        self.status[request] = SUCCESS
        self.done += 1
        if attempt.output_tokens > 1:
            tpot = (now - attempt.first_token_s) / (attempt.output_tokens - 1)
            self.host_tallies[proxy.index][host.index].tpot_s.append(tpot)
            self.subset_tallies[proxy.index].client_tpot_s.append(tpot)
        proxy.in_flight -= 1
        host.active -= 1
        self._dispatch(proxy, now)

    def _timeout(self, attempt: Attempt, now: float) -> None:
        state = attempt.state
        if state == PENDING:
            proxy = self.proxies[attempt.subset]
            proxy.pending_count -= 1  # left in the FIFO, skipped when its turn comes
            attempt.state = DONE
            self._fail_request(attempt.request, attempt.subset, TIMEOUT, True)
        elif state in (QUEUED, PREFILLING):
            host = attempt.host
            assert host is not None
            host.drop(attempt, now)
            self._reschedule(host)
            self.host_tallies[attempt.subset][host.index].timeouts += 1
            self._host_failure(self.proxies[attempt.subset], attempt, TIMEOUT, now)

    def _host_failure(self, proxy: SubsetProxy, attempt: Attempt, status: int, now: float) -> None:
        """A host's 5xx: outlier detection, then the slot, then a retry, then waiting attempts."""
        host = attempt.host
        assert host is not None
        attempt.state = DONE
        if proxy.on_response(host.index, status, now):
            self._ejected(proxy, host.index, now)
        if self.on_response is not None:
            self.on_response(now, proxy.index, host.index, status)
        tally = self.host_tallies[proxy.index][host.index]
        tally.responses += 1
        tally.errors_5xx += 1
        proxy.in_flight -= 1
        host.active -= 1
        if attempt.number < proxy.settings.maxRetries:
            self.retries.append((now + self.params.retry_backoff_s, attempt.retry()))
        else:
            self._fail_request(attempt.request, proxy.index, status, False)
        self._dispatch(proxy, now)

    def _dispatch(self, proxy: SubsetProxy, now: float) -> None:
        """Send waiting attempts, oldest first, while the pool has slots.

        An attempt that fails at once (an error fault) dispatches again from inside this loop;
        the guard turns that into the loop's next turn, in the same order, without recursion.
        """
        if proxy.dispatching:
            return
        proxy.dispatching = True
        while proxy.pending_count and proxy.has_free_slot():
            self._send(proxy, proxy.next_waiting(), now)
        proxy.dispatching = False

    def _fail_request(self, request: int, subset: int, status: int, local: bool) -> None:
        self.status[request] = status
        self.local[request] = local
        self.done += 1
        if subset >= 0:
            self.subset_tallies[subset].fail(status, local)

    def _ejected(self, proxy: SubsetProxy, host: int, now: float) -> None:
        self.open_ejections[(proxy.index, host)] = len(self.ejections)
        self.ejections.append(Ejection(proxy.name, host, now, None))
        self.subset_tallies[proxy.index].ejections += 1

    def _sweep(self, proxy: SubsetProxy, now: float) -> None:
        for host in proxy.sweep(now):
            opened = self.open_ejections.pop((proxy.index, host))
            ejection = self.ejections[opened]
            self.ejections[opened] = Ejection(ejection.subset, ejection.host, ejection.start_s, now)
        self._push(now + proxy.settings.interval_s, _SWEEP, proxy.index, None)

    def _fault(self, order: int, fault: Fault, active: bool, now: float) -> None:
        proxy = self.by_name[fault.subset]
        for index in fault.hosts:
            where = (proxy.index, index)
            host = proxy.hosts[index]
            self.faults_active[where] = self.faults_active.get(where, 0) + (1 if active else -1)
            if fault.kind == "error":
                errors = self.error_faults.setdefault(where, [])
                entry = (order, fault.p, fault.status)
                if active:
                    errors.append(entry)
                else:
                    errors.remove(entry)
            elif fault.kind == "slow":
                host.set_slow(fault.factor, active, now)
                self._reschedule(host)
            elif fault.kind == "seq_limit":
                host.set_seq_limit(fault.max_seqs, active, now)
                self._reschedule(host)
            else:
                host.set_hang(active, now)
                self._reschedule(host)

    def _reschedule(self, host: Host) -> None:
        when = host.next_event_s()
        if when == math.inf:
            self.scheduled_s.pop(host, None)
        elif self.scheduled_s.get(host) != when:
            self.scheduled_s[host] = when
            heapq.heappush(self.heap, (when, _ENGINE, next(self.seq), 0, host))

    # ------------------------------------------------------- settings changes
    def _apply(self, subset: str, name: str, value: float, now: float) -> None:
        proxy = self._proxy(subset)
        proxy.settings = proxy.settings.with_values({name: value})
        self.decisions.append(Change(now, subset, name, getattr(proxy.settings, name)))
        if name == "weight":
            self._weights_changed()
        elif name in ("http2MaxRequests", "http1MaxPendingRequests"):
            self._dispatch(proxy, now)

    def _weights_changed(self) -> None:
        bounds: list[float] = []
        total = 0.0
        for proxy in self.proxies:
            total += proxy.settings.weight
            bounds.append(total)
        self.cumulative_weights = bounds
        self.total_weight = total
        # x = draw * total can round up to total itself: it then goes to the last weighted subset.
        self.last_weighted = max((p.index for p in self.proxies if p.settings.weight > 0), default=-1)

    def _tick(self, now: float) -> None:
        assert self.controller is not None
        for update in self.controller.decide(self._observe(now)):
            self._apply(update.subset, update.field, update.value, now)

    def _observe(self, now: float) -> Observation:
        windows = []
        for proxy, tally, host_tallies in zip(self.proxies, self.subset_tallies, self.host_tallies, strict=True):
            hosts = tuple(
                t.window(h, proxy.ejected[h.index], now) for h, t in zip(proxy.hosts, host_tallies, strict=True)
            )
            windows.append(tally.window(proxy.name, proxy.settings, proxy.in_flight, proxy.pending_count, hosts))
            tally.reset()
            for host_tally in host_tallies:
                host_tally.reset()
        observation = Observation(self.window_start_s, now, tuple(windows))
        self.window_start_s = now
        return observation

    # ---------------------------------------------------------------- output
    def _key(self, request: int) -> int:
        key = self.keys.get(request)
        if key is None:
            key = self.keys[request] = request_key(self.seed, request)
        return key

    def _record(self) -> RunRecord:
        output = np.asarray(self.output_tokens, dtype=np.int64)
        arrival = np.asarray(self.arrival_s, dtype=float)
        status = np.asarray(self.status, dtype=np.int64)
        success = status == SUCCESS
        first = np.asarray(self.first_token, dtype=float)
        finish = np.asarray(self.finish, dtype=float)
        ttft = np.where(success, first - arrival, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = np.where(success & (output > 1), (finish - first) / (output - 1), np.nan)
        return RunRecord(
            scenario=self.scenario,
            subset=np.asarray(self.chosen, dtype=np.int64),
            status=status,
            local=np.asarray(self.local, dtype=bool),
            ttft_s=ttft,
            tpot_s=tpot,
            attempts=np.asarray(self.attempts, dtype=np.int64),
            faulty=np.asarray(self.faulty, dtype=bool),
            canary_faulty=np.asarray(self.canary_faulty, dtype=bool),
            ejections=list(self.ejections),
            decisions=list(self.decisions),
            final_settings={p.name: p.settings for p in self.proxies},
        )
