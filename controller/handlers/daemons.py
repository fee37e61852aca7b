"""What every policy kind's Kopf daemon shares: the cycle loop, its cadence, and the one-writer claims.

Each policy runs in its own Kopf daemon: one cycle every ``spec.interval`` seconds at a fixed rate,
ended early when the operator stops or the policy's spec changes (so an edit takes effect at once
instead of one interval later). Each cycle starts from the policy as the API has it: as the watch
delivered it when that is the daemon's own last write, else read from the API. A cycle that
fails (an API error, a bug) becomes ``Ready=False`` with a reason and one Event, and is retried at
the next interval, so one broken policy never stops its daemon or touches the others.

One writer per target: every kind keeps a Kopf index of its policies by target; the oldest claim
(creation time, then name) wins, and a newer policy on the same target is refused with a
``Conflict`` condition. Deleting the older policy hands the target over at the next cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import kopf

from controller.clients.kube import KubeError
from controller.clients.leases import NotLeader
from controller.clients.refs import API_VERSION, GROUP, VERSION
from controller.errors import InfercastError
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, target_key
from controller.reconcile.report import Reporter
from controller.reconcile.spec import MAX_INTERVAL_S, MIN_INTERVAL_S

logger = logging.getLogger(__name__)

TargetKey = tuple[str, str, str, str]
Claims = Mapping[Any, Iterable[tuple[str, str]]]
Cycle = Callable[[PolicySnapshot, float], Awaitable[CycleOutcome]]

DEFAULT_INTERVAL_S = 15.0


def interval_of(spec: Mapping[str, Any]) -> float:
    """``spec.interval`` clamped to the allowed range; the default when it is absent or malformed."""
    try:
        return float(min(max(int(spec.get("interval", DEFAULT_INTERVAL_S)), MIN_INTERVAL_S), MAX_INTERVAL_S))
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL_S


def wake_daemon(memo: kopf.Memo) -> None:
    wakeup: asyncio.Event | None = memo.get("wakeup")
    if wakeup is not None:
        wakeup.set()


async def _spec_changed(memo: kopf.Memo, **_: Any) -> None:
    wake_daemon(memo)


async def _claim_of(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[TargetKey, tuple[str, str]]:
    # Async although it does no I/O: Kopf runs it on every watch event of every policy (each status
    # write is one), and would hand a sync handler to a thread and back each time.
    return claim(namespace or "", name, spec, meta)


def register_policy_kind(plural: str, claims_index: str) -> None:
    """The handlers every policy kind has besides its daemon: the index of its policies by target
    (which the daemon receives as the keyword ``claims_index``) and the wake-up on a spec change."""
    kopf.index(GROUP, VERSION, plural, id=claims_index)(_claim_of)
    kopf.on.update(GROUP, VERSION, plural, field="spec", id=f"{plural}/spec-changed")(_spec_changed)


async def sleep_until_next_cycle(stopped: kopf.DaemonStopped, wakeup: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` (none if not positive), or less if the operator stops or the spec changes."""
    wakeup.clear()
    if seconds <= 0:
        return
    waiters = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wakeup.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def claim(
    namespace: str, name: str, spec: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[TargetKey, tuple[str, str]]:
    """A policy's entry in its kind's index: (creation time, name) under its target's identity.

    A policy that is off writes nothing, so it claims nothing.
    """
    key = target_key(namespace, spec)
    if key is None or spec.get("mode") == "Off":
        return {}
    return {key: (str(meta.get("creationTimestamp") or ""), name)}


def older_claims(namespace: str, name: str, created: str, spec: Mapping[str, Any], claims: Claims) -> tuple[str, ...]:
    """The policies of the same kind on the same target that claimed it first."""
    key = target_key(namespace, spec)
    if key is None:
        return ()
    mine = (created, name)
    return tuple(sorted(f"{namespace}/{p}" for c, p in claims.get(key, ()) if (c, p) < mine))


async def run_cycles(
    kind: str, stopped: kopf.DaemonStopped, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, cycle: Cycle
) -> None:
    """The daemon loop: take the policy, run one cycle, sleep until the next; forget its series at the end.

    Every cycle starts from the policy as the API has it, status included, never from what this
    process remembers writing: after a restart, a lost write or a change of leader, the history
    the rate limits count on is the one persisted. That is Kopf's body (what the watch delivered
    last) when its ``resourceVersion`` is the one the daemon's own last status write was answered
    with: nobody changed the policy since, as far as the watch tells. Otherwise (the first cycle, a
    failed cycle, a write by someone else, a watch that lags) the cycle reads the policy from the
    API: with a thousand policies, that read was a third of the operator's requests. A cycle that
    fails (an API error, a bug) ends as ``Ready=False`` with a reason and one Warning Event, and the
    next interval tries again.
    """
    deps: Deps = memo.deps
    wakeup = memo["wakeup"] = asyncio.Event()
    written_version: str | None = None
    try:
        while not stopped:
            started = time.monotonic()
            spec: Mapping[str, Any] = dict(body.spec)
            ready = False
            try:
                snapshot = (
                    snapshot_of(kind, namespace, name, body)
                    if written_version is not None and body.metadata.get("resourceVersion") == written_version
                    else await read_policy(deps, kind, namespace, name)
                )
            except KubeError as exc:
                written_version = None
                await report_failure(snapshot_of(kind, namespace, name, body), deps, time.time(), exc)
            else:
                if snapshot is not None:  # None: deleted, and Kopf stops this daemon
                    spec = snapshot.spec
                    outcome = await run_cycle(snapshot, deps, cycle)
                    ready, written_version = outcome.ready, outcome.written_version
            deps.metrics.observe_cycle(kind, namespace, name, ready=ready, interval_s=interval_of(spec))
            # A fixed rate, not a fixed pause: the cycle's own duration does not stretch the interval.
            await sleep_until_next_cycle(stopped, wakeup, interval_of(spec) - (time.monotonic() - started))
    finally:
        # The daemon stops when the policy is deleted (or the operator stops): its series go with it.
        deps.metrics.forget(kind, namespace, name)


async def read_policy(deps: Deps, kind: str, namespace: str, name: str) -> PolicySnapshot | None:
    """The policy as the API has it now; ``None`` when it is gone."""
    resource = await deps.kube.resource(API_VERSION, kind)
    try:
        obj = await deps.kube.get(resource, namespace, name)
    except KubeError as exc:
        if exc.not_found:
            return None
        raise
    meta = obj.get("metadata") or {}
    return PolicySnapshot(
        kind=kind,
        namespace=namespace,
        name=name,
        uid=meta.get("uid"),
        generation=int(meta.get("generation") or 0),
        spec=dict(obj.get("spec") or {}),
        status=dict(obj.get("status") or {}),
    )


def snapshot_of(kind: str, namespace: str, name: str, body: kopf.Body) -> PolicySnapshot:
    """The policy as Kopf's watch last delivered it."""
    return PolicySnapshot(
        kind=kind,
        namespace=namespace,
        name=name,
        uid=body.meta.uid,
        generation=int(body.meta.get("generation") or 0),
        spec=dict(body.spec),
        status=dict(body.status),
    )


async def run_cycle(snapshot: PolicySnapshot, deps: Deps, cycle: Cycle) -> CycleOutcome:
    """One cycle's outcome; a cycle that raised ended not Ready, its writes unknown."""
    now = time.time()
    try:
        with deps.metrics.reconcile_timer(snapshot.kind):
            return await cycle(snapshot, now)
    except Exception as exc:  # a failed cycle must not kill the daemon: report it and retry next interval
        await report_failure(snapshot, deps, now, exc)
        return CycleOutcome(ready=False, reason="Failed")


def failure_condition(kind: str, exc: Exception) -> tuple[str, str]:
    """The reason and message of ``Ready=False`` for a cycle that raised ``exc``."""
    if isinstance(exc, KubeError):
        return "KubeApiError", f"the Kubernetes API answered {exc}"
    if isinstance(exc, InfercastError):
        return exc.reason, exc.message
    # The message of an unexpected exception may carry anything: it stays in the operator log.
    return "InternalError", f"{type(exc).__name__} in the {kind} cycle; the operator log has the traceback"


async def report_failure(snapshot: PolicySnapshot, deps: Deps, now: float, exc: Exception) -> None:
    """``Ready=False`` with the failure's reason, and one Warning Event per distinct failure."""
    where = f"{snapshot.kind} {snapshot.namespace}/{snapshot.name}"
    if isinstance(exc, NotLeader):  # this replica is stepping down: the next leader reports
        logger.info("%s: write refused, no longer the leader", where)
        return
    if isinstance(exc, InfercastError):
        logger.warning("cycle of %s failed: %s", where, exc)
    else:
        logger.error("cycle of %s failed; retrying in one interval", where, exc_info=exc)
    reason, message = failure_condition(snapshot.kind, exc)
    try:
        await Reporter(snapshot, deps, now).not_ready(reason, message)
    except Exception as failed:  # the API may be down for this write too: the next cycle tries again
        logger.warning("could not report the failure of %s: %s", where, failed)
