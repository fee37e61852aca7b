"""The Envoy-like client proxy of one subset: connection pool, host choice, outlier detection.

Istio builds one Envoy cluster per subset, so every subset has its own proxy state here: the
settings in force, the attempts in flight and the FIFO of attempts waiting for a pool slot, and
per host the consecutive-error counters and ejection state. The rules are the judge's
(README, "Proxy", rules 2, 3, 5 and 6); this module applies them to one subset and leaves time,
events, retries and recording to the simulator. It draws no random numbers itself: the draws
come in as arguments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from controller.backtest.traffic.engine import PENDING, Attempt, Host
from controller.backtest.traffic.settings import ProxySettings

GATEWAY_STATUSES = frozenset((502, 503, 504))


@dataclass(frozen=True)
class ProxyParams:
    """Model constants of the proxy (the judge's options of the same names)."""

    request_timeout_s: float = 30.0
    panic_threshold: float = 50.0
    max_ejection_time_s: float = 300.0
    retry_backoff_s: float = 0.025


class SubsetProxy:
    """Pool, least-request host choice and outlier detection of one subset."""

    def __init__(self, index: int, name: str, hosts: list[Host], settings: ProxySettings, params: ProxyParams) -> None:
        self.index = index
        self.name = name
        self.hosts = hosts
        self.settings = settings
        self.params = params
        self.pending: deque[Attempt] = deque()
        self.pending_count = 0
        self.in_flight = 0
        self.dispatching = False
        self.ejected = [False] * len(hosts)
        self.ejected_count = 0
        self.ejected_until = [0.0] * len(hosts)
        self.times_ejected = [0] * len(hosts)
        self._consecutive_5xx = [0] * len(hosts)
        self._consecutive_gateway = [0] * len(hosts)
        self._eligible = list(range(len(hosts)))

    # Rule 2: the connection pool.
    def must_wait(self) -> bool:
        limit = self.settings.http2MaxRequests
        return limit > 0 and (self.in_flight >= limit or self.pending_count > 0)

    def pending_full(self) -> bool:
        limit = self.settings.http1MaxPendingRequests
        return limit > 0 and self.pending_count >= limit

    def has_free_slot(self) -> bool:
        limit = self.settings.http2MaxRequests
        return limit == 0 or self.in_flight < limit

    def wait(self, attempt: Attempt) -> None:
        attempt.state = PENDING
        self.pending.append(attempt)
        self.pending_count += 1

    def next_waiting(self) -> Attempt:
        """The oldest attempt still waiting (those that timed out are skipped)."""
        while True:
            attempt = self.pending.popleft()
            if attempt.state == PENDING:
                self.pending_count -= 1
                return attempt

    # Rule 3: host choice.
    def pick_host(self, first_draw: float, second_draw: float, tried: list[int]) -> int | None:
        """Least request over two draws among the eligible hosts; None when none is eligible."""
        eligible = self._eligible
        if tried:
            untried = [h for h in eligible if h not in tried]
            if untried:
                eligible = untried
        count = len(eligible)
        if not count:
            return None
        a = eligible[int(first_draw * count)]
        b = eligible[int(second_draw * count)]
        return b if self.hosts[b].active < self.hosts[a].active else a

    # Rules 5 and 6: outlier detection.
    def on_response(self, host: int, status: int, now: float) -> bool:
        """Count a host's response (2xx as 200); True when it ejects the host."""
        if self.ejected[host]:
            return False
        if status < 500:
            self._consecutive_5xx[host] = 0
            self._consecutive_gateway[host] = 0
            return False
        if status in GATEWAY_STATUSES:
            self._consecutive_gateway[host] += 1
        else:
            self._consecutive_gateway[host] = 0
        self._consecutive_5xx[host] += 1
        gateway_limit = self.settings.consecutiveGatewayErrors
        if gateway_limit > 0 and self._consecutive_gateway[host] >= gateway_limit:
            self._consecutive_gateway[host] = 0
            if self._eject(host, now):
                return True
        limit = self.settings.consecutive5xxErrors
        if limit > 0 and self._consecutive_5xx[host] >= limit:
            self._consecutive_5xx[host] = 0
            return self._eject(host, now)
        return False

    def sweep(self, now: float) -> list[int]:
        """Return every ejected host whose ejection has ended; the hosts returned."""
        back = [h for h, out in enumerate(self.ejected) if out and self.ejected_until[h] <= now]
        for host in back:
            self.ejected[host] = False
            self._consecutive_5xx[host] = 0
            self._consecutive_gateway[host] = 0
        if back:
            self.ejected_count -= len(back)
            self._update_eligible()
        return back

    def _eject(self, host: int, now: float) -> bool:
        if 100.0 * self.ejected_count / len(self.hosts) >= self.settings.maxEjectionPercent:
            return False
        self.times_ejected[host] += 1
        self._consecutive_5xx[host] = 0
        self._consecutive_gateway[host] = 0
        duration = min(self.settings.baseEjectionTime_s * self.times_ejected[host], self.params.max_ejection_time_s)
        self.ejected_until[host] = now + duration
        self.ejected[host] = True
        self.ejected_count += 1
        self._update_eligible()
        return True

    def _update_eligible(self) -> None:
        total = len(self.hosts)
        healthy = [h for h in range(total) if not self.ejected[h]]
        panic = 100.0 * len(healthy) / total < self.params.panic_threshold
        self._eligible = list(range(total)) if panic else healthy
