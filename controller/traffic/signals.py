"""Copy each backend's numbers in: Prometheus readings, detector scores, ready and needed replicas.

The traffic policies (:mod:`policies.circuit_breaker`, :mod:`policies.routing`) take plain numbers;
this module produces them for one backend per cycle, in two steps: :func:`observe_backend` (I/O:
Prometheus and the API server) gives a :class:`BackendReading`, and :func:`backend_signals` (no I/O)
turns a reading into the policy's :class:`~policies.BackendSignals` through the daemon's memory. The
backtest builds its readings from a simulation and calls the same second step:

* **readings** from Prometheus: the 5xx fraction and request rate from Istio's
  ``istio_requests_total`` (destination telemetry, selected by the backend's workload), p95 latency
  from ``istio_request_duration_milliseconds``, p95 TTFT and TPOT and the mean KV-cache usage from
  the vLLM pods, and the pods failing on their own: an outlier 5xx share, or stalled over the
  policy's interval (:func:`controller.clients.servers.stalled`). A query that fails is ``None``,
  never 0 (:class:`~controller.clients.prometheus.PrometheusPool`);
* **failure scores** from one :class:`forecasting.StreamingDetector` per backend and metric, which
  learns the backend's own baseline. Their alert level follows from a false-alarm budget per backend
  and day (:func:`alert_level`), not from a benchmark. Detectors live in the daemon's memory (:class:`SignalMemory`).
  A detector scores nothing before about 150 points (12 minutes at a 5 s interval), so a daemon
  that starts (a new policy, an operator restart) first **warms** each backend's detectors from
  Prometheus history (:func:`warm_up`): one range query per signal over the recent past, at the
  policy's interval, the same PromQL as the live reads, replayed through the detectors in a worker
  thread. It is bounded (:data:`WARMUP_POINTS` per signal, at most :data:`WARMUP_S`) and done once
  per backend, retried only while Prometheus is down: a history that cannot be read leaves the
  detectors to learn from live points, the spec's limits protecting the backend meanwhile;
* **needed replicas**: the served request rate's (:func:`served_rate`) forecast at the spec's quantile over the horizon
  (:class:`forecasting.DampedTrend` on the rates seen by this daemon, the warm-up's history
  included; the current rate while fewer than ``MIN_FORECAST_POINTS`` are known) over the
  backend's requests per replica.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from controller.actuators import ScaleActuator
from controller.clients.kube import Kube, KubeError
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool, RangeSamples
from controller.clients.refs import PrometheusSpec
from controller.clients.servers import backend_queries
from controller.errors import TargetError
from controller.traffic.spec import DEFAULT_MAX_ERROR_RATE, BackendSpec, CapacitySpec, window_seconds
from forecasting import DampedTrend, ForecastInputError
from forecasting.detector import StreamingDetector, alert_level_for_budget
from policies import BackendSignals

logger = logging.getLogger(__name__)

MIN_FORECAST_POINTS = 10
RATE_HISTORY = 360  # points of request rate kept per backend for the forecast
DETECTED = ("error_rate", "latency_ms", "ttft_s", "tpot_s")
#: Warm-up history per signal: enough for a detector to score (a reference window of 50 points
#: plus its longest scale, 64, plus 250 calibration values: ~365 points) and to calibrate its tails
#: on more, while one replay (~0.5 ms per point and signal) stays about a second per backend.
WARMUP_POINTS = 480
#: ... and never older than this, whatever the interval: the baseline is the recent past.
WARMUP_S = 3 * 3600
#: The false alarms one backend's tests may raise together, per day on average: the budget its
#: detectors' alert level follows from (:func:`alert_level`). One a day is what an on-call person
#: reads without learning to ignore it (the issue's bound; the inference-failure benchmark measures it).
FALSE_ALARMS_PER_BACKEND_DAY = 1.0
#: The tests a backend's failure score is the largest of: a detector per signal.
TESTS_PER_BACKEND = len(DETECTED)
SECONDS_PER_DAY = 86_400


def alert_level(interval_s: float) -> float:
    """The detectors' alert level (``-log10 p``) at a policy's interval: the backend's tests, each read
    once per interval, raise at most :data:`FALSE_ALARMS_PER_BACKEND_DAY` false alarms a day
    (:func:`forecasting.detector.alert_level_for_budget`; 4.36 at 15 s, 4.84 at 5 s)."""
    return alert_level_for_budget(FALSE_ALARMS_PER_BACKEND_DAY, SECONDS_PER_DAY / interval_s, TESTS_PER_BACKEND)


@dataclass(frozen=True)
class SignalSource:
    """Where one policy reads its backends' signals: its Prometheus, as its credentials allow, for
    its namespace, with rates over its window and stalls over its interval. The same for every
    backend and every query of a cycle."""

    pool: PrometheusPool
    prometheus: PrometheusSpec
    credentials: Credentials
    namespace: str
    window: str
    interval: str
    error_limit: float = DEFAULT_MAX_ERROR_RATE  # the least 5xx share of a pod that fails on its own

    def queries(self, backend: BackendSpec) -> dict[str, str]:
        """PromQL per signal of one backend (:func:`controller.clients.servers.backend_queries`)."""
        workload = backend.workload
        return backend_queries(
            namespace=self.namespace,
            kind=workload.kind,
            name=workload.name,
            model_name=backend.model_name,
            window=self.window,
            error_limit=self.error_limit,
            interval=self.interval,
        )


@dataclass
class SignalMemory:
    """What one policy's daemon remembers between cycles: detectors and request-rate history.

    Scores are on the policies' scale: 0.5 at the alert level of the policy's interval
    (:func:`alert_level`). A detector keeps the level of the interval it was created at.
    """

    detectors: dict[tuple[str, str], StreamingDetector] = field(default_factory=dict)
    rates: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    warmed: set[str] = field(default_factory=set)

    def _detector(self, backend: str, metric: str, interval_s: float) -> StreamingDetector:
        key = (backend, metric)
        if key not in self.detectors:
            self.detectors[key] = StreamingDetector(alert_level=alert_level(interval_s))
        return self.detectors[key]

    def replay(self, backend: str, histories: dict[str, RangeSamples], interval_s: float) -> int:
        """Feed history (oldest first, before any live point) to the backend's fresh detectors and rate
        history; the number of points replayed. CPU-bound: run it in a worker thread."""
        replayed = 0
        for metric, samples in histories.items():
            points = list(zip(samples.times, samples.values, strict=True))
            if metric == "request_rate":
                self.rates.setdefault(backend, deque(maxlen=RATE_HISTORY)).extend(points)
            elif (backend, metric) not in self.detectors:
                detector = self._detector(backend, metric, interval_s)
                for t, value in points:
                    detector.update(pd.Timestamp(t, unit="s"), value)
                replayed += len(points)
        return replayed

    def has_live_points(self, backend: str) -> bool:
        """Whether any of the backend's detectors or its rate history has learned a point yet."""
        return bool(self.rates.get(backend)) or any(name == backend for name, _ in self.detectors)

    def score(self, backend: str, now: float, values: Mapping[str, float | None], interval_s: float) -> float | None:
        """The largest detector score over the backend's readings; ``None`` when none was read."""
        scores = [
            self._detector(backend, metric, interval_s).update(pd.Timestamp(now, unit="s"), value)
            for metric in DETECTED
            if (value := values.get(metric)) is not None
        ]
        return max(scores) if scores else None

    def needed_replicas(
        self, backend: BackendSpec, now: float, rate: float | None, capacity: CapacitySpec, interval_s: int
    ) -> float | None:
        if backend.requests_per_replica is None:
            return None
        history = self.rates.setdefault(backend.name, deque(maxlen=RATE_HISTORY))
        if rate is not None:
            history.append((now, rate))
        if rate is None:
            return None
        forecast = _forecast_rate(history, capacity, interval_s)
        return max(rate, forecast) / backend.requests_per_replica


