"""What every policy kind's reconcile cycle shares: the snapshot, the dependencies, the outcome, and reporting.

A cycle of any kind (scaling, circuit breaking, routing) ends the same way: a status patch with
Kubernetes-style conditions, Events only when something changed, and, when it decided something,
one :class:`~controller.observability.decisions.DecisionRecord` handed to every decision sink (the JSON log line,
the operator's metrics). Keeping that here means every kind reports alike and a person reads one
format for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.clients.kube import Kube, KubeError, ObjectRef
from controller.clients.prometheus import PrometheusPool
from controller.observability import OperatorMetrics
from controller.observability.decisions import DecisionLog, DecisionRecord, new_decision_id
from controller.reconcile.conditions import Condition, find, iso, merge_conditions
from controller.reconcile.spec import TargetRef

logger = logging.getLogger(__name__)

GROUP = "infercast.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DecisionSink = Callable[[DecisionRecord], None]


class TargetedSpec(Protocol):
    """What every parsed policy spec has that a decision record names."""

    @property
    def target(self) -> TargetRef: ...

    @property
    def mode(self) -> str: ...


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
    ``forecast_processes`` runs forecasting model refits off the event loop's process (the
    operator's small shared process pool); ``None`` runs them in a thread instead.
    """

    kube: Kube
    prometheus: PrometheusPool
    decision_sinks: tuple[DecisionSink, ...] = field(default_factory=lambda: (DecisionLog().emit,))
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    forecast_processes: Executor | None = None


@dataclass(frozen=True)
class CycleOutcome:
    """What a cycle did, for the caller (the Kopf daemon) and for tests."""

    ready: bool
    decision: DecisionRecord | None = None
    reason: str = ""
    status: Mapping[str, Any] | None = None  # the whole status as written, None when nothing was


NO_CONFLICT = Condition("Conflict", "False", "NoConflict", "no other writer targets the object")


@dataclass
class Reporter:
    """Writes what a cycle found: status, Events (on changes only) and decision records."""

    policy: PolicySnapshot
    deps: Deps
    now: float
    written: dict[str, Any] | None = None

    @property
    def conditions(self) -> list[Mapping[str, Any]]:
        return list((self.policy.status or {}).get("conditions") or [])

    @property
    def previous_decision(self) -> Mapping[str, Any]:
        return (self.policy.status or {}).get("lastDecision") or {}

    async def patch_status(self, status: dict[str, Any], conditions: list[Condition]) -> None:
        """Merge ``status`` and ``conditions`` into the policy's status subresource."""
        status = {
            "observedGeneration": self.policy.generation,
            **status,
            "conditions": merge_conditions(
                self.conditions, conditions, now=self.now, generation=self.policy.generation
            ),
        }
        resource = await self.deps.kube.resource(API_VERSION, self.policy.kind)
        try:
            await self.deps.kube.merge_patch(
                resource, self.policy.namespace, self.policy.name, {"status": status}, subresource="status"
            )
        except KubeError as exc:
            if not exc.not_found:  # deleted meanwhile: nothing to report on
                raise
            return
        self.written = {**(self.policy.status or {}), **status}

    async def event(self, about: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self.deps.kube.post_event(about, type_=type_, reason=reason, message=message, now_iso=iso(self.now))
        except KubeError as exc:  # an Event is best effort: never fail a cycle for it
            logger.warning("could not post Event %s on %s/%s: %s", reason, about.namespace, about.name, exc)

    def emit(self, record: DecisionRecord) -> None:
        for sink in self.deps.decision_sinks:
            sink(record)

    async def not_ready(self, reason: str, message: str, conflict: Condition | None = None) -> CycleOutcome:
        """Stop the policy with ``Ready=False``; one Warning Event per distinct reason and message."""
        previous = find(self.conditions, "Ready")
        if not previous or previous.get("reason") != reason or previous.get("message") != message:
            logger.warning(
                "%s %s/%s not ready: %s: %s", self.policy.kind, self.policy.namespace, self.policy.name, reason, message
            )
            await self.event(self.policy.ref, "Warning", reason, message)
        await self.patch_status({}, [Condition("Ready", "False", reason, message), conflict or NO_CONFLICT])
        return CycleOutcome(ready=False, reason=reason, status=self.written)

    async def off(self) -> CycleOutcome:
        await self.patch_status({}, [Condition("Ready", "True", "Off", "mode is Off: the policy does nothing")])
        return CycleOutcome(ready=True, reason="Off", status=self.written)


def target_key(namespace: str, spec: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """The identity of a policy's target for the one-writer rule (group, kind, namespace, name)."""
    ref = spec.get("targetRef") or {}
    if not ref.get("kind") or not ref.get("name"):
        return None
    group = str(ref.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(ref["kind"]), namespace, str(ref["name"]))
