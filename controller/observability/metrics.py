"""The operator's own Prometheus metrics: what it saw, predicted and decided, and how it is doing.

Almost every per-policy series is *derived from the decision record* a cycle already produces
(:class:`~controller.observability.decisions.DecisionRecord`), through :meth:`OperatorMetrics.record_decision`,
which the operator installs as one of its decision sinks. The record is the audit trail; deriving
the metrics from it means a dashboard can never show something the decision log does not say.

Cardinality is bounded by construction: per-policy series carry ``namespace``, ``policy`` and
``target`` (plus, for a few families, a label whose values come from the policy's own spec:
``metric``, ``backend``, ``setting``). Each record replaces the policy's previous gauges: a series
the new record does not mention (a metric removed from the spec, a backend gone, a new target) is
removed, and :meth:`OperatorMetrics.forget` removes every series of a deleted policy. So the
number of series follows the policies that exist, not the history of the cluster.

No global state: every :class:`OperatorMetrics` owns its :class:`CollectorRegistry`, so tests and
several operators in one process never share counters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import start_http_server

from controller.clients.prometheus import MetricError
from controller.observability.decisions import DecisionRecord
from policies.predictive import Path

logger = logging.getLogger(__name__)

POLICY_LABELS = ("namespace", "policy", "target")

# Which decision data a family is derived from; the dashboards' proof test uses it to know which
# panels can have data with the policy kinds the operator implements.
SCALING = "ScalingPolicy"
FORECAST = "forecast"
CIRCUIT_BREAKING = "CircuitBreakerPolicy"
ROUTING = "RoutingPolicy"
OPERATOR = "operator"


@dataclass(frozen=True)
class Family:
    """One metric family: its Prometheus name, help, extra labels and what feeds it."""

    name: str
    help: str
    source: str
    extra_labels: tuple[str, ...] = ()


# Per-policy gauges, set from decision records. The names say the unit (Prometheus conventions);
# counts of replicas and load in the policy's own metric units carry no unit suffix.
POLICY_GAUGES: tuple[Family, ...] = (
    Family("infercast_metric_value", "Last value read for a policy metric: the observed load.", SCALING, ("metric",)),
    Family(
        "infercast_metric_target",
        "Target of a policy metric: per replica for type AverageValue, the total for type Value.",
        SCALING,
        ("metric", "type"),
    ),
    Family("infercast_desired_replicas", "Replicas the policy decided on in its last cycle.", SCALING),
    Family("infercast_current_replicas", "Replicas of the target after the last cycle.", SCALING),
    Family("infercast_ready_replicas", "Ready replicas of the target seen by the last cycle.", SCALING),
    Family("infercast_min_replicas", "Lower replica bound of the policy.", SCALING),
    Family("infercast_max_replicas", "Upper replica bound of the policy.", SCALING),
    Family(
        "infercast_forecast_observed_load",
        "Load of now as the forecasting loop sees it (burst-aware), in the capacity's unit.",
        FORECAST,
    ),
    Family(
        "infercast_forecast_quantile",
        "Peak of the forecast quantile over the lead time plus one interval, in the capacity's unit; "
        "the level label is the quantile.",
        FORECAST,
        ("level",),
    ),
    Family("infercast_capacity_per_replica", "Load one replica serves within its SLO (capacity estimate).", FORECAST),
    Family(
        "infercast_capacity_resource_per_replica",
        "Capacity of one replica per resource (prefill, decode), in the load's unit; the smallest binds.",
        FORECAST,
        ("resource",),
    ),
    Family(
        "infercast_slo_attainment",
        "Share of the recent minutes whose p95 TTFT and TPOT met the SLO (status.slo.windowMinutes).",
        FORECAST,
    ),
    Family(
        "infercast_slo_attainment_target", "The share of minutes that must meet the SLO (slo.attainment).", FORECAST
    ),
    Family(
        "infercast_slo_headroom",
        "Multiplier on the replicas forecast and capacity ask for (attainment feedback).",
        FORECAST,
    ),
    Family("infercast_lead_time_seconds", "How far ahead the policy provisions (cold start + cycle).", FORECAST),
    Family(
        "infercast_forecast_error_ratio",
        "Recent relative error of the forecast (mean absolute error over mean load).",
        FORECAST,
    ),
    Family(
        "infercast_failure_score",
        "Failure score of a backend in [0, 1] as the decision used it (detector and spec limits).",
        CIRCUIT_BREAKING,
        ("backend",),
    ),
    Family(
        "infercast_flagged_backends",
        "Backends the circuit breaker holds at the tight end of its bounds (ejecting outliers sooner).",
        CIRCUIT_BREAKING,
    ),
    Family(
        "infercast_outlier_setting",
        "Outlier-detection value the policy applies to a backend (the setting label names the field).",
        CIRCUIT_BREAKING,
        ("backend", "setting"),
    ),
    Family(
        "infercast_connection_pool_setting",
        "Connection-pool value the policy applies to a backend (the setting label names the field).",
        CIRCUIT_BREAKING,
        ("backend", "setting"),
    ),
    Family("infercast_route_weight_ratio", "Share of traffic routed to a backend in [0, 1].", ROUTING, ("backend",)),
)

_GAUGE_SOURCES = {family.name: family.source for family in POLICY_GAUGES}

DECISIONS = Family(
    "infercast_decisions_total",
    "Decisions taken, by policy kind, action, first reason and, for predictive scaling, the path that set the "
    "count (forecast, reactive, hold, limit; empty otherwise).",
    OPERATOR,
    ("kind", "action", "reason", "path"),
)
RECONCILE = Family("infercast_reconcile_duration_seconds", "Duration of one reconcile cycle.", OPERATOR, ("kind",))
QUERY_DURATION = Family(
    "infercast_prometheus_query_duration_seconds", "Duration of one request to Prometheus.", OPERATOR
)
QUERY_ERRORS = Family(
    "infercast_prometheus_query_errors_total",
    "Requests to Prometheus that gave no usable value.",
    OPERATOR,
    ("reason",),
)
REFIT_DURATION = Family(
    "infercast_model_refit_duration_seconds", "Duration of one forecasting model refit.", FORECAST, ("model",)
)
LAST_REFIT = Family(
    "infercast_model_last_refit_duration_seconds",
    "Duration of a policy's latest model refit.",
    FORECAST,
    ("model",),
)

#: Per policy, from every cycle whether it decided or not (a policy that is not Ready decides nothing).
CYCLE_LABELS = ("kind", "namespace", "policy")
POLICY_READY = Family(
    "infercast_policy_ready", "1 while the policy's Ready condition is True, 0 while it is False.", OPERATOR
)
POLICY_INTERVAL = Family(
    "infercast_policy_interval_seconds", "The policy's spec.interval: the time one cycle must fit in.", OPERATOR
)

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REFIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

DECISION_PATHS: tuple[str, ...] = get_args(Path)
#: The resources a capacity record names (``controller.scaling.capacity.Resource``; observability sits below
#: the scaling package, so the names are repeated here, and a test compares them).
CAPACITY_RESOURCES: tuple[str, ...] = ("prefill", "decode")

PolicyKey = tuple[str, str, str]  # kind, namespace, name
Series = tuple[str, tuple[str, ...]]  # family name, label values


@dataclass(frozen=True)
class Sample:
    """One per-policy gauge value: the family, its extra label values, the value."""

    family: str
    value: float
    extra: tuple[str, ...] = ()


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for null, booleans and anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _samples(family: str, value: Any, *extra: str) -> list[Sample]:
    number = _number(value)
    return [] if number is None else [Sample(family, number, extra)]


def samples_of(record: DecisionRecord) -> list[Sample]:
    """The per-policy gauge values a decision record states. Missing data gives no sample, never 0.

    Reads the documented fields of ``inputs`` and ``output`` (docs/decision-log.md) whatever the
    record's kind, so a new policy kind gets its metrics by filling the same fields.
    """
    inputs, output = record.inputs, record.output
    samples: list[Sample] = []
    for metric in _objects(inputs.get("metrics")):
        samples += _samples("infercast_metric_value", metric.get("value"), str(metric.get("name")))
        samples += _samples(
            "infercast_metric_target", metric.get("target"), str(metric.get("name")), str(metric.get("type"))
        )
    if "desiredReplicas" in output:
        current = record.to if record.applied else record.from_
        samples += _samples("infercast_desired_replicas", output.get("desiredReplicas"))
        samples += _samples("infercast_current_replicas", current)
        samples += _samples("infercast_ready_replicas", inputs.get("readyReplicas"))
        samples += _samples("infercast_min_replicas", inputs.get("minReplicas"))
        samples += _samples("infercast_max_replicas", inputs.get("maxReplicas"))
    forecast = inputs.get("forecast")
    forecast = forecast if isinstance(forecast, Mapping) else {}
    samples += _samples("infercast_forecast_observed_load", forecast.get("observedLoad"))
    if _number(forecast.get("quantileLevel")) is not None:
        level = f"{float(forecast['quantileLevel']):g}"
        samples += _samples("infercast_forecast_quantile", forecast.get("quantile"), level)
    samples += _samples("infercast_capacity_per_replica", forecast.get("capacityPerReplica"))
    for resource in _objects(forecast.get("capacityResources")):
        name = resource.get("resource")
        if name in CAPACITY_RESOURCES:  # the label's values stay bounded whatever a record holds
            samples += _samples("infercast_capacity_resource_per_replica", resource.get("inLoadUnit"), str(name))
    samples += _samples("infercast_slo_attainment", forecast.get("sloAttainment"))
    samples += _samples("infercast_slo_attainment_target", forecast.get("sloAttainmentTarget"))
    samples += _samples("infercast_slo_headroom", forecast.get("headroom"))
    samples += _samples("infercast_lead_time_seconds", forecast.get("leadTimeSeconds"))
    samples += _samples("infercast_forecast_error_ratio", forecast.get("recentErrorRatio"))
    # The score the decision used (detector and spec limits combined) is in the output; a record
    # without one shows the detector's own score from its inputs.
    scored = _objects(output.get("backends")) or _objects(inputs.get("backends"))
    for backend in scored:
        samples += _samples("infercast_failure_score", backend.get("failureScore"), str(backend.get("name")))
    if record.kind == CIRCUIT_BREAKING:
        samples += _samples("infercast_flagged_backends", record.to)  # `to` counts the flagged backends
        for backend in _objects(output.get("backends")):
            for part, family in (
                ("outlierDetection", "infercast_outlier_setting"),
                ("connectionPool", "infercast_connection_pool_setting"),
            ):
                values = backend.get(part)
                for setting, value in values.items() if isinstance(values, Mapping) else ():
                    samples += _samples(family, value, str(backend.get("name")), str(setting))
    weights, total = output.get("weights"), _number(output.get("total"))
    if isinstance(weights, Mapping) and total:
        for name, weight in weights.items():
            share = _number(weight)
            samples += _samples("infercast_route_weight_ratio", None if share is None else share / total, str(name))
    return samples


def decision_path(record: DecisionRecord) -> str:
    """``output.path`` of a predictive scaling record; empty for every other record.

    Only the four documented paths pass: the label's values stay bounded whatever a record holds.
    """
    path = record.output.get("path")
    return path if path in DECISION_PATHS else ""


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a JSON array; anything else is no objects (a record is never trusted to crash us)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


class OperatorMetrics:
    """The operator's metric families in a private registry, and the hooks that update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the operator's CPU and memory, for its health dashboard
        self._lock = threading.Lock()
        # What each policy has set, so that stale and deleted policies' series can be removed.
        self._series: dict[PolicyKey, set[Series]] = {}
        self._targets: dict[PolicyKey, str] = {}
        self._gauges = {
            f.name: Gauge(f.name, f.help, (*POLICY_LABELS, *f.extra_labels), registry=self.registry)
            for f in POLICY_GAUGES
        }
        self._decisions = Counter(
            DECISIONS.name.removesuffix("_total"),
            DECISIONS.help,
            (*POLICY_LABELS, *DECISIONS.extra_labels),
            registry=self.registry,
        )
        self._reconcile = Histogram(
            RECONCILE.name, RECONCILE.help, RECONCILE.extra_labels, buckets=RECONCILE_BUCKETS, registry=self.registry
        )
        self._query_duration = Histogram(
            QUERY_DURATION.name, QUERY_DURATION.help, buckets=QUERY_BUCKETS, registry=self.registry
        )
        self._query_errors = Counter(
            QUERY_ERRORS.name.removesuffix("_total"),
            QUERY_ERRORS.help,
            QUERY_ERRORS.extra_labels,
            registry=self.registry,
        )
        self._refit = Histogram(
            REFIT_DURATION.name,
            REFIT_DURATION.help,
            REFIT_DURATION.extra_labels,
            buckets=REFIT_BUCKETS,
            registry=self.registry,
        )
        self._last_refit = Gauge(
            LAST_REFIT.name, LAST_REFIT.help, (*POLICY_LABELS, *LAST_REFIT.extra_labels), registry=self.registry
        )
        self._ready = Gauge(POLICY_READY.name, POLICY_READY.help, CYCLE_LABELS, registry=self.registry)
        self._interval = Gauge(POLICY_INTERVAL.name, POLICY_INTERVAL.help, CYCLE_LABELS, registry=self.registry)

    # -- hooks -----------------------------------------------------------------------------------

    def record_decision(self, record: DecisionRecord) -> None:
        """A decision sink: count the decision and replace the policy's gauges with the record's."""
        key = (record.kind, record.namespace, record.name)
        base = (record.namespace, record.name, record.target)
        with self._lock:
            if self._targets.get(key, record.target) != record.target:
                self._remove(key)  # the policy now scales another workload: its old series are stale
            self._targets[key] = record.target
            counted = (*base, record.kind, record.action, record.reason, decision_path(record))
            self._decisions.labels(*counted).inc()
            previous = {s for s in self._series.get(key, set()) if s[0] in _GAUGE_SOURCES}
            current: set[Series] = set()
            for sample in samples_of(record):
                labels = (*base, *sample.extra)
                self._gauges[sample.family].labels(*labels).set(sample.value)
                current.add((sample.family, labels))
            for family, labels in previous - current:
                self._gauges[family].remove(*labels)
            kept = {s for s in self._series.get(key, set()) if s[0] not in _GAUGE_SOURCES}
            self._series[key] = kept | current | {(DECISIONS.name, counted)}

    def observe_cycle(self, kind: str, namespace: str, policy: str, *, ready: bool, interval_s: float) -> None:
        """A cycle of a policy ended: whether the policy is Ready, and the interval its cycles must fit in."""
        key, labels = (kind, namespace, policy), (kind, namespace, policy)
        with self._lock:
            self._ready.labels(*labels).set(1.0 if ready else 0.0)
            self._interval.labels(*labels).set(interval_s)
            self._series.setdefault(key, set()).update({(POLICY_READY.name, labels), (POLICY_INTERVAL.name, labels)})

    def observe_query(self, seconds: float, error: MetricError | None) -> None:
        """One request sent to Prometheus (see ``PrometheusPool.on_request``)."""
        self._query_duration.observe(seconds)
        if error is not None:
            self._query_errors.labels(error.reason).inc()

    def observe_model_refit(self, kind: str, namespace: str, policy: str, model: str, seconds: float) -> None:
        """A forecasting model of a policy was fitted again, in ``seconds`` of wall time.

        Call it from the cycle that refits (it has ``deps.metrics``); ``model`` is the model
        the refit chose (:attr:`~controller.scaling.load_forecast.LoadForecaster.chosen_model`, a short
        name from a bounded set such as ``DampedTrend``).
        """
        key = (kind, namespace, policy)
        with self._lock:
            target = self._targets.get(key, "")
            labels = (namespace, policy, target, model)
            self._refit.labels(model).observe(seconds)
            series = self._series.setdefault(key, set())
            for family, old in [s for s in series if s[0] == LAST_REFIT.name and s[1] != labels]:
                self._last_refit.remove(*old)
                series.discard((family, old))
            self._last_refit.labels(*labels).set(seconds)
            series.add((LAST_REFIT.name, labels))

    @contextlib.contextmanager
    def reconcile_timer(self, kind: str) -> Iterator[None]:
        """Time one reconcile cycle of a policy of ``kind``, also when it raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._reconcile.labels(kind).observe(time.perf_counter() - started)

    def forget(self, kind: str, namespace: str, policy: str) -> None:
        """Remove every series of a policy (it was deleted, or its daemon stopped)."""
        with self._lock:
            self._remove((kind, namespace, policy))

    def _remove(self, key: PolicyKey) -> None:
        families: dict[str, Gauge | Counter] = {
            **self._gauges,
            DECISIONS.name: self._decisions,
            LAST_REFIT.name: self._last_refit,
            POLICY_READY.name: self._ready,
            POLICY_INTERVAL.name: self._interval,
        }
        for family, labels in self._series.pop(key, set()):
            families[family].remove(*labels)
        self._targets.pop(key, None)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = "0.0.0.0") -> MetricsServer | None:
        """Serve ``/metrics`` on ``port`` in a daemon thread; None when the port cannot be bound.

        A busy port is logged, not raised: losing the operator's own metrics must not stop it
        from scaling the fleets it is responsible for.
        """
        try:
            server, thread = start_http_server(port, address, registry=self.registry)
        except OSError as exc:
            logger.error("cannot serve metrics on %s:%d: %s; running without /metrics", address, port, exc)
            return None
        logger.info("serving metrics on http://%s:%d/metrics", address, server.server_port)
        return MetricsServer(server, thread)


@dataclass(frozen=True)
class MetricsServer:
    """The running ``/metrics`` HTTP server."""

    server: Any  # wsgiref's server; prometheus-client does not export its type
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
