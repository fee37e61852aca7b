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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from controller.cycle import CycleOutcome, Deps, PolicySnapshot
from controller.handlers.daemons import interval_of, sleep_until_next_cycle
from controller.traffic_signals import SignalMemory

logger = logging.getLogger(__name__)

Reconcile = Callable[[PolicySnapshot, Deps, SignalMemory, float], Awaitable[CycleOutcome]]


async def run_traffic_policy(
    kind: str,
    reconcile: Reconcile,
    stopped: kopf.DaemonStopped,
    namespace: str,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
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
            try:
                with deps.metrics.reconcile_timer(kind):
                    outcome = await reconcile(snapshot, deps, memory, time.time())
                written_status = outcome.status
            except Exception:  # an unexpected bug must not kill the daemon: report and retry next interval
                logger.exception("reconcile of %s %s/%s failed; retrying in one interval", kind, namespace, name)
            await sleep_until_next_cycle(stopped, wakeup, interval_of(spec))
    finally:
        deps.metrics.forget(kind, namespace, name)
