"""Circuit-breaker settings per backend: outlier detection from health, connection pool from capacity.

For each backend (an Istio DestinationRule subset, or the whole host) the decision sets:

* **outlier detection**, at the *tight* end of every spec bound while the backend is flagged
  (:mod:`policies.health`) or one of its replicas fails on its own (its 5xx share an outlier among
  its peers', ``failing_replicas``: the pool as a whole may look healthy while one host fails
  every other request; or stalled, ``stalled_replicas``: a hung engine answers nothing, so its
  pool's 5xx share and latency quantiles show it late, while the tight thresholds let Envoy eject
  it at its first gateway timeout), and at the *relaxed* end otherwise: fewer consecutive errors before an
  ejection, a shorter sweep interval, a longer ejection and more of the pool ejectable;
* **maxEjectionPercent capped by capacity**: ejecting replicas moves their load onto the others,
  so no more than the spare capacity may go, the capacity the forecast load needs (at the
  policy's quantile) staying in service. A replica failing on its own (its 5xx share an outlier
  among its peers') may go while the healthy replicas carry the load; when they do not, one
  failing replica at a time may (Envoy's own floor), the others still serving the requests they
  do not fail, their fast failures retried on another host. So in an overload, where every
  replica times out alike, nothing is ejected, while one bad replica of a busy pool still is.
  ``minHealthPercent`` is the needed share, so Envoy stops ejecting altogether once fewer healthy
  hosts remain than the load needs;
* **connection pool by Little's law**: in-flight requests = arrival rate x time in system, so a
  pool that admits ``targetInFlightPerReplica`` per ready replica holds the queue a replica can
  serve at its target latency. Every client proxy enforces its own limit, hence the division by
  the number of client proxies. Retries are cut to the tight value on a flagged backend, and to
  none in an overload (the forecast load needs every ready replica or more, and a latency is at
  its limit): retries against a failing or overloaded GPU pool multiply its load exactly when it
  can least take it, and an overloaded pool's failures are timeouts, which a retry only repeats.
  Errors alone are no overload: a fast 5xx of one bad host costs a retry on another host nothing
  the load would notice, and a pool with a replica failing on its own keeps the tight retries
  even in an overload, since that replica's failures are fast and their retry is the request's
  one service.

Missing data keeps the live values (a breaker must not eject on what it cannot see); a backend
whose live object holds no values yet and whose health is unknown is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from policies.health import BackendHealth, BackendSignals, BackendVerdict, HealthLimits, finite, judge
from policies.reasons import Reason

# Istio declares these fields int32; percentages are meaningful in 0..100.
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Tightening:
    """A spec bound given by its two ends; ``tight`` is used for a flagged backend."""

    tight: int
    relaxed: int

    def __post_init__(self) -> None:
        if not (0 <= self.tight <= INT32_MAX and 0 <= self.relaxed <= INT32_MAX):
            raise ValueError(f"bounds must lie in 0..{INT32_MAX}, got {self.tight}, {self.relaxed}")

    def at(self, flagged: bool) -> int:
        return self.tight if flagged else self.relaxed

    @property
    def low(self) -> int:
        return min(self.tight, self.relaxed)

    @property
    def high(self) -> int:
        return max(self.tight, self.relaxed)


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx_errors: int
    consecutive_gateway_errors: int
    interval_s: int
    base_ejection_time_s: int
    max_ejection_percent: int
    min_health_percent: int


@dataclass(frozen=True)
class ConnectionPool:
    http2_max_requests: int
    http1_max_pending_requests: int
    max_retries: int


@dataclass(frozen=True)
class BreakerSettings:
    """The fields a CircuitBreakerPolicy owns on one backend; ``None`` parts are left as they are."""

    outlier: OutlierDetection | None = None
    pool: ConnectionPool | None = None


@dataclass(frozen=True)
class BreakerBounds:
    """The spec's bounds. ``max_ejection_percent`` may end below both ends when capacity demands it."""

    consecutive_5xx_errors: Tightening = Tightening(3, 10)
    consecutive_gateway_errors: Tightening = Tightening(3, 10)
    interval_s: Tightening = Tightening(5, 30)
    base_ejection_time_s: Tightening = Tightening(60, 30)
    max_ejection_percent: Tightening = Tightening(50, 20)
    min_health_percent: Tightening = Tightening(0, 100)
    max_retries: Tightening = Tightening(1, 3)
    target_in_flight_per_replica: int = 32
    pending_per_replica: int = 8
    client_proxies: int = 1

    def __post_init__(self) -> None:
        for percent in (self.max_ejection_percent, self.min_health_percent):
            if percent.high > 100:
                raise ValueError(f"a percentage bound exceeds 100: {percent}")
        if min(self.target_in_flight_per_replica, self.pending_per_replica, self.client_proxies) < 1:
            raise ValueError("targetInFlightPerReplica, pendingPerReplica and clientProxies must be >= 1")


