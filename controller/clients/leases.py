"""Leader election on a ``coordination.k8s.io/v1`` Lease, by client-go's protocol: one writer among replicas.

Every replica of the operator is a candidate with a unique identity (host name and a random
suffix, so a restarted process never mistakes its predecessor's lease for its own). The Lease
holds ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` and
``leaseTransitions``; every change is a PUT conditional on the ``resourceVersion`` read, so of
two candidates racing for it exactly one wins (the other gets 409).

Time is judged as client-go judges it, by each candidate's own monotonic clock and never by the
times written in the Lease (the holder's clock may be skewed): a candidate takes over a lease held
by another only once the record has not changed for ``leaseDurationSeconds`` since *it* saw it
change. The leader renews every ``retry_period_s``; it may act until ``renew_deadline_s`` after
the start of its last successful renewal (:meth:`LeaderElector.holds`), and as that is shorter
than the lease duration, it stops before any standby can take over. The margin (lease duration
minus renew deadline) must exceed the time a write may spend in flight; client-go states the same
limit ("no fencing"), and docs/reliability.md says what this means here.

This module only talks to the API; the operator's process (:mod:`controller.handlers.leadership`)
decides what to run while it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.clients.kube import Kube, KubeError, Resource

logger = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
JITTER = 1.2  # client-go's JitterFactor: a candidate waits retry_period * [1, 1 + jitter)


class NotLeader(KubeError):
    """A write refused by this replica itself: it does not hold the lease (or no longer knows it does)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "NotLeader", message)


def new_identity() -> str:
    """This process's identity among the candidates: readable (the host, i.e. the pod) and unique."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:10]}"


def micro_time(now: float) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ElectionSettings:
    """The Lease's name and namespace, this candidate's identity, and client-go's three durations.

    ``lease_duration_s`` (whole seconds, as the Lease stores it) is how long a standby waits on an
    unchanged record; ``renew_deadline_s`` how long the leader acts after the start of its last
    successful renewal; ``retry_period_s`` how often it renews and a standby retries.
    """

    name: str
    namespace: str
    identity: str
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period_s}, {self.renew_deadline_s}, {self.lease_duration_s}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease's spec says about its holder (``holder`` empty: released, anyone may take it)."""

    holder: str
    duration_s: int
    acquire_time: str
    renew_time: str
    transitions: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LeaseRecord:
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }
        if self.holder:
            spec["holderIdentity"] = self.holder
        return spec


class LeaderElector:
    """One candidate: :meth:`acquire` until it leads, :meth:`keep_leading` until it must stop, :meth:`release`."""

    def __init__(
        self,
        kube: Kube,
        settings: ElectionSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self._monotonic = monotonic
        self._wall = wall
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        self._valid_until = float("-inf")

    @property
    def describe(self) -> str:
        return f"Lease {self.settings.namespace}/{self.settings.name}"

    def holds(self) -> bool:
        """Whether this replica may act now: it renewed the lease less than the renew deadline ago."""
        return self._monotonic() < self._valid_until

    def fence(self) -> None:
        """Refuse a write unless this replica holds the lease (the Kubernetes client's ``fence``)."""
        if not self.holds():
            raise NotLeader(f"this replica ({self.settings.identity}) does not hold {self.describe}")

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: create the Lease, renew ours, or take one that expired; whether we lead now."""
        started = self._monotonic()
        now = micro_time(self._wall())
        mine = LeaseRecord(self.settings.identity, self.settings.lease_duration_s, now, now, 0)
        path = LEASES.path(self.settings.namespace, self.settings.name)
        try:
            lease = await self.kube.request("GET", path)
        except KubeError as exc:
            if not exc.not_found:
                logger.warning("cannot read %s: %s", self.describe, exc)
                return False
            body = {"apiVersion": LEASES.api_version, "kind": LEASES.kind, "metadata": {"name": self.settings.name}}
            body["spec"] = mine.to_spec()
            return await self._write("POST", LEASES.path(self.settings.namespace), body, mine, started)
        current = LeaseRecord.from_spec(lease.get("spec") or {})
        if current != self._observed:
            self._observed, self._observed_at = current, started
        leading = current.holder == self.settings.identity
        if not leading:
            self._valid_until = float("-inf")  # whatever we believed, another candidate holds it now
        expired = self._observed_at + current.duration_s <= started
        if current.holder and not leading and not expired:
            return False
        if leading:
            record = LeaseRecord(mine.holder, mine.duration_s, current.acquire_time, now, current.transitions)
        else:
            record = LeaseRecord(mine.holder, mine.duration_s, now, now, current.transitions + 1)
        metadata = {"name": self.settings.name, "resourceVersion": (lease.get("metadata") or {}).get("resourceVersion")}
        body = {**lease, "metadata": metadata, "spec": record.to_spec()}
        return await self._write("PUT", path, body, record, started)

    async def _write(self, method: str, path: str, body: dict[str, Any], record: LeaseRecord, started: float) -> bool:
        try:
            await self.kube.request(method, path, body)
        except KubeError as exc:  # 409: another candidate changed the lease first
            logger.info("%s not taken: %s", self.describe, exc)
            return False
        if self._observed is None or self._observed.holder != record.holder:
            logger.info("%s is now held by %s (transition %d)", self.describe, record.holder, record.transitions)
        self._observed, self._observed_at = record, started
        self._valid_until = started + self.settings.renew_deadline_s
        return True

    async def acquire(self, stopped: asyncio.Event) -> bool:
        """Try every retry period (jittered) until this replica leads; ``False`` if ``stopped`` first."""
        logger.info("%s: candidate %s", self.describe, self.settings.identity)
        while not stopped.is_set():
            if await self.try_acquire_or_renew():
                return True
            pause = self.settings.retry_period_s * (1 + JITTER * random.random())
            await _wait(stopped, pause)
        return False

    async def keep_leading(self, stopped: asyncio.Event) -> bool:
        """Renew every retry period while leading; ``False`` once the renew deadline passed without
        a renewal (leadership lost: the caller stops acting), ``True`` when ``stopped``."""
        while not stopped.is_set():
            await _wait(stopped, self.settings.retry_period_s)
            while not stopped.is_set():
                remaining = self._valid_until - self._monotonic()
                if remaining <= 0:
                    logger.error(
                        "%s: not renewed within %.1fs: stepping down", self.describe, self.settings.renew_deadline_s
                    )
                    return False
                try:
                    if await asyncio.wait_for(self.try_acquire_or_renew(), remaining):
                        break
                except TimeoutError:
                    continue
                await _wait(stopped, min(self.settings.retry_period_s, max(remaining, 0.0)))
        return True

    async def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so that a standby need not wait for it to expire."""
        if not self.holds() or self._observed is None:
            return
        now = micro_time(self._wall())
        path = LEASES.path(self.settings.namespace, self.settings.name)
        try:
            lease = await self.kube.request("GET", path)
            if LeaseRecord.from_spec(lease.get("spec") or {}).holder != self.settings.identity:
                return
            released = LeaseRecord("", 1, now, now, self._observed.transitions)
            body = {**lease, "spec": released.to_spec()}
            await self.kube.request("PUT", path, body)
        except KubeError as exc:
            logger.warning("could not release %s: %s", self.describe, exc)
            return
        self._valid_until = float("-inf")
        logger.info("%s released", self.describe)


async def _wait(stopped: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stopped`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), timeout=max(seconds, 0.0))
