"""What the circuit-breaker and routing cycles share: reading backends, conditions, reporting.

Both cycles follow the scaling cycle's shape (observe -> decide -> act -> report, see
:mod:`controller.scaling.cycle`): :func:`observe_backends` is the observe step (all the I/O), the
decide step is :mod:`controller.traffic.decide` (pure, shared with the backtest), and both report the
same three ways from one
:class:`~controller.observability.decisions.DecisionRecord`: a JSON log line, Events only when something
changed, and ``status.lastDecision``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from controller.actuators.objects import LiveObject
from controller.actuators.ownership import ForeignOwnerError
from controller.clients.refs import PrometheusSpec, TargetRef
from controller.errors import SpecError, TargetError
from controller.reconcile.conditions import Condition
from controller.reconcile.cycle import CycleOutcome
from controller.reconcile.report import Reporter, Wording
from controller.traffic.signals import BackendReading, SignalMemory, SignalSource, observe_backend
from controller.traffic.spec import BackendSpec, HealthSpec
from policies import BackendSignals, BackendVerdict

HEALTH_SIGNALS = ("error_rate", "latency_ms", "ttft_s", "saturation")


class TrafficSpec(Protocol):
    """What the circuit-breaker and routing specs share for observing their backends."""

    @property
    def target(self) -> TargetRef: ...

    @property
    def prometheus(self) -> PrometheusSpec: ...

    @property
    def backends(self) -> tuple[BackendSpec, ...]: ...

    @property
    def health(self) -> HealthSpec: ...

    @property
    def interval_s(self) -> int: ...

    @property
    def mode(self) -> str: ...


class TrafficObservation(Protocol):
    @property
    def live(self) -> LiveObject: ...


ObservationT = TypeVar("ObservationT", bound=TrafficObservation)


@dataclass(frozen=True)
class ObservedBackends(Generic[ObservationT]):
    """The traffic object as observed and the readings of every backend found in it."""

    observed: ObservationT
    readings: list[BackendReading]
    where: str  # the target, as conditions and Events name it

    def conditions(self) -> list[Condition]:
        return [metrics_condition(self.readings), backends_condition(self.observed.live.missing, self.where)]


SpecT = TypeVar("SpecT", bound=TrafficSpec)


async def parse_or_stop(
    report: Reporter, parse: Callable[[Mapping[str, Any]], SpecT], older_policies: Sequence[str]
) -> SpecT | CycleOutcome:
    """The spec of a policy that is to act this cycle, or how the cycle stopped: a bad spec,
    mode ``Off``, or an older policy of the same kind that already writes the target."""
    try:
        spec = parse(report.policy.spec)
    except SpecError as exc:
        return await report.not_ready(exc.reason, exc.message)
    if spec.mode == "Off":
        return await report.off()
    if older_policies:
        return await refuse_claimed(report, spec.target, older_policies)
    return spec


async def observe_backends(
    report: Reporter,
    observe: Callable[[], Awaitable[ObservationT]],
    spec: TrafficSpec,
    memory: SignalMemory,
    none_found: str,
    needs_every_backend: str | None = None,
) -> ObservedBackends[ObservationT] | CycleOutcome:
    """Observe the target and read the backends it has (the cycle's I/O), or stop the cycle.

    Stops (the :class:`CycleOutcome`) when the target cannot be used, when no backend is in it
    (``none_found``), when one is missing and ``needs_every_backend`` says why that matters, or
    when Prometheus refuses a query. Missing backends otherwise get their Warning Event and the
    ones found are still served.
    """
    deps, namespace = report.deps, report.policy.namespace
    try:
        observed = await observe()
        prometheus, credentials = await deps.prometheus_access.resolve(deps.kube, namespace, spec.prometheus)
    except (TargetError, SpecError) as exc:
        return await refuse(report, exc)
    where = spec.target.describe()
    await note_missing_backends(report, observed.live.missing, where)
    found = [b for b in spec.backends if b.name not in observed.live.missing]
    if needs_every_backend is not None and len(found) < len(spec.backends):
        return await report.not_ready("BackendNotFound", f"{needs_every_backend} in {where}")
    if not found:
        return await report.not_ready("BackendNotFound", f"{none_found} in {where}")
    source = SignalSource(
        deps.prometheus,
        prometheus,
        credentials,
        namespace,
        spec.health.rate_window,
        f"{spec.interval_s}s",
        spec.health.error_limit,
    )
    readings = list(
        await asyncio.gather(
            *(observe_backend(source, deps.kube, b, memory, spec.interval_s, report.now) for b in found)
        )
    )
    if rejected := rejected_queries(readings):
        return await report.not_ready("QueryRejected", rejected)
    return ObservedBackends(observed, readings, where)


def rejected_queries(readings: Sequence[BackendReading]) -> str:
    """Queries Prometheus refused (a spec problem, not an outage), described; empty when none."""
    return "; ".join(f"{r.name}: {r.rejected.message}" for r in readings if r.rejected)


def metrics_condition(readings: Sequence[BackendReading]) -> Condition:
    """``MetricsAvailable``: every backend has at least one health signal to be judged on."""
    blind = [r for r in readings if all(r.values.get(s) is None for s in HEALTH_SIGNALS)]
    if blind:
        reason = next(iter(blind[0].errors.values())).reason if blind[0].errors else "NoData"
        names = ", ".join(r.name for r in blind)
        return Condition("MetricsAvailable", "False", reason, f"no health signal for {names}: values are kept")
    unread = sorted({f"{r.name}/{name}" for r in readings for name in r.errors})
    detail = f"; not read: {', '.join(unread)}" if unread else ""
    return Condition("MetricsAvailable", "True", "BackendsObserved", f"{len(readings)} backend(s) observed{detail}")


def backends_condition(missing: Sequence[str], where: str) -> Condition:
    if missing:
        return Condition("BackendsFound", "False", "BackendNotFound", f"not in {where}: {', '.join(missing)}")
    return Condition("BackendsFound", "True", "AllBackendsFound", f"every backend is in {where}")


def backend_inputs(signals: Sequence[BackendSignals], readings: Sequence[BackendReading]) -> list[dict[str, Any]]:
    """The numbers each decision was made from, as logged and kept in ``lastDecision.inputs``."""
    rates = {r.name: r.values.get("request_rate") for r in readings}
    return [
        {
            "name": s.name,
            "failureScore": s.failure_score,
            "errorRate": s.error_rate,
            "latencyMs": s.latency_ms,
            "ttftSeconds": s.ttft_s,
            "tpotSeconds": s.tpot_s,
            "kvCacheUsage": s.saturation,
            "readyReplicas": s.ready_replicas,
            "neededReplicas": s.needed_replicas,
            "failingReplicas": s.failing_replicas,
            "stalledReplicas": s.stalled_replicas,
            "requestRate": rates.get(s.name),
        }
        for s in signals
    ]


def backend_status(verdicts: Sequence[BackendVerdict], signals: Sequence[BackendSignals]) -> list[dict[str, Any]]:
    by_name = {s.name: s for s in signals}
    return [
        {
            "name": v.name,
            "failureScore": v.score,
            "flagged": v.health.flagged,
            "reason": str(v.reason),
            "readyReplicas": by_name[v.name].ready_replicas if v.name in by_name else None,
            "neededReplicas": by_name[v.name].needed_replicas if v.name in by_name else None,
        }
        for v in verdicts
    ]


async def note_missing_backends(report: Reporter, missing: Sequence[str], where: str) -> None:
    """One Warning Event per distinct set of backends missing from the target, not one per cycle."""
    condition = backends_condition(missing, where)
    previous = next((c for c in report.conditions if c.get("type") == "BackendsFound"), None)
    if missing and (previous is None or previous.get("message") != condition.message):
        await report.event(report.policy.ref, "Warning", condition.reason, condition.message)


def wording(kind: str) -> Wording:
    """How a traffic kind's decisions are told: ``Active`` while acting, one Event on the object it changed."""
    return Wording(
        active="Active",
        written="InfercastTrafficPolicy",
        on_target=lambda record, policy: (
            f"{record.action}: {record.message}; by {kind} {policy} (decision {record.id})"
        ),
        failed="FailedUpdate",
    )


async def refuse_claimed(report: Reporter, target: TargetRef, older_policies: Sequence[str]) -> CycleOutcome:
    """``Ready=False`` and ``Conflict=True``: an older policy of the same kind already writes ``target``."""
    who = ", ".join(f"{report.policy.kind} {p}" for p in older_policies)
    message = f"{target.describe()} is already tuned by {who}: one writer per object"
    return await report.not_ready(
        "PolicyConflict", message, conflict=Condition("Conflict", "True", "PolicyConflict", message)
    )


async def refuse(report: Reporter, exc: TargetError | SpecError) -> CycleOutcome:
    """``Ready=False`` for a target that cannot be used; ``Conflict=True`` when another controller owns it."""
    if isinstance(exc, ForeignOwnerError):
        return await report.not_ready(
            exc.reason, exc.message, conflict=Condition("Conflict", "True", exc.reason, exc.message)
        )
    return await report.not_ready(exc.reason, exc.message)
