"""What every policy kind's reconcile cycle shares: the snapshot it starts from, the adapters it
talks through, the outcome it ends with, and the one rule for writing.

A cycle of any kind (scaling, circuit breaking, routing) has the same shape: observe (all the
reads), decide (a pure function of :mod:`policies`), act (:func:`apply_in_auto`), and report once
(:class:`~controller.reconcile.report.Reporter`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.clients.kube import Kube, KubeError
from controller.clients.prometheus import PrometheusPool
from controller.clients.refs import API_VERSION, ObjectRef, TargetRef
from controller.clients.tenancy import PrometheusAccess
from controller.observability import OperatorMetrics
from controller.observability.decisions import DecisionLog, DecisionRecord, new_decision_id
from controller.reconcile.conditions import iso
from controller.reconcile.spec import Mode

DecisionSink = Callable[[DecisionRecord], None]


class TargetedSpec(Protocol):
    """What every parsed policy spec has that a decision record names."""

    @property
    def target(self) -> TargetRef: ...

    @property
    def mode(self) -> Mode: ...


@dataclass(frozen=True)
class PolicySnapshot:
    """The parts of a policy object a cycle needs, copied out of Kopf's body."""

    kind: str
    namespace: str
    name: str
    uid: str | None
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(API_VERSION, self.kind, self.namespace, self.name, self.uid)

    def record(
        self,
        spec: TargetedSpec,
        now: float,
        *,
        action: str,
        from_: int,
        to: int,
        applied: bool,
        reasons: Sequence[str],
        message: str,
        inputs: dict[str, Any],
        output: dict[str, Any],
    ) -> DecisionRecord:
        """A new decision about this policy: every kind names itself, its target and mode alike,
        and leads with its first reason (``Hold`` when the policy gave none)."""
        return DecisionRecord(
            id=new_decision_id(),
            time=iso(now),
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            target=spec.target.describe(),
            mode=spec.mode,
            action=action,
            from_=from_,
            to=to,
            applied=applied,
            reason=reasons[0] if reasons else "Hold",
            reasons=tuple(reasons),
            message=message,
            inputs=inputs,
            output=output,
        )


@dataclass
class Deps:
    """The adapters a cycle talks through, shared by every policy of the operator.

    ``metrics`` is where a cycle reports what no decision record carries, such as the time a
    model refit took (:meth:`~controller.observability.OperatorMetrics.observe_model_refit`).
    ``selection_processes`` runs forecasting model selections, and ``forecast_processes`` each new
    sample's forecast, off the event loop's process (the operator's small shared process pools,
    :mod:`controller.scaling.workers`); ``None`` runs them in a thread instead.
    ``prometheus_access`` is the admin's rules for which Prometheus a policy may read and with
    which credentials (the safe defaults unless ``infercast run --prometheus-config`` says more).
    """

    kube: Kube
    prometheus: PrometheusPool
    prometheus_access: PrometheusAccess = field(default_factory=PrometheusAccess)
    decision_sinks: tuple[DecisionSink, ...] = field(default_factory=lambda: (DecisionLog().emit,))
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    selection_processes: Executor | None = None
    forecast_processes: Executor | None = None


@dataclass(frozen=True)
class CycleOutcome:
    """What a cycle did, for the caller (the Kopf daemon) and for tests."""

    ready: bool
    decision: DecisionRecord | None = None
    reason: str = ""
    status: Mapping[str, Any] | None = None  # the whole status as written, None when nothing was
    written_version: str | None = None
    """The policy's ``resourceVersion`` after the cycle's last status write; ``None`` when it wrote none."""


async def apply_in_auto(
    mode: Mode, changed: bool, write: Callable[[], Awaitable[bool]]
) -> tuple[bool, KubeError | None]:
    """Write a decision only in mode ``Auto`` and only when it changes something: (written, the error if it failed).

    A failed write is not an error of the cycle: it is reported (an Event, the record's ``applied``
    stays false) and the next cycle observes again and decides anew.
    """
    if mode != "Auto" or not changed:
        return False, None
    try:
        return await write(), None
    except KubeError as exc:
        return False, exc


def target_key(namespace: str, spec: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """The identity of a policy's target for the one-writer rule (group, kind, namespace, name)."""
    ref = spec.get("targetRef") or {}
    if not ref.get("kind") or not ref.get("name"):
        return None
    group = str(ref.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(ref["kind"]), namespace, str(ref["name"]))
