"""Kopf handlers of ScalingPolicies: thin glue between Kopf's events and :mod:`controller.scaling`.

* one **daemon** per ScalingPolicy runs a cycle every ``spec.interval`` seconds (a spec change
  wakes it at once), and keeps the policy's forecasting loop (load history, fitted model) in
  memory between cycles; a cycle that fails unexpectedly is logged and retried next interval, so a
  single broken policy can never stop its daemon or touch the others;
* two **indexes** (ScalingPolicies and HPAs by target workload) let every cycle check the
  one-writer rule from memory, without listing objects from the API each time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from controller.cycle import GROUP, VERSION, Deps, PolicySnapshot
from controller.forecast_loop import ForecastSession
from controller.handlers.daemons import interval_of, sleep_until_next_cycle, wake_daemon
from controller.scaling import KIND, OtherWriters, reconcile_scaling, target_key

logger = logging.getLogger(__name__)

PLURAL = "scalingpolicies"


@kopf.index(GROUP, VERSION, PLURAL)
def policies_by_target(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[tuple[str, str, str, str], tuple[str, str]] | None:
    if spec.get("mode") == "Off":  # a policy that is off writes nothing, so it claims nothing
        return None
    key = target_key(namespace or "", spec)
    return {key: (str(meta.get("creationTimestamp") or ""), name)} if key else None


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def hpas_by_target(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str, str, str], str] | None:
    key = target_key(namespace or "", {"targetRef": spec.get("scaleTargetRef") or {}})
    return {key: name} if key else None


def other_writers(
    namespace: str,
    name: str,
    created: str,
    spec: Mapping[str, Any],
    policies: Mapping[Any, Iterable[tuple[str, str]]],
    hpas: Mapping[Any, Iterable[str]],
) -> OtherWriters:
    """The oldest claim on a workload wins (creation time, then name); later ones are conflicts."""
    key = target_key(namespace, spec)
    if key is None:
        return OtherWriters()
    mine = (created, name)
    older = sorted(f"{namespace}/{p}" for c, p in policies.get(key, ()) if (c, p) < mine)
    return OtherWriters(hpas=tuple(sorted(hpas.get(key, ()))), older_policies=tuple(older))


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    wake_daemon(memo)


# Kopf passes the indexes as extra keyword arguments, which its DaemonFn protocol cannot express.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)  # type: ignore[arg-type]
async def run_policy(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    policies_by_target: kopf.Index[Any, tuple[str, str]],
    hpas_by_target: kopf.Index[Any, str],
    **_: Any,
) -> None:
    deps: Deps = memo.deps
    namespace = namespace or ""  # ScalingPolicies are namespaced; Kopf's signature is generic
    wakeup = memo["wakeup"] = asyncio.Event()
    written_status: Mapping[str, Any] | None = None  # ours is fresher than the watch stream's copy
    forecasting = ForecastSession()  # the load history and model live as long as the daemon
    try:
        while not stopped:
            spec = dict(body.spec)
            snapshot = PolicySnapshot(
                kind=KIND,
                namespace=namespace,
                name=name,
                uid=body.meta.uid,
                generation=int(body.meta.get("generation") or 0),
                spec=spec,
                status=written_status if written_status is not None else dict(body.status),
            )
            others = other_writers(
                namespace, name, str(body.meta.get("creationTimestamp") or ""), spec, policies_by_target, hpas_by_target
            )
            started = time.monotonic()
            try:
                with deps.metrics.reconcile_timer(KIND):
                    outcome = await reconcile_scaling(snapshot, others, deps, time.time(), forecasting)
                written_status = outcome.status
            except Exception:  # an unexpected bug must not kill the daemon: report and retry next interval
                logger.exception("reconcile of %s/%s failed; retrying in one interval", namespace, name)
            # A fixed rate, not a fixed pause: the cycle's own duration does not stretch the interval.
            await sleep_until_next_cycle(stopped, wakeup, interval_of(spec) - (time.monotonic() - started))
    finally:
        # The daemon stops when the policy is deleted (or the operator stops): its series go with it.
        deps.metrics.forget(KIND, namespace, name)
        forecasting.close()
