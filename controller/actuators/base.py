"""The small interface every actuator implements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

from controller.clients.kube import KubeError
from controller.clients.refs import TargetRef
from controller.errors import TargetError

ObservedT = TypeVar("ObservedT")
DesiredT_contra = TypeVar("DesiredT_contra", contravariant=True)


@contextmanager
def refused_when_missing(reason: str, message: str) -> Iterator[None]:
    """The API's 404 inside the block as a :class:`TargetError`: a target or kind that does not
    exist is the policy's problem (a condition), not the operator's (a crash); other errors pass."""
    try:
        yield
    except KubeError as exc:
        if exc.not_found:
            raise TargetError(reason, message) from exc
        raise


def refused_when_target_missing(target: TargetRef, namespace: str) -> AbstractContextManager[None]:
    return refused_when_missing("TargetNotFound", f"{target.describe()} not found in namespace {namespace}")


class Actuator(Protocol[ObservedT, DesiredT_contra]):
    """Observe the live object, then apply a desired value.

    ``apply`` compares with what ``observe`` returned and writes only on a difference, returning
    whether it wrote: the controller never sends a no-op write, so the API server's audit log and
    the target's ``resourceVersion`` change only when infercast really changed something.
    """

    async def observe(self) -> ObservedT: ...

    async def apply(self, desired: DesiredT_contra, observed: ObservedT) -> bool: ...
