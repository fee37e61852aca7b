"""How every cycle reports: the status with Kubernetes-style conditions, Events on changes only, decision records.

Every policy kind reports alike, from one :class:`~controller.observability.decisions.DecisionRecord`
per decision: handed to every decision sink (the JSON log line, the operator's metrics), told in
Events only when something changed (a write, a failed write, a recommendation, a new reason to
hold), and kept in ``status.lastDecision`` beside the conditions. A person reads one format for
all kinds; :class:`Wording` holds the few words in which the kinds differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.clients.kube import KubeError
from controller.clients.refs import API_VERSION, ObjectRef
from controller.observability.decisions import DecisionRecord
from controller.reconcile.conditions import Condition, find, iso, merge_conditions
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot

logger = logging.getLogger(__name__)

NO_CONFLICT = Condition("Conflict", "False", "NoConflict", "no other writer targets the object")
#: API statuses of a write that lost to a concurrent writer (a stale resourceVersion, a failed ``test`` op).
CONCURRENT_WRITE_STATUSES = (409, 422)


@dataclass(frozen=True)
class Wording:
    """What a policy kind calls its decisions: ``Ready``'s reason while it acts, the reason of the
    Event on its target when a decision was written (and that Event's message), and the reason of
    the Warning when a write failed for another cause than a concurrent writer."""

    active: str
    written: str
    on_target: Callable[[DecisionRecord, str], str]
    failed: str


@dataclass
class Reporter:
    """Writes what a cycle found: status, Events (on changes only) and decision records."""

    policy: PolicySnapshot
    deps: Deps
    now: float
    written: dict[str, Any] | None = None
    written_version: str | None = None
    """The policy's ``resourceVersion`` after the last status write, as the API answered it."""

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
            answer = await self.deps.kube.merge_patch(
                resource, self.policy.namespace, self.policy.name, {"status": status}, subresource="status"
            )
        except KubeError as exc:
            if not exc.not_found:  # deleted meanwhile: nothing to report on
                raise
            return
        self.written = {**(self.policy.status or {}), **status}
        self.written_version = (answer.get("metadata") or {}).get("resourceVersion")

    def outcome(self, *, ready: bool, reason: str, decision: DecisionRecord | None = None) -> CycleOutcome:
        return CycleOutcome(ready, decision, reason, self.written, self.written_version)

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
        return self.outcome(ready=False, reason=reason)

    async def off(self) -> CycleOutcome:
        await self.patch_status({}, [Condition("Ready", "True", "Off", "mode is Off: the policy does nothing")])
        return self.outcome(ready=True, reason="Off")

    async def decided(
        self,
        record: DecisionRecord,
        target: ObjectRef,
        apply_error: KubeError | None,
        wording: Wording,
        conditions: list[Condition],
        status: dict[str, Any],
    ) -> CycleOutcome:
        """Report a decision: the record to every sink, Events on changes only, and the status.

        ``conditions`` are the kind's own (``MetricsAvailable`` among them); ``Ready`` and
        ``Conflict`` are added here. A recommendation or a new reason to hold is a Warning while
        ``MetricsAvailable`` is false: the policy then decides partly blind.
        """
        self.emit(record)
        if record.applied:
            await self.event(self.policy.ref, "Normal", record.action, f"{record.message} (decision {record.id})")
            await self.event(target, "Normal", wording.written, wording.on_target(record, self.policy.name))
        elif apply_error is not None:
            reason = "ConcurrentWrite" if apply_error.status in CONCURRENT_WRITE_STATUSES else wording.failed
            message = f"{record.action} {record.from_} -> {record.to} not written: {apply_error}"
            await self.event(self.policy.ref, "Warning", reason, message)
        elif record.action != "Hold" or self.previous_decision.get("reason") != record.reason:
            # Recommendations and changes of the reason for holding; a steady hold is not news.
            verb = "Recommend" if record.action != "Hold" else "Hold"
            blind = any(c.type == "MetricsAvailable" and c.status == "False" for c in conditions)
            await self.event(
                self.policy.ref, "Warning" if blind else "Normal", f"{verb}{record.reason}", record.message
            )
        recommending = record.mode == "Recommend"
        ready = Condition(
            "Ready",
            "True",
            "Recommending" if recommending else wording.active,
            "decisions are reported, never applied" if recommending else "the policy is active",
        )
        await self.patch_status({**status, "lastDecision": record.to_status()}, [ready, NO_CONFLICT, *conditions])
        return self.outcome(ready=True, reason=record.reason, decision=record)