def _forecast_rate(history: deque[tuple[float, float]], capacity: CapacitySpec, interval_s: int) -> float:
    """The largest forecast rate at the spec's quantile over the horizon; 0 without enough history."""
    if len(history) < MIN_FORECAST_POINTS or capacity.horizon_s == 0:
        return 0.0
    series = pd.Series([v for _, v in history], index=pd.DatetimeIndex([pd.Timestamp(t, unit="s") for t, _ in history]))
    steps = max(1, math.ceil(capacity.horizon_s / interval_s))
    try:
        forecast = DampedTrend(history=RATE_HISTORY).fit(series).predict(steps, quantiles=(capacity.quantile,))
    except (ForecastInputError, ValueError):
        return 0.0
    upper = float(max(forecast.quantile(capacity.quantile)))
    return upper if math.isfinite(upper) else 0.0


def served_rate(values: Mapping[str, float | None]) -> float | None:
    """Requests per second the backend's replicas served: the request rate less its 5xx share.

    This is the load that needs capacity. A failed attempt took no GPU time when it failed fast, and
    when it is retried the retry is counted again where it succeeds; counting failures as load would
    make a failing pool look busier, and forbid ejecting its failing hosts, exactly when it fails.
    """
    rate, errors = values.get("request_rate"), values.get("error_rate")
    if rate is None:
        return None
    return rate * (1.0 - min(max(errors, 0.0), 1.0)) if errors is not None else rate


def _count(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) or value < 0 else round(value)


def _requests_in(rate: float | None, window: str) -> float | None:
    """Requests served over the window: ``rate()`` is the window's increase divided by its length."""
    return None if rate is None else rate * window_seconds(window)


