"""The daemon loop of a traffic policy (CircuitBreakerPolicy, RoutingPolicy), shared by both kinds.

Like the ScalingPolicy daemon: one cycle per ``spec.interval``, woken early by a spec change, an
unexpected error logged and retried next interval. In addition the daemon owns the policy's
:class:`~controller.traffic_signals.SignalMemory` (detectors and request-rate history), which lives
as long as the daemon; its first cycle warms the detectors from Prometheus history, so an operator
restart does not start their learning over (:func:`controller.traffic_signals.warm_up`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import kopf

from controller.cycle import CycleOutcome, Deps, PolicySnapshot
from controller.handlers.daemons import interval_of, sleep_until_next_cycle
from controller.scaling import target_key
from controller.traffic_signals import SignalMemory

logger = logging.getLogger(__name__)

Reconcile = Callable[[PolicySnapshot, Deps, SignalMemory, float, tuple[str, ...]], Awaitable[CycleOutcome]]
TargetKey = tuple[str, str, str, str]
Claims = Mapping[Any, Iterable[tuple[str, str]]]


def claim(
    namespace: str, name: str, spec: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[TargetKey, tuple[str, str]]:
    """A policy's entry in its kind's index of targets: (creation time, name) under the target's identity.

    A policy that is off writes nothing, so it claims nothing.
    """
    key = target_key(namespace, spec)
    if key is None or spec.get("mode") == "Off":
        return {}
    return {key: (str(meta.get("creationTimestamp") or ""), name)}


def older_claims(namespace: str, name: str, created: str, spec: Mapping[str, Any], claims: Claims) -> tuple[str, ...]:
    """The policies of the same kind on the same target that claimed it first (creation time, then name).

    The oldest claim wins, as for ScalingPolicies: a new policy never takes an object over from a
    running one, and deleting the older one hands the object to the next at its next cycle.
    """
    key = target_key(namespace, spec)
    if key is None:
        return ()
    mine = (created, name)
    return tuple(sorted(f"{namespace}/{p}" for c, p in claims.get(key, ()) if (c, p) < mine))


async def run_traffic_policy(
    kind: str,
    reconcile: Reconcile,
    stopped: kopf.DaemonStopped,
    namespace: str,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    claims: Claims,
) -> None:
    deps: Deps = memo.deps
    wakeup = memo["wakeup"] = asyncio.Event()
    memory = SignalMemory()
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
            created = str(body.meta.get("creationTimestamp") or "")
            older = older_claims(namespace, name, created, spec, claims)
            try:
                with deps.metrics.reconcile_timer(kind):
                    outcome = await reconcile(snapshot, deps, memory, time.time(), older)
                written_status = outcome.status
            except Exception:  # an unexpected bug must not kill the daemon: report and retry next interval
                logger.exception("reconcile of %s %s/%s failed; retrying in one interval", kind, namespace, name)
            await sleep_until_next_cycle(stopped, wakeup, interval_of(spec))
    finally:
        deps.metrics.forget(kind, namespace, name)
