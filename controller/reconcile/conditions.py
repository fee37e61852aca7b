"""Status conditions per the Kubernetes API conventions.

``lastTransitionTime`` changes only when ``status`` changes, so a condition that has been
``False`` for an hour says so even though the controller rewrites it every cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


def iso(now: float) -> str:
    """RFC 3339 in UTC with a ``Z``, second precision: the form Kubernetes writes."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    previous: Iterable[Mapping[str, Any]], updates: Iterable[Condition], *, now: float, generation: int
) -> list[dict[str, Any]]:
    """The new ``conditions`` list: updated types replaced, others kept, transitions timed."""
    merged: dict[str, dict[str, Any]] = {str(c.get("type")): dict(c) for c in previous if c.get("type")}
    for cond in updates:
        old = merged.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        merged[cond.type] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:1024],
            "lastTransitionTime": iso(now) if changed or not old else old.get("lastTransitionTime", iso(now)),
            "observedGeneration": generation,
        }
    return list(merged.values())


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
