"""What a traffic controller may observe: per-window aggregates of the past, as Prometheus shows them.

A controller of a traffic backtest (Flagger's canary analysis, the operator's CircuitBreaker and
Routing policies) decides at its interval from one :class:`Observation`: the window since its
previous decision, ``[start_s, end_s)``, never anything later. The fields mirror what a cluster
exposes:

* per host, Envoy's per-upstream-host stats and the pod's vLLM ``/metrics``: attempts sent,
  responses and 5xx (of which ``timeouts``: the proxy's own 504s, which the pod never sent), the
  server-side TTFT (from when the host received the attempt) and TPOT of each response, the
  gauges at the window's end (active attempts, running and waiting sequences, ejected or not) and
  the tokens generated since the run started (vLLM's ``generation_tokens_total`` counter, read at
  the window's end as a scrape reads it);
* per subset, the client view (the request's route): requests routed, attempts and retries,
  streams started, client-visible failures by status and those the proxy itself produced,
  client TTFT (from the request's arrival, retries included) and TPOT, the pool gauges (in flight,
  pending), ejections started, and the settings in force.

Latencies are raw samples (one per response), so a controller can compute exact quantiles or
bucket them into the histogram it would read in a cluster. Nothing here says which host is
faulty: faults are the scenario's ground truth, not an observation.

The tallies are the simulator's mutable counters for the current window; ``window()`` turns them
into the frozen dataclasses and ``reset()`` starts the next window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.backtest.traffic.engine import Host
from controller.backtest.traffic.settings import ProxySettings


@dataclass(frozen=True)
class HostWindow:
    """One host over the window; gauges (``active`` .. ``ejected``) and the ``generated_tokens``
    counter are taken at its end."""

    host: int
    sent: int
    responses: int
    errors_5xx: int
    ttft_s: tuple[float, ...]
    tpot_s: tuple[float, ...]
    active: int
    running: int
    waiting: int
    ejected: bool
    timeouts: int = 0
    generated_tokens: float = 0.0


@dataclass(frozen=True)
class SubsetWindow:
    """One subset over the window; ``in_flight``, ``pending`` and ``settings`` are taken at its end."""

    name: str
    settings: ProxySettings
    requests: int
    attempts: int
    retries: int
    streams_started: int
    failures_by_status: Mapping[int, int]
    local_failures: int
    client_ttft_s: tuple[float, ...]
    client_tpot_s: tuple[float, ...]
    in_flight: int
    pending: int
    ejections: int
    hosts: tuple[HostWindow, ...]

    @property
    def responses(self) -> int:
        """Responses of the subset's hosts (first tokens and host failures)."""
        return sum(h.responses for h in self.hosts)

    @property
    def errors_5xx(self) -> int:
        return sum(h.errors_5xx for h in self.hosts)

    @property
    def ttft_s(self) -> tuple[float, ...]:
        """Server-side TTFT samples of all the subset's hosts."""
        return tuple(x for h in self.hosts for x in h.ttft_s)

    @property
    def tpot_s(self) -> tuple[float, ...]:
        return tuple(x for h in self.hosts for x in h.tpot_s)

    @property
    def ejected_hosts(self) -> int:
        return sum(h.ejected for h in self.hosts)


@dataclass(frozen=True)
class Observation:
    """Everything a controller sees at ``end_s``: the window ``[start_s, end_s)`` of every subset."""

    start_s: float
    end_s: float
    subsets: tuple[SubsetWindow, ...]

    def subset(self, name: str) -> SubsetWindow:
        for subset in self.subsets:
            if subset.name == name:
                return subset
        raise KeyError(name)


class HostTally:
    """Counters of one host for the current window."""

    __slots__ = ("errors_5xx", "responses", "sent", "timeouts", "tpot_s", "ttft_s")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sent = 0
        self.responses = 0
        self.errors_5xx = 0
        self.timeouts = 0
        self.ttft_s: list[float] = []
        self.tpot_s: list[float] = []

    def window(self, host: Host, ejected: bool, now: float) -> HostWindow:
        return HostWindow(
            host=host.index,
            sent=self.sent,
            responses=self.responses,
            errors_5xx=self.errors_5xx,
            ttft_s=tuple(self.ttft_s),
            tpot_s=tuple(self.tpot_s),
            active=host.active,
            running=host.running,
            waiting=host.queued,
            ejected=ejected,
            timeouts=self.timeouts,
            generated_tokens=host.generated_until(now),
        )


class SubsetTally:
    """Counters of one subset's client view for the current window."""

    __slots__ = (
        "attempts",
        "client_tpot_s",
        "client_ttft_s",
        "ejections",
        "failures_by_status",
        "local_failures",
        "requests",
        "retries",
        "streams_started",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.attempts = 0
        self.retries = 0
        self.streams_started = 0
        self.failures_by_status: dict[int, int] = {}
        self.local_failures = 0
        self.client_ttft_s: list[float] = []
        self.client_tpot_s: list[float] = []
        self.ejections = 0

    def fail(self, status: int, local: bool) -> None:
        self.failures_by_status[status] = self.failures_by_status.get(status, 0) + 1
        self.local_failures += local

    def window(
        self, name: str, settings: ProxySettings, in_flight: int, pending: int, hosts: tuple[HostWindow, ...]
    ) -> SubsetWindow:
        return SubsetWindow(
            name=name,
            settings=settings,
            requests=self.requests,
            attempts=self.attempts,
            retries=self.retries,
            streams_started=self.streams_started,
            failures_by_status=dict(self.failures_by_status),
            local_failures=self.local_failures,
            client_ttft_s=tuple(self.client_ttft_s),
            client_tpot_s=tuple(self.client_tpot_s),
            in_flight=in_flight,
            pending=pending,
            ejections=self.ejections,
            hosts=hosts,
        )