async def warm_up(
    source: SignalSource, backend: BackendSpec, memory: SignalMemory, interval_s: int, now: float
) -> None:
    """Once per backend and daemon: replay the recent history of its signals into its detectors.

    The history is what the live cycles would have read, one point per interval: the same PromQL
    as :func:`backend_queries`, evaluated by a range query at the interval as its step. A signal
    without history (no data) starts cold, and once a live point has reached a detector the warm-up
    is over for good: a detector learns in time order, and live points are newer than any history.
    Only when Prometheus could not answer at all (an outage; the live reads fail too, so no detector
    has learned anything yet) is the warm-up tried again at the next cycle.
    """
    if backend.name in memory.warmed:
        return
    queries = source.queries(backend)
    span = min(WARMUP_S, WARMUP_POINTS * interval_s)

    async def history(metric: str) -> tuple[str, RangeSamples | MetricError]:
        try:
            samples = await source.pool.range_query(
                source.prometheus, source.credentials, queries[metric], start=now - span, end=now, step_s=interval_s
            )
        except MetricError as exc:
            return metric, exc
        return metric, samples

    found = dict(await asyncio.gather(*(history(m) for m in (*DETECTED, "request_rate"))))
    histories = {metric: answer for metric, answer in found.items() if isinstance(answer, RangeSamples)}
    if not histories and not memory.has_live_points(backend.name):
        outages = [answer for answer in found.values() if isinstance(answer, MetricError) and answer.outage]
        if len(outages) == len(found):
            logger.info("warm-up of backend %s deferred to the next cycle: %s", backend.name, outages[0].message)
            return
    memory.warmed.add(backend.name)
    replayed = await asyncio.get_running_loop().run_in_executor(
        None, memory.replay, backend.name, histories, interval_s
    )
    logger.info(
        "detectors of backend %s warmed from %d points of history (%s)",
        backend.name,
        replayed,
        ", ".join(f"{m}: {len(s.values)}" for m, s in histories.items()) or "none found",
    )


@dataclass(frozen=True)
class BackendReading:
    """What observing one backend gave: each signal's value (``None``: missing), its ready replicas
    (``None``: the workload could not be read), and what went wrong reading them.

    This is the whole of what the decide step (:mod:`controller.traffic.decide`) needs from the
    world; the operator fills it from Prometheus and the API server, the backtest from a simulation.
    """

    name: str
    values: Mapping[str, float | None]
    ready_replicas: int | None
    errors: Mapping[str, MetricError] = field(default_factory=dict)
    rejected: MetricError | None = None


async def read_backend(
    source: SignalSource, kube: Kube, backend: BackendSpec
) -> tuple[dict[str, float | None], dict[str, MetricError], int | None]:
    """Every query of one backend, and its ready replicas (``None`` when the workload cannot be read)."""
    queries = source.queries(backend)

    async def read(name: str, promql: str) -> tuple[str, float | None, MetricError | None]:
        try:
            return name, await source.pool.query(source.prometheus, source.credentials, promql), None
        except MetricError as exc:
            return name, None, exc

    results = await asyncio.gather(*(read(n, q) for n, q in queries.items()))
    ready: int | None
    try:
        ready = (await ScaleActuator(kube, source.namespace, backend.workload).observe()).ready_replicas
    except (TargetError, KubeError):
        ready = None
    return {n: v for n, v, _ in results}, {n: e for n, _, e in results if e is not None}, ready


async def observe_backend(
    source: SignalSource, kube: Kube, backend: BackendSpec, memory: SignalMemory, interval_s: int, now: float
) -> BackendReading:
    """The observe step for one backend (I/O only): warm its detectors once, then read it."""
    await warm_up(source, backend, memory, interval_s, now)
    values, errors, ready = await read_backend(source, kube, backend)
    rejected = next((e for e in errors.values() if e.rejected), None)
    return BackendReading(backend.name, values, ready, errors, rejected)


def backend_signals(
    backend: BackendSpec,
    reading: BackendReading,
    memory: SignalMemory,
    capacity: CapacitySpec | None,
    interval_s: int,
    window: str,
    now: float,
) -> BackendSignals:
    """The numbers a policy decides from, for one backend: the readings, the detectors' score (which
    learn this reading), and the replicas the forecast load needs (with ``capacity``). No I/O."""
    values = reading.values
    needed = memory.needed_replicas(backend, now, served_rate(values), capacity, interval_s) if capacity else None
    return BackendSignals(
        name=backend.name,
        failure_score=memory.score(backend.name, now, values, interval_s),
        error_rate=values.get("error_rate"),
        latency_ms=values.get("latency_ms"),
        ttft_s=values.get("ttft_s"),
        tpot_s=values.get("tpot_s"),
        saturation=values.get("saturation"),
        ready_replicas=reading.ready_replicas,
        failing_replicas=_count(values.get("failing_replicas")),
        stalled_replicas=_count(values.get("stalled_replicas")),
        needed_replicas=needed,
        requests=_requests_in(values.get("request_rate"), window),
    )
