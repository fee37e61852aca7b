"""Kopf handlers of ScalingPolicies: thin glue between Kopf's events and :mod:`controller.scaling.cycle`.

* one **daemon** per ScalingPolicy runs a cycle every ``spec.interval`` seconds (a spec change
  wakes it at once), and keeps the policy's forecasting loop (load history, fitted model) in
  memory between cycles; a cycle that fails unexpectedly is logged and retried next interval, so a
  single broken policy can never stop its daemon or touch the others;
* two **indexes** (ScalingPolicies and HPAs by target workload) let every cycle check the
  one-writer rule from memory, without listing objects from the API each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from controller.clients.refs import GROUP, VERSION
from controller.handlers.daemons import Claims, TargetKey, older_claims, register_policy_kind, run_cycles
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, target_key
from controller.scaling.cycle import KIND, OtherWriters, reconcile_scaling
from controller.scaling.forecast_loop import ForecastSession

PLURAL = "scalingpolicies"


register_policy_kind(PLURAL, claims_index="policies_by_target")


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def hpas_by_target(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[TargetKey, str] | None:
    key = target_key(namespace or "", {"targetRef": spec.get("scaleTargetRef") or {}})
    return {key: name} if key else None


# Kopf passes the indexes as extra keyword arguments, which its DaemonFn protocol cannot express.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[arg-type]
async def run_policy(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    policies_by_target: Claims,
    hpas_by_target: Mapping[Any, Iterable[str]],
    **_: Any,
) -> None:
    deps: Deps = memo.deps
    namespace = namespace or ""  # ScalingPolicies are namespaced; Kopf's signature is generic
    forecasting = ForecastSession()  # the load history and model live as long as the daemon

    async def cycle(snapshot: PolicySnapshot, now: float) -> CycleOutcome:
        created = str(body.meta.get("creationTimestamp") or "")
        key = target_key(namespace, snapshot.spec)
        others = OtherWriters(
            hpas=tuple(sorted(hpas_by_target.get(key, ()))) if key else (),
            older_policies=older_claims(namespace, name, created, snapshot.spec, policies_by_target),
        )
        return await reconcile_scaling(snapshot, others, deps, now, forecasting)

    try:
        await run_cycles(KIND, stopped, namespace, name, body, memo, cycle)
    finally:
        forecasting.close()
