"""What a ScalingPolicy's cycle reads: every input of its decision, and all of its I/O but the write.

* :func:`read_instant`: every instant query of the cycle in as few requests as can be. The value
  of every ``spec.metrics`` entry, or why it is missing (an error, never a zero; a preset's newest
  sample older than ``maxStaleness`` is ``Stale``), and with ``spec.forecast`` the server's signals
  and the load's freshness. What comes from presets is one request, their union
  (:meth:`~controller.clients.prometheus.PrometheusPool.query_each`, where each query still fails
  alone); each query of the spec's own is sent alone, so that a mistake in it is that metric's
  error (``QueryRejected`` names the metric) and identical PromQL of many policies is one request;
* :func:`observe_predictive`, with ``spec.forecast``: the **lead time** learned from the target's
  pods, start-up and waits for a node (:mod:`controller.scaling.leadtime`), the server's
  **signals** over the last minute (p95 TTFT and TPOT, queue, running batch, generated tokens,
  prefill seconds and what they prefilled: what the capacity is learned from and each minute's
  SLO judged by,
  :class:`~controller.clients.servers.ServerProfile`), and one turn of the policy's **forecasting
  loop** (:mod:`controller.scaling.forecast_loop`) on the load.

Nothing here decides: the plan is made from these readings by the pure functions of
:mod:`controller.scaling.plan` and :mod:`controller.scaling.predictive`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from controller.actuators import ScaleObservation
from controller.clients.kube import PODS, KubeError
from controller.clients.prometheus import Credentials, MetricError, PrometheusPool, RangeSamples
from controller.clients.refs import PrometheusSpec
from controller.clients.servers import SERVERS, render_preset, render_source
from controller.reconcile.cycle import Deps, PolicySnapshot
from controller.scaling.forecast_loop import ForecastOutcome, ForecastSession, history_plan
from controller.scaling.forecast_spec import ForecastSpec
from controller.scaling.leadtime import LeadTime, pods_may_tell_more
from controller.scaling.leadtime import learn as learn_lead_time
from controller.scaling.settings import forecast_settings
from controller.scaling.spec import MetricSpec, ScalingPolicySpec


@dataclass(frozen=True)
class MetricReading:
    spec: MetricSpec
    query: str
    value: float | None
    error: MetricError | None


Values = Mapping[str, float | MetricError]
#: The name of the load's freshness among a predictive cycle's instant values.
LOAD_AGE = "load_age"


@dataclass(frozen=True)
class InstantReads:
    """What a cycle's instant queries gave: the spec's metrics and, with ``spec.forecast``, the
    predictive queries and the values of their instant ones by name (signals and :data:`LOAD_AGE`)."""

    metrics: list[MetricReading]
    queries: PredictiveQueries | None = None
    predictive: Values = field(default_factory=dict)


async def read_instant(
    pool: PrometheusPool, namespace: str, spec: ScalingPolicySpec, credentials: Credentials
) -> InstantReads:
    """Every metric's value, or why it is missing (a preset's value older than maxStaleness is
    stale), and with ``spec.forecast`` the predictive instant queries: what comes from presets in
    one request, each query of the spec alone."""
    rendered = [
        render_source(m.source, namespace=namespace, kind=spec.target.kind, name=spec.target.name) for m in spec.metrics
    ]
    union: dict[str, str] = {}
    alone: dict[str, str] = {}
    for i, (metric, query) in enumerate(zip(spec.metrics, rendered, strict=True)):
        (alone if metric.source.query else union)[f"metric_{i}"] = query.value
        if query.freshness:
            union[f"metric_{i}_age"] = query.freshness
    queries = predictive_queries(namespace, spec, spec.forecast) if spec.forecast is not None else None
    predictive = dict(queries.signals()) if queries is not None else {}
    if queries is not None and queries.load_freshness:
        predictive[LOAD_AGE] = queries.load_freshness
    union.update(predictive)
    values = await _read_each(pool, spec.prometheus, credentials, union, alone)
    readings = []
    for i, (metric, query) in enumerate(zip(spec.metrics, rendered, strict=True)):
        value, age = values[f"metric_{i}"], values.get(f"metric_{i}_age")
        if isinstance(value, MetricError):
            readings.append(MetricReading(metric, query.value, None, value))
        elif isinstance(age, MetricError):
            readings.append(MetricReading(metric, query.value, None, age))
        elif age is not None and age > spec.prometheus.max_staleness_s:
            stale = MetricError(
                "Stale", f"newest sample is {age:.0f}s old (maxStaleness {spec.prometheus.max_staleness_s:.0f}s)"
            )
            readings.append(MetricReading(metric, query.value, None, stale))
        else:
            readings.append(MetricReading(metric, query.value, value, None))
    return InstantReads(readings, queries, {name: values[name] for name in predictive})


async def _read_each(
    pool: PrometheusPool,
    prometheus: PrometheusSpec,
    credentials: Credentials,
    union: Mapping[str, str],
    alone: Mapping[str, str],
) -> dict[str, float | MetricError]:
    """The values of ``union`` from one request and of each of ``alone`` from its own, by name."""

    async def one(promql: str) -> float | MetricError:
        try:
            return await pool.query(prometheus, credentials, promql)
        except MetricError as exc:
            return exc

    async def together() -> dict[str, float | MetricError]:
        if not union:
            return {}
        try:
            return await pool.query_each(prometheus, credentials, union)
        except MetricError as exc:  # what fails the request (an outage, a rejection) fails each of them
            return dict.fromkeys(union, exc)

    values, singles = await asyncio.gather(together(), asyncio.gather(*(one(q) for q in alone.values())))
    return {**values, **dict(zip(alone, singles, strict=True))}


@dataclass(frozen=True)
class PredictiveQueries:
    """The PromQL a predictive cycle reads; ``load_freshness`` only for a preset load, the server's
    signals only where it exports them."""

    load: str
    load_freshness: str | None
    latency: str
    queue: str
    tpot: str | None = None
    running: str | None = None
    generated: str | None = None
    prefill_busy: str | None = None
    prefilled: str | None = None

    def signals(self) -> dict[str, str]:
        """The server's signals it exports, by the name of their :class:`ServerSignals` field."""
        named = {
            "latency_s": self.latency,
            "queue": self.queue,
            "tpot_s": self.tpot,
            "running": self.running,
            "generated": self.generated,
            "prefill_busy": self.prefill_busy,
            "prefilled": self.prefilled,
        }
        return {name: query for name, query in named.items() if query is not None}


