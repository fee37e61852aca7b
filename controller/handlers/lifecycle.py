"""Operator start-up and shutdown: Kopf settings and the adapters every policy shares."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from controller.clients.kube import DEFAULT_CONNECTIONS, Kube, load_configuration
from controller.clients.prometheus import PrometheusPool
from controller.clients.tenancy import PrometheusAccess
from controller.handlers.diffbase import SpecDiffBaseStorage
from controller.observability import MetricsServer, OperatorMetrics
from controller.observability.decisions import DecisionLog
from controller.reconcile.cycle import Deps
from controller.scaling.workers import worker_pool

# Kubernetes requests in flight at once; more wait for a connection, within their deadline. Prometheus
# has its own connections, capped per endpoint (controller/clients/prometheus.py).
KUBE_CONNECTIONS = int(os.environ.get("INFERCAST_KUBE_CONNECTIONS", str(DEFAULT_CONNECTIONS)))
# Forecasting model selections (seconds of CPU each) run in these worker processes, shared by every
# policy, so the event loop never waits for one; 0 runs them in a thread instead.
SELECTION_PROCESSES = int(os.environ.get("INFERCAST_SELECTION_PROCESSES", "2"))
# How much lower the selection workers' CPU priority is than the event loop's: when CPU is short, a
# late decision misses the schedule, while a late selection only stretches its policy's refit interval.
SELECTION_WORKER_NICENESS = 10
# The forecast of each new sample (milliseconds each, on the decision's path) runs in these, at the
# event loop's priority, outside its process; 0 runs it in a thread of the operator instead.
FORECAST_PROCESSES = int(os.environ.get("INFERCAST_FORECAST_PROCESSES", "1"))
# `infercast run --metrics-port` puts the port into the root memo; 0 serves no metrics.
DEFAULT_METRICS_PORT = 8080


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's bookkeeping lives in annotations under our own prefix, not in the status we own.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="infercast.io")
    settings.persistence.diffbase_storage = SpecDiffBaseStorage(prefix="infercast.io", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 30
    access: PrometheusAccess = memo.get("prometheus_access") or PrometheusAccess()
    metrics = OperatorMetrics()
    port = int(memo.get("metrics_port", DEFAULT_METRICS_PORT))
    address = str(memo.get("metrics_address", "0.0.0.0"))
    memo.metrics_server = metrics.serve(port, address) if port else None
    memo.deps = Deps(
        # Under leader election the memo carries the Lease's fence: a replica that lost it writes nothing.
        kube=Kube(load_configuration(), max_connections=KUBE_CONNECTIONS, fence=memo.get("fence")),
        prometheus=PrometheusPool(
            on_request=metrics.observe_query, max_connections=access.max_connections_per_endpoint
        ),
        prometheus_access=access,
        decision_sinks=(DecisionLog().emit, metrics.record_decision),
        metrics=metrics,
        selection_processes=worker_pool(SELECTION_PROCESSES, SELECTION_WORKER_NICENESS, "model selection"),
        forecast_processes=worker_pool(FORECAST_PROCESSES, name="forecast"),
    )


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    deps: Deps | None = memo.get("deps")
    server: MetricsServer | None = memo.get("metrics_server")
    if server is not None:
        server.stop()
    if deps is not None:
        await deps.prometheus.close()
        await deps.kube.close()
        for pool in (deps.selection_processes, deps.forecast_processes):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
