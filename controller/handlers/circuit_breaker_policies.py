"""Kopf handlers of CircuitBreakerPolicies: one daemon each, woken early by a spec change; an index of
them by DestinationRule for the one-writer rule."""

from __future__ import annotations

from typing import Any

import kopf

from controller.clients.refs import GROUP, VERSION
from controller.handlers.daemons import TargetKey, register_policy_kind
from controller.handlers.traffic_daemon import run_traffic_policy
from controller.traffic.circuit_breakers import KIND, reconcile_circuit_breakers

PLURAL = "circuitbreakerpolicies"


register_policy_kind(PLURAL, claims_index="circuit_breakers_by_target")


# Kopf passes the indexes as extra keyword arguments, which its DaemonFn protocol cannot express.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[arg-type]
async def run_policy(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    circuit_breakers_by_target: kopf.Index[TargetKey, tuple[str, str]],
    **_: Any,
) -> None:
    await run_traffic_policy(
        KIND, reconcile_circuit_breakers, stopped, namespace or "", name, body, memo, circuit_breakers_by_target
    )
