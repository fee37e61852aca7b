"""The audit record of one controller decision, and the JSON log line it is written as.

Every reconcile cycle that reaches a decision produces exactly one :class:`DecisionRecord`.
The same record feeds the log line (stdout, one JSON object per line, schema in
``docs/decision-log.md``), ``status.lastDecision`` and the Event message, so the three never
disagree about what was decided and why.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

SCHEMA_VERSION = 1


def new_decision_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class DecisionRecord:
    """What was decided, from what, and why. ``inputs`` and ``output`` are JSON-ready maps."""

    id: str
    time: str
    kind: str
    namespace: str
    name: str
    target: str
    mode: str
    action: str
    from_: int
    to: int
    applied: bool
    reason: str
    reasons: tuple[str, ...]
    message: str
    inputs: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)

    def to_status(self) -> dict[str, Any]:
        """The ``status.lastDecision`` form (the policy is implied by the object it is on).

        Status keeps ``inputs`` but not ``output``; of the output only the predictive path is
        kept (when the record has one), so that a reader of the object alone, such as
        ``infercast explain`` without a log, can still say which path set the count.
        """
        path = self.output.get("path")
        return {**self._decided(), **({"path": path} if isinstance(path, str) else {})}

    def to_log(self) -> dict[str, Any]:
        """The log line: what was decided plus who it is about and what came out (the path within it)."""
        about = {
            "kind": self.kind,
            "policy": f"{self.namespace}/{self.name}",
            "target": self.target,
            "mode": self.mode,
        }
        return {"event": "decision", "schema": SCHEMA_VERSION, **about, **self._decided(), "output": self.output}

    def _decided(self) -> dict[str, Any]:
        """The fields the status form and the log line share."""
        return {
            "id": self.id,
            "time": self.time,
            "action": self.action,
            "from": self.from_,
            "to": self.to,
            "applied": self.applied,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "message": self.message,
            "inputs": self.inputs,
        }


@dataclass
class DecisionLog:
    """Writes decision lines to a stream, whole lines only, even from several threads."""

    stream: TextIO = field(default_factory=lambda: sys.stdout)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, record: DecisionRecord) -> None:
        line = json.dumps(record.to_log(), separators=(",", ":"), sort_keys=False, allow_nan=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
