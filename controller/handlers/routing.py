"""Kopf handlers of RoutingPolicies: one daemon each, woken early by a spec change."""

from __future__ import annotations

from typing import Any

import kopf

from controller.cycle import GROUP, VERSION
from controller.handlers.daemons import wake_daemon
from controller.handlers.traffic_daemon import run_traffic_policy
from controller.routing import KIND, reconcile_routing

PLURAL = "routingpolicies"


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    wake_daemon(memo)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def run_policy(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    await run_traffic_policy(KIND, reconcile_routing, stopped, namespace or "", name, body, memo)
