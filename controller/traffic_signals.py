"""Copy each backend's numbers in: Prometheus readings, detector scores, ready and needed replicas.

The traffic policies (:mod:`policies.circuit_breaker`, :mod:`policies.routing`) take plain numbers;
this module produces them for one backend per cycle:

* **readings** from Prometheus: the 5xx fraction and request rate from Istio's
  ``istio_requests_total`` (destination telemetry, selected by the backend's workload), p95 latency
  from ``istio_request_duration_milliseconds``, p95 TTFT and TPOT and the mean KV-cache usage from
  the vLLM pods. A query that fails is ``None``, never 0 (:class:`~controller.prometheus.PrometheusPool`);
* **failure scores** from one :class:`forecasting.StreamingDetector` per backend and metric, which
  learns the backend's own baseline. Detectors live in the daemon's memory (:class:`SignalMemory`)
  and do not survive an operator restart: they learn again (a detector scores nothing before about
  150 points, so the spec's limits are what protects a backend meanwhile);
* **needed replicas**: the request rate's forecast at the spec's quantile over the horizon
  (:class:`forecasting.DampedTrend` on the rates seen by this daemon; the current rate while
  fewer than ``MIN_FORECAST_POINTS`` are known) over the backend's requests per replica.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

import pandas as pd

from controller.actuators import ScaleActuator, TargetError
from controller.kube import Kube, KubeError
from controller.presets import PRESETS, default_selector
from controller.prometheus import Credentials, MetricError, PrometheusPool
from controller.spec_common import PrometheusSpec
from controller.traffic_spec import BackendSpec, CapacitySpec, window_seconds
from forecasting import DampedTrend, ForecastInputError
from forecasting.detector import StreamingDetector
from policies import BackendSignals

MIN_FORECAST_POINTS = 10
RATE_HISTORY = 360  # points of request rate kept per backend for the forecast
DETECTED = ("error_rate", "latency_ms", "ttft_s", "tpot_s")


def backend_queries(namespace: str, backend: BackendSpec, window: str) -> dict[str, str]:
    """PromQL per signal for one backend, over ``window`` (e.g. ``1m``)."""
    workload = backend.workload
    istio = default_selector(PRESETS["istio-request-rate"], namespace=namespace, kind=workload.kind, name=workload.name)
    vllm = default_selector(PRESETS["vllm-ttft-p95"], namespace=namespace, kind=workload.kind, name=workload.name)
    if backend.model_name:
        vllm += f',model_name="{backend.model_name}"'
    requests = f'istio_requests_total{{reporter="destination",{istio}}}'
    errors = f'istio_requests_total{{reporter="destination",response_code=~"5..",{istio}}}'

    def vllm_p95(histogram: str) -> str:
        series = f'{{__name__=~"vllm[:_]{histogram}_bucket",{vllm}}}'
        return f"histogram_quantile(0.95, sum by (le) (rate({series}[{window}])))"

    return {
        # No 5xx series at all is a 0 error rate; no request series at all stays missing.
        "error_rate": f"(sum(rate({errors}[{window}])) or vector(0)) / sum(rate({requests}[{window}]))",
        "request_rate": f"sum(rate({requests}[{window}]))",
        "latency_ms": "histogram_quantile(0.95, sum by (le) (rate("
        f'istio_request_duration_milliseconds_bucket{{reporter="destination",{istio}}}[{window}])))',
        "ttft_s": vllm_p95("time_to_first_token_seconds"),
        "tpot_s": vllm_p95("time_per_output_token_seconds"),
        "saturation": f'(avg({{__name__=~"vllm[:_]kv_cache_usage_perc",{vllm}}})'
        f' or avg({{__name__=~"vllm[:_]gpu_cache_usage_perc",{vllm}}}))',
    }


@dataclass
class SignalMemory:
    """What one policy's daemon remembers between cycles: detectors and request-rate history."""

    detectors: dict[tuple[str, str], StreamingDetector] = field(default_factory=dict)
    rates: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def score(self, backend: str, now: float, values: dict[str, float | None]) -> float | None:
        """The largest detector score over the backend's readings; ``None`` when none was read."""
        scores = []
        for metric in DETECTED:
            value = values.get(metric)
            if value is None:
                continue
            detector = self.detectors.setdefault((backend, metric), StreamingDetector())
            scores.append(detector.update(pd.Timestamp(now, unit="s"), value))
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


def _requests_in(rate: float | None, window: str) -> float | None:
    """Requests served over the window: ``rate()`` is the window's increase divided by its length."""
    return None if rate is None else rate * window_seconds(window)


@dataclass(frozen=True)
class BackendReading:
    """One backend's signals plus what went wrong reading them, for conditions and the audit log."""

    signals: BackendSignals
    values: dict[str, float | None]
    errors: dict[str, MetricError]
    rejected: MetricError | None

    @property
    def complete(self) -> bool:
        return not self.errors


async def read_backend(
    pool: PrometheusPool,
    kube: Kube,
    prometheus: PrometheusSpec,
    credentials: Credentials,
    namespace: str,
    backend: BackendSpec,
    window: str,
) -> tuple[dict[str, float | None], dict[str, MetricError], int | None]:
    """Every query of one backend, and its ready replicas (``None`` when the workload cannot be read)."""
    queries = backend_queries(namespace, backend, window)

    async def read(name: str, promql: str) -> tuple[str, float | None, MetricError | None]:
        try:
            return name, await pool.query(prometheus, credentials, promql), None
        except MetricError as exc:
            return name, None, exc

    results = await asyncio.gather(*(read(n, q) for n, q in queries.items()))
    ready: int | None
    try:
        ready = (await ScaleActuator(kube, namespace, backend.workload).observe()).ready_replicas
    except (TargetError, KubeError):
        ready = None
    return {n: v for n, v, _ in results}, {n: e for n, _, e in results if e is not None}, ready


async def read_signals(
    pool: PrometheusPool,
    kube: Kube,
    prometheus: PrometheusSpec,
    credentials: Credentials,
    namespace: str,
    backend: BackendSpec,
    window: str,
    memory: SignalMemory,
    capacity: CapacitySpec | None,
    interval_s: int,
    now: float,
) -> BackendReading:
    values, errors, ready = await read_backend(pool, kube, prometheus, credentials, namespace, backend, window)
    needed = (
        memory.needed_replicas(backend, now, values.get("request_rate"), capacity, interval_s) if capacity else None
    )
    signals = BackendSignals(
        name=backend.name,
        failure_score=memory.score(backend.name, now, values),
        error_rate=values.get("error_rate"),
        latency_ms=values.get("latency_ms"),
        ttft_s=values.get("ttft_s"),
        tpot_s=values.get("tpot_s"),
        saturation=values.get("saturation"),
        ready_replicas=ready,
        needed_replicas=needed,
        requests=_requests_in(values.get("request_rate"), window),
    )
    rejected = next((e for e in errors.values() if e.rejected), None)
    return BackendReading(signals, values, errors, rejected)
