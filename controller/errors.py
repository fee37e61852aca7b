"""The operator's error vocabulary: one base with a reason, a message and the temporary/permanent axis.

Every failure a cycle expects is an :class:`InfercastError`. Its ``reason`` is a stable CamelCase
code that becomes a condition's reason, an Event's reason and a metric label; its ``message`` is
for a person. ``temporary`` is the axis Kopf draws between ``TemporaryError`` and
``PermanentError``: a temporary error may go away by itself (Prometheus or the API server down,
a conflicting write), a permanent one needs somebody to change something (the spec, the target,
the query). Either way a cycle reports it and the next cycle tries again; the axis decides what is
said (a condition that blames the spec, or one that blames an outage) and what may be retried or
backed off at once.

This module imports nothing of the project: every layer may raise and catch these.
"""

from __future__ import annotations


class InfercastError(Exception):
    """An expected failure: ``reason`` (CamelCase) and ``message``; permanent unless a subclass says otherwise."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def temporary(self) -> bool:
        """Whether the same request may succeed later with nothing changed; permanent by default."""
        return False


class SpecError(InfercastError):
    """The policy cannot be acted on as written: a person must change its spec (or what it names)."""


class InputError(InfercastError):
    """A file or an argument given to a command cannot be used (missing, unreadable, of the wrong shape)."""


class TargetError(InfercastError):
    """The target cannot be observed or changed as the spec asks: missing, of the wrong kind, or owned by another."""