@dataclass(frozen=True)
class BreakerInputs:
    backends: tuple[BackendSignals, ...]
    current: Mapping[str, BreakerSettings]
    bounds: BreakerBounds = field(default_factory=BreakerBounds)
    limits: HealthLimits = field(default_factory=HealthLimits)


@dataclass(frozen=True)
class BackendBreaker:
    verdict: BackendVerdict
    settings: BreakerSettings
    reasons: tuple[Reason, ...]

    @property
    def name(self) -> str:
        return self.verdict.name


@dataclass(frozen=True)
class BreakerDecision:
    backends: tuple[BackendBreaker, ...]
    reasons: tuple[Reason, ...]
    message: str
    health: Mapping[str, BackendHealth]


def decide_breakers(inputs: BreakerInputs, previous: Mapping[str, BackendHealth], now: float) -> BreakerDecision:
    """Desired circuit-breaker settings for every backend, with reasons and the new health state."""
    decided = tuple(
        _decide_backend(signals, inputs.current.get(signals.name, BreakerSettings()), inputs, previous, now)
        for signals in inputs.backends
    )
    # The most urgent backend explains the decision: a degraded one before a recovering one.
    order = [
        Reason.BackendDegraded,
        Reason.BackendRecovered,
        Reason.RecoveryPending,
        Reason.BackendDataMissing,
        Reason.BackendHealthy,
    ]
    ranked = sorted(decided, key=lambda b: order.index(b.verdict.reason))
    reasons = tuple(dict.fromkeys(r for b in ranked for r in b.reasons))
    message = "; ".join(_describe(b) for b in ranked)
    return BreakerDecision(decided, reasons, message, {b.name: b.verdict.health for b in decided})


def _decide_backend(
    signals: BackendSignals,
    current: BreakerSettings,
    inputs: BreakerInputs,
    previous: Mapping[str, BackendHealth],
    now: float,
) -> BackendBreaker:
    verdict = judge(signals, previous, inputs.limits, now)
    reasons: list[Reason] = [verdict.reason]
    bounds = inputs.bounds
    ready = signals.ready_replicas if signals.ready_replicas is not None and signals.ready_replicas >= 0 else None
    needed = finite(signals.needed_replicas)

    failing, stalled = signals.failing_replicas, max(signals.stalled_replicas or 0, 0)
    if stalled:  # the stalled replicas are among the failing ones (the two counts are read apart)
        failing = max(failing or 0, stalled)
    # A replica failing on its own tightens its pool's breakers too, the pool being healthy or not.
    tight = verdict.health.flagged or bool(failing)
    if failing and not verdict.health.flagged and not verdict.missing:
        if stalled:
            reasons.append(Reason.ReplicasStalled)
        if not stalled or failing > stalled:
            reasons.append(Reason.ReplicasFailing)
    outlier = current.outlier
    if not verdict.missing:
        wanted_ejection = bounds.max_ejection_percent.at(tight)
        overloaded = _overloaded(signals, ready, needed, inputs.limits)
        ejectable = _ejectable_percent(ready, needed, failing, overloaded, bounds.max_ejection_percent)
        max_ejection = min(wanted_ejection, ejectable)
        if max_ejection < wanted_ejection:
            reasons.append(Reason.EjectionCappedByCapacity)
        outlier = OutlierDetection(
            consecutive_5xx_errors=bounds.consecutive_5xx_errors.at(tight),
            consecutive_gateway_errors=bounds.consecutive_gateway_errors.at(tight),
            interval_s=bounds.interval_s.at(tight),
            base_ejection_time_s=bounds.base_ejection_time_s.at(tight),
            max_ejection_percent=max_ejection,
            min_health_percent=_needed_percent(ready, needed, bounds.min_health_percent),
        )

    pool = current.pool
    retries = bounds.max_retries.at(tight)
    if retries > 0 and not failing and _overloaded(signals, ready, needed, inputs.limits):
        retries = 0
        reasons.append(Reason.RetriesCutByCapacity)
    if ready is not None:
        pool = ConnectionPool(
            http2_max_requests=_per_proxy(bounds.target_in_flight_per_replica, ready, bounds.client_proxies),
            http1_max_pending_requests=_per_proxy(bounds.pending_per_replica, ready, bounds.client_proxies),
            max_retries=retries,
        )
        if current.pool is None or (current.pool.http2_max_requests, current.pool.http1_max_pending_requests) != (
            pool.http2_max_requests,
            pool.http1_max_pending_requests,
        ):
            reasons.append(Reason.ConnectionPoolFromCapacity)
    elif pool is not None and not verdict.missing:
        # Replicas unknown: keep the pool's size, but the retry budget still follows health.
        pool = replace(pool, max_retries=retries)
    return BackendBreaker(verdict, BreakerSettings(outlier, pool), tuple(reasons))


