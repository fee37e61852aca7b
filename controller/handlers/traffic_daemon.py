"""The daemon of a traffic policy (CircuitBreakerPolicy, RoutingPolicy), shared by both kinds.

The cycle loop, its cadence and the one-writer claims are every kind's (:mod:`.daemons`). In
addition a traffic daemon owns the policy's :class:`~controller.traffic.signals.SignalMemory`
(detectors and request-rate history), which lives as long as the daemon; its first cycle warms
the detectors from Prometheus history, so an operator restart does not start their learning over
(:func:`controller.traffic.signals.warm_up`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import kopf

from controller.handlers.daemons import Claims, older_claims, run_cycles
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot
from controller.traffic.signals import SignalMemory

Reconcile = Callable[[PolicySnapshot, Deps, SignalMemory, float, tuple[str, ...]], Awaitable[CycleOutcome]]


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
    memory = SignalMemory()

    async def cycle(snapshot: PolicySnapshot, now: float) -> CycleOutcome:
        created = str(body.meta.get("creationTimestamp") or "")
        older = older_claims(namespace, name, created, snapshot.spec, claims)
        return await reconcile(snapshot, deps, memory, now, older)

    await run_cycles(kind, stopped, namespace, name, body, memo, cycle)
