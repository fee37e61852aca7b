"""The small interface every actuator implements."""

from __future__ import annotations

from typing import Protocol, TypeVar

ObservedT = TypeVar("ObservedT")
DesiredT_contra = TypeVar("DesiredT_contra", contravariant=True)


class TargetError(Exception):
    """The target cannot be observed or changed; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Actuator(Protocol[ObservedT, DesiredT_contra]):
    """Observe the live object, then apply a desired value.

    ``apply`` compares with what ``observe`` returned and writes only on a difference, returning
    whether it wrote: the controller never sends a no-op write, so the API server's audit log and
    the target's ``resourceVersion`` change only when infercast really changed something.
    """

    async def observe(self) -> ObservedT: ...

    async def apply(self, desired: DesiredT_contra, observed: ObservedT) -> bool: ...
