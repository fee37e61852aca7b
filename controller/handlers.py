"""Kopf handlers: thin glue between Kopf's events and the Kopf-free reconcile step.

* one **daemon** per ScalingPolicy runs a cycle every ``spec.interval`` seconds (a spec change
  wakes it at once); a cycle that fails unexpectedly is logged and retried next interval, so a
  single broken policy can never stop its daemon or touch the others;
* two **indexes** (ScalingPolicies and HPAs by target workload) let every cycle check the
  one-writer rule from memory, without listing objects from the API each time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from controller.decisions import DecisionLog
from controller.kube import Kube, load_api_client
from controller.prometheus import PrometheusPool
from controller.reconcile import Deps, OtherWriters, PolicySnapshot, reconcile_scaling, target_key
from controller.spec import MAX_INTERVAL_S, MIN_INTERVAL_S

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "infercast.io", "v1alpha1", "scalingpolicies"
# Blocking client calls (Kubernetes, Prometheus) run here, never on the event loop.
IO_THREADS = int(os.environ.get("INFERCAST_IO_THREADS", "32"))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's bookkeeping lives in annotations under our own prefix, not in the status we own.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="infercast.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="infercast.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 30
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="infercast-io")
    memo.deps = Deps(
        kube=Kube(load_api_client(), executor=executor),
        prometheus=PrometheusPool(executor=executor),
        decision_log=DecisionLog(),
    )


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    deps: Deps | None = memo.get("deps")
    if deps is not None and deps.kube.executor is not None:
        deps.kube.executor.shutdown(wait=False, cancel_futures=True)


@kopf.index(GROUP, VERSION, PLURAL)
def policies_by_target(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[tuple[str, str, str, str], tuple[str, str]] | None:
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


def _interval(spec: Mapping[str, Any]) -> float:
    try:
        return float(min(max(int(spec.get("interval", 15)), MIN_INTERVAL_S), MAX_INTERVAL_S))
    except (TypeError, ValueError):
        return 15.0


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def spec_changed(memo: kopf.Memo, **_: Any) -> None:
    wakeup: asyncio.Event | None = memo.get("wakeup")
    if wakeup is not None:
        wakeup.set()


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
    while not stopped:
        spec = dict(body.spec)
        snapshot = PolicySnapshot(
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
        try:
            outcome = await reconcile_scaling(snapshot, others, deps, time.time())
            written_status = outcome.status
        except Exception:  # an unexpected bug must not kill the daemon: report and retry next interval
            logger.exception("reconcile of %s/%s failed; retrying in one interval", namespace, name)
        wakeup.clear()
        await _sleep(stopped, wakeup, _interval(spec))


async def _sleep(stopped: kopf.DaemonStopped, wakeup: asyncio.Event, seconds: float) -> None:
    waiters = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wakeup.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