def _overloaded(signals: BackendSignals, ready: int | None, needed: float | None, limits: HealthLimits) -> bool:
    """Short of capacity (the forecast load needs every ready replica or more) and slow for it (a
    latency at its limit): the state in which a retry only adds load."""
    if ready is None or needed is None or needed < ready:
        return False
    pairs = (
        (signals.ttft_s, limits.max_ttft_s),
        (signals.tpot_s, limits.max_tpot_s),
        (signals.latency_ms, limits.max_latency_ms),
    )
    for value, limit in pairs:
        seen = finite(value)
        if seen is not None and limit is not None and seen >= limit:
            return True
    return False


def _ejectable_percent(
    ready: int | None, needed: float | None, failing: int | None, overloaded: bool, bound: Tightening
) -> int:
    """The share of replicas that may be ejected: the healthy ones beyond the capacity the forecast
    load needs, and the failing ones (all of them while the healthy ones carry the load, else one
    at a time); at least one while the pool is not overloaded (Envoy's own floor: a pool that
    keeps its SLO can lose its worst host for an ejection's time, and the forecast's upper
    quantile alone is no proof that it cannot). Envoy ejects while the ejected
    share is below the percentage, so ``floor(100 k / ready)`` lets exactly ``k`` replicas go.

    With the replicas or the forecast unknown, the spare capacity is unknown too: the cautious
    (lower) end of the spec's bound applies.
    """
    if ready is None or needed is None:
        return bound.low
    if ready == 0:
        return 0
    failing = min(max(failing or 0, 0), ready)
    healthy = ready - failing
    need = math.ceil(needed - 1e-9)
    spare = healthy - min(healthy, need)
    # A failing replica still has its GPU: it serves the requests it does not fail, and its fast
    # failures cost only a retry on another host. The healthy replicas carrying the load, every
    # failing one may go; short of that, one at a time, the others serving what they can.
    ejectable = failing + spare if healthy >= need else min(failing, 1)
    if not overloaded:
        ejectable = max(1, ejectable)
    return math.floor(100 * ejectable / ready)  # at least 1 for a host of a pool of at most 100


def _needed_percent(ready: int | None, needed: float | None, bound: Tightening) -> int:
    """``minHealthPercent``: the share of hosts the forecast load needs, within the spec's bound."""
    if ready is None or needed is None or ready == 0:
        return bound.high  # unknown: the cautious end, which stops ejecting soonest
    return min(max(math.ceil(100 * min(needed, ready) / ready - 1e-9), bound.low), bound.high)


def _per_proxy(per_replica: int, ready: int, proxies: int) -> int:
    return min(max(1, math.ceil(per_replica * ready / proxies)), INT32_MAX)


def _describe(backend: BackendBreaker) -> str:
    score = "unknown" if backend.verdict.score is None else f"{backend.verdict.score:.2f}"
    state = "tight" if backend.verdict.health.flagged else "relaxed"
    # A pool tightened for replicas failing on its own says which, though it is not flagged itself.
    own = [str(r) for r in (Reason.ReplicasStalled, Reason.ReplicasFailing) if r in backend.reasons]
    if own and not backend.verdict.health.flagged:
        state = f"tight: {', '.join(own)}"
    return f"{backend.name}: {backend.verdict.reason} (failure score {score}, {state})"
