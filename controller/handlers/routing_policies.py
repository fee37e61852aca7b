"""Kopf handlers of RoutingPolicies: one daemon each, woken early by a spec change; an index of them by
VirtualService or HTTPRoute for the one-writer rule, and one of the replicas forecast-driven
ScalingPolicies decided per workload, which the weights follow."""

from __future__ import annotations

import functools
from typing import Any

import kopf

from controller.clients.refs import GROUP, VERSION
from controller.handlers.daemons import TargetKey, register_policy_kind
from controller.handlers.traffic_daemon import run_traffic_policy
from controller.reconcile.cycle import target_key
from controller.traffic.routing_weights import KIND, reconcile_routing

PLURAL = "routingpolicies"


register_policy_kind(PLURAL, claims_index="routing_policies_by_target")


@kopf.index(GROUP, VERSION, "scalingpolicies")
async def forecast_replicas_by_workload(
    namespace: str | None, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[TargetKey, float] | None:
    """The replicas a forecast-driven ScalingPolicy decided for its workload (Auto mode: it writes them).

    Async although it does no I/O, as ``_claim_of`` in :mod:`controller.handlers.daemons`: it runs on
    every status write of every ScalingPolicy."""
    desired = status.get("desiredReplicas")
    if spec.get("mode", "Auto") != "Auto" or not spec.get("forecast") or not isinstance(desired, int | float):
        return None
    key = target_key(namespace or "", spec)
    return {key: float(desired)} if key else None


# Kopf passes the indexes as extra keyword arguments, which its DaemonFn protocol cannot express.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[arg-type]
async def run_policy(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    routing_policies_by_target: kopf.Index[TargetKey, tuple[str, str]],
    forecast_replicas_by_workload: kopf.Index[TargetKey, float],
    **_: Any,
) -> None:
    # Kopf's indexes are live views: bound once, they are current at every cycle.
    reconcile = functools.partial(reconcile_routing, forecast_replicas=forecast_replicas_by_workload)
    await run_traffic_policy(KIND, reconcile, stopped, namespace or "", name, body, memo, routing_policies_by_target)
