"""What every policy kind's Kopf daemon shares: the cycle loop, its cadence, and the one-writer claims.

Each policy runs in its own Kopf daemon: one cycle every ``spec.interval`` seconds at a fixed rate,
ended early when the operator stops or the policy's spec changes (so an edit takes effect at once
instead of one interval later). A cycle that fails unexpectedly is logged and retried at the next
interval, so one broken policy never stops its daemon or touches the others.

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

from controller.clients.refs import GROUP, VERSION
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, target_key
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
    """The daemon loop: snapshot the policy, run one cycle, sleep until the next; forget its series at the end."""
    deps: Deps = memo.deps
    wakeup = memo["wakeup"] = asyncio.Event()
    written_status: Mapping[str, Any] | None = None  # ours is fresher than the watch stream's copy
    try:
        while not stopped:
            spec = dict(body.spec)
            snapshot = PolicySnapshot(
                kind=kind,
                namespace=namespace,
                name=name,
                uid=body.meta.uid,
                generation=int(body.meta.get("generation") or 0),
                spec=spec,
                status=written_status if written_status is not None else dict(body.status),
            )
            started = time.monotonic()
            try:
                with deps.metrics.reconcile_timer(kind):
                    outcome = await cycle(snapshot, time.time())
                written_status = outcome.status
            except Exception:  # an unexpected bug must not kill the daemon: report and retry next interval
                logger.exception("reconcile of %s %s/%s failed; retrying in one interval", kind, namespace, name)
            # A fixed rate, not a fixed pause: the cycle's own duration does not stretch the interval.
            await sleep_until_next_cycle(stopped, wakeup, interval_of(spec) - (time.monotonic() - started))
    finally:
        # The daemon stops when the policy is deleted (or the operator stops): its series go with it.
        deps.metrics.forget(kind, namespace, name)