def predictive_queries(namespace: str, spec: ScalingPolicySpec, forecast: ForecastSpec) -> PredictiveQueries:
    """The load (the spec's query, its preset, or the server's default for the unit) and the capacity signals."""
    server = SERVERS[forecast.server]
    source, target = forecast.load, spec.target

    def signal(preset: str | None) -> str | None:
        if preset is None:
            return None
        return render_preset(
            preset,
            namespace=namespace,
            kind=target.kind,
            name=target.name,
            model_name=source.model_name,
            label_selector=source.label_selector,
        ).value

    load = render_source(
        source,
        namespace=namespace,
        kind=target.kind,
        name=target.name,
        default_preset=server.load.get(forecast.capacity.unit),
    )
    unit = forecast.capacity.unit
    latency, queue = signal(server.latency), signal(server.queue)
    assert latency is not None and queue is not None
    return PredictiveQueries(
        load.value,
        load.freshness,
        latency,
        queue,
        tpot=signal(server.tpot),
        running=signal(server.running),
        generated=signal(server.generated),
        prefill_busy=signal(server.prefill_busy),
        prefilled=signal(server.prefilled.get(unit)),
    )


@dataclass(frozen=True)
class ServerSignals:
    """The server's signals over the last minute, each ``None`` when missing (or not exported)."""

    latency_s: float | None = None
    """p95 TTFT (or the server's nearest latency)."""
    queue: float | None = None
    tpot_s: float | None = None
    running: float | None = None
    generated: float | None = None
    prefill_busy: float | None = None
    prefilled: float | None = None


@dataclass(frozen=True)
class PredictiveSignals:
    """What the predictive plan is made from, besides the target and the spec's metrics."""

    lead_time: LeadTime
    window_s: float
    """How far ahead this cycle provisions: the lead time plus one interval."""
    server: ServerSignals
    forecast: ForecastOutcome

    @property
    def latency_s(self) -> float | None:
        return self.server.latency_s

    @property
    def queue(self) -> float | None:
        return self.server.queue


async def observe_predictive(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    observed: ScaleObservation,
    credentials: Credentials,
    deps: Deps,
    session: ForecastSession,
    now: float,
    reads: InstantReads,
) -> PredictiveSignals:
    """The lead time, the server's signals (read by :func:`read_instant`) and the forecast."""
    forecast, queries = spec.forecast, reads.queries
    assert forecast is not None and queries is not None, "only for policies with spec.forecast"

    # A missing signal is None: it never grows the capacity nor calms a panic.
    def known(name: str) -> float | None:
        value = reads.predictive.get(name)
        return None if isinstance(value, MetricError) else value

    server = ServerSignals(**{name: known(name) for name in queries.signals()})
    lead_time = await _lead_time(deps, policy, observed, forecast, now)
    age = known(LOAD_AGE)
    window_s = lead_time.seconds + spec.interval_s
    outcome = await _forecast(policy, spec, queries.load, credentials, deps, session, now, window_s, age)
    return PredictiveSignals(lead_time, window_s, server, outcome)


async def _lead_time(
    deps: Deps, policy: PolicySnapshot, observed: ScaleObservation, forecast: ForecastSpec, now: float
) -> LeadTime:
    """The lead time in force, with the start-ups, waits for a node and pending replicas of the target's
    pods; kept as it was while the workload is settled or the API fails."""
    status = policy.status or {}
    raw = status.get("leadTime")
    previous = LeadTime.from_status(raw if isinstance(raw, Mapping) else None, forecast.lead_time_s)
    if not observed.selector:  # without a selector every pod of the namespace would be counted
        return previous
    if not pods_may_tell_more(observed.spec_replicas, observed.ready_replicas, status):
        return previous
    try:
        pods = await deps.kube.list(PODS, policy.namespace, observed.selector)
    except KubeError:
        return previous
    return learn_lead_time(previous, pods, forecast.lead_time_s, now)


async def _forecast(
    policy: PolicySnapshot,
    spec: ScalingPolicySpec,
    load_query: str,
    credentials: Credentials,
    deps: Deps,
    session: ForecastSession,
    now: float,
    window_s: float,
    sample_age_s: float | None,
) -> ForecastOutcome:
    assert spec.forecast is not None
    sample_s, history_s = history_plan(spec.forecast.step_s, spec.forecast.history_s)
    loop = session.loop_for(forecast_settings(spec.forecast, sample_s, history_s), load_query, history_s)

    def fetch(start: float, end: float, step_s: float) -> Awaitable[RangeSamples]:
        return deps.prometheus.range_query(
            spec.prometheus, credentials, load_query, start=start, end=end, step_s=step_s
        )

    def refitted(seconds: float, model: str) -> None:
        deps.metrics.observe_model_refit(policy.kind, policy.namespace, policy.name, model, seconds)

    return await loop.cycle(
        fetch,
        now,
        window_s,
        spec.prometheus.max_staleness_s,
        deps.selection_processes,
        refitted,
        sample_age_s,
        forecasts=deps.forecast_processes,
    )
