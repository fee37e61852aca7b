"""A simulated vLLM fleet: the pods of one Deployment, their load and their ``/metrics``.

``make demo`` has no GPU and no cluster, yet the operator must see the same things it sees in
production: a Deployment whose ``spec.replicas`` it changes, pods that take a while to become
Ready, and vLLM metrics in Prometheus that react to the replica count. This process provides all
three. It replays a slice of an Azure LLM trace through :mod:`controller.backtest.engine`
(in compressed time, with an optional load multiplier) and plays the Kubernetes parts that a real
cluster would: the ReplicaSet controller, the scheduler and the kubelet. It polls the Deployment's
``spec.replicas``, creates and deletes Pod objects, flips their ``Ready`` condition after the cold
start and writes the Deployment's ``status`` through ``/status``. With ``--free-gpu-nodes K`` the
cluster has only K GPU nodes free: a pod beyond them stays ``Pending`` (``PodScheduled=False``,
``Unschedulable``) for ``--node-provisioning-delay`` seconds, until a node autoscaler has added a
node, and starts its cold start only then. It serves ``/metrics`` with the
vLLM metric names and a ``namespace``/``pod``/``model_name`` label set per pod, as Prometheus would
see them after Kubernetes service discovery.

Run it as ``python -m devtools.fleet --api URL --namespace NS --deployment NAME
--trace CSV --port P``; it logs to stderr and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import http.server
import itertools
import json
import logging
import math
import pathlib
import random
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from controller.backtest.engine import (
    EngineEvent,
    EngineParams,
    Finished,
    FirstToken,
    FleetEngine,
    FleetSnapshot,
    ReplicaGone,
    ReplicaPhase,
    Request,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# vLLM's own histogram buckets (vllm/engine/metrics.py), so that PromQL written against a real
# fleet reads the same quantiles here.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_API_TIMEOUT_S = 5.0


# -- the workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSlice:
    """Which part of a trace to replay, and how much faster and heavier than recorded.

    Arrival times are compressed by ``speedup``, which also multiplies the request rate; the
    ``load_scale`` multiplies it again (below 1 it thins the trace, above 1 it duplicates rows),
    so the rate the fleet sees is ``speedup * load_scale`` times the recorded one while the
    trace's rises and falls play ``speedup`` times faster.
    """

    path: pathlib.Path
    start_offset_s: float = 0.0
    speedup: float = 1.0
    load_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.speedup <= 0 or self.load_scale < 0 or self.start_offset_s < 0:
            raise ValueError("speedup must be > 0, load_scale and start_offset_s >= 0")


def _trace_seconds(timestamp: str) -> float:
    # The Azure traces carry 7 fractional digits, one more than datetime parses.
    whole, _, fraction = timestamp.partition(".")
    base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return base + (float(f"0.{fraction}") if fraction else 0.0)


def _open_text(path: pathlib.Path) -> TextIO:
    """A trace file as text, gzipped (``.gz``) or plain, as the backtester reads it too."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def read_trace(trace: TraceSlice) -> list[Request]:
    """The requests of the slice, with arrival times in seconds of replay (0 = replay start).

    Duplicated rows (``load_scale`` > 1) are spread over the following trace second, so that a
    multiplied trace does not arrive in synchronised bursts. The same slice always gives the
    same requests (seeded).
    """
    rng = random.Random(trace.seed)
    whole_copies = math.floor(trace.load_scale)
    extra_copy_chance = trace.load_scale - whole_copies
    requests: list[Request] = []
    with _open_text(trace.path) as lines:
        rows = csv.DictReader(lines)
        origin: float | None = None
        for row in rows:
            seconds = _trace_seconds(row["TIMESTAMP"])
            origin = seconds if origin is None else origin
            offset = seconds - origin - trace.start_offset_s
            if offset < 0:
                continue
            copies = whole_copies + (rng.random() < extra_copy_chance)
            for copy_index in range(copies):
                jitter = rng.random() if copy_index else 0.0
                requests.append(
                    Request(
                        arrival_s=(offset + jitter) / trace.speedup,
                        prompt_tokens=max(1, int(row["ContextTokens"])),
                        output_tokens=max(1, int(row["GeneratedTokens"])),
                    )
                )
    requests.sort(key=lambda r: r.arrival_s)
    return requests


# -- names ---------------------------------------------------------------------------------------


def pod_template_hash(deployment: str, template: Mapping[str, Any]) -> str:
    """A stable 10-hex-digit hash standing in for the ReplicaSet's ``pod-template-hash``."""
    digest = hashlib.sha256(json.dumps([deployment, template], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:10]


def pod_name(deployment: str, template_hash: str, replica_id: int) -> str:
    """``NAME-<10 hex>-<5 alnum>``, the shape of a ReplicaSet's pod names, stable per replica."""
    digest = hashlib.sha256(f"{template_hash}/{replica_id}".encode()).digest()
    suffix = "".join(_NAME_SUFFIX_ALPHABET[byte % len(_NAME_SUFFIX_ALPHABET)] for byte in digest[:5])
    return f"{deployment}-{template_hash}-{suffix}"


# -- metrics -------------------------------------------------------------------------------------


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one and sum to ``total``."""
    if parts <= 0:
        return []
    base, remainder = divmod(total, parts)
    return [base + (index < remainder) for index in range(parts)]


# The simulated replicas are one GPU each; DCGM labels a GPU with its model name.
SIMULATED_GPU = "NVIDIA H100 80GB HBM3 (simulated)"
GPU_UTIL_SMOOTHING = 0.1


class VllmMetrics:
    """The vLLM metric families of the fleet, one ``namespace``/``pod``/``model_name`` set per pod.

    Only serving pods have series: a cold-starting vLLM has not opened its HTTP port yet. The
    router queue is attributed evenly to the ready pods, as vLLM's waiting gauge is per engine,
    so that the sum of ``vllm:num_requests_waiting`` over the pods is the total waiting.
    """

    def __init__(self, namespace: str, model_name: str, max_seqs: int) -> None:
        self.registry = CollectorRegistry()
        self._namespace = namespace
        self._model_name = model_name
        self._max_seqs = max_seqs
        self._lock = threading.Lock()
        # Counters are published as deltas of the engine's cumulative totals.
        self._published_tokens: dict[str, tuple[int, int]] = {}
        labels = ("namespace", "pod", "model_name")
        self._running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", labels,
            registry=self.registry,
        )  # fmt: skip
        self._waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels,
            registry=self.registry,
        )  # fmt: skip
        self._kv_cache = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels,
            registry=self.registry,
        )  # fmt: skip
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels,
            buckets=TTFT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
            labels, buckets=E2E_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", labels, registry=self.registry
        )
        self._generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", labels,
            registry=self.registry,
        )  # fmt: skip
        self._success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            (*labels, "finished_reason"), registry=self.registry,
        )  # fmt: skip
        # What NVIDIA's DCGM exporter shows for the pod's one GPU (with its Kubernetes pod mapping):
        # the share of recent time the engine was busy, as a percentage.
        self._gpu_util = Gauge(
            "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", ("namespace", "pod", "gpu", "modelName"),
            registry=self.registry,
        )  # fmt: skip
        self._busy: dict[str, float] = {}

    def render(self) -> bytes:
        """The plain text exposition format, whatever the client asked for.

        prometheus-client 0.26 rewrites ``vllm:`` to ``vllm_`` in OpenMetrics (client_python#1177),
        and real vLLM pods are scraped under the colon names.
        """
        with self._lock:
            return generate_latest(self.registry)

    def record(self, snapshot: FleetSnapshot, events: Iterable[EngineEvent], pods: Mapping[int, str]) -> None:
        with self._lock:
            for event in events:
                pod = pods.get(event.replica_id)
                if isinstance(event, ReplicaGone):
                    if pod is not None:
                        self._forget(pod)
                elif pod is not None:
                    self._observe(event, pod)
            self._publish(snapshot, pods)

    def _labels(self, pod: str) -> tuple[str, str, str]:
        return (self._namespace, pod, self._model_name)

    def _observe(self, event: FirstToken | Finished, pod: str) -> None:
        labels = self._labels(pod)
        if isinstance(event, FirstToken):
            self._ttft.labels(*labels).observe(event.ttft_s)
        else:
            self._e2e.labels(*labels).observe(event.e2e_s)
            self._success.labels(*labels, "stop").inc()

    def _publish(self, snapshot: FleetSnapshot, pods: Mapping[int, str]) -> None:
        ready = snapshot.ready
        router_share = dict(
            zip((r.replica_id for r in ready), split_evenly(snapshot.router_waiting, len(ready)), strict=True)
        )
        for replica in snapshot.replicas:
            pod = pods.get(replica.replica_id)
            if pod is None or replica.phase is ReplicaPhase.STARTING:
                continue
            labels = self._labels(pod)
            if pod not in self._published_tokens:
                self._start_series(pod)
            held = replica.running + replica.awaiting_prefill
            self._running.labels(*labels).set(replica.running)
            waiting = replica.awaiting_prefill + router_share.get(replica.replica_id, 0)
            self._waiting.labels(*labels).set(waiting)
            self._kv_cache.labels(*labels).set(held / self._max_seqs)
            # DCGM averages utilisation over its sampling period; an EWMA of "busy at this tick" does
            # the same over about ten ticks.
            busy = self._busy.get(pod, 0.0) + GPU_UTIL_SMOOTHING * (float(held > 0) - self._busy.get(pod, 0.0))
            self._busy[pod] = busy
            self._gpu_util.labels(self._namespace, pod, "0", SIMULATED_GPU).set(round(100 * busy, 1))
            # Decoding is a fluid in the engine; tokens leave a real engine whole.
            tokens = (replica.prompt_tokens_total, math.floor(replica.generation_tokens_total))
            prompt_before, generation_before = self._published_tokens.get(pod, (0, 0))
            self._prompt_tokens.labels(*labels).inc(tokens[0] - prompt_before)
            self._generation_tokens.labels(*labels).inc(tokens[1] - generation_before)
            self._published_tokens[pod] = tokens

    def _start_series(self, pod: str) -> None:
        # vLLM binds its label sets at start-up: a serving pod shows zeros before its first request.
        labels = self._labels(pod)
        for family in (self._ttft, self._e2e, self._prompt_tokens, self._generation_tokens):
            family.labels(*labels)
        self._success.labels(*labels, "stop")

    def _forget(self, pod: str) -> None:
        for family in (
            self._running, self._waiting, self._kv_cache, self._ttft, self._e2e,
            self._prompt_tokens, self._generation_tokens, self._success,
        ):  # fmt: skip
            family.remove_by_labels({"pod": pod})
        self._gpu_util.remove_by_labels({"pod": pod})
        self._busy.pop(pod, None)
        self._published_tokens.pop(pod, None)


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    metrics: VllmMetrics

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = self.metrics.render()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per scrape would drown the fleet's log.
        pass


def serve_metrics(metrics: VllmMetrics, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """Serve ``/metrics`` from a daemon thread; ``port`` 0 picks a free one."""
    handler = type("MetricsHandler", (_MetricsHandler,), {"metrics": metrics})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


# -- the cluster side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentView:
    """What the fleet needs from the Deployment it plays the ReplicaSet for."""

    replicas: int
    generation: int
    selector_labels: Mapping[str, str]
    template: Mapping[str, Any]


@dataclass
class GpuNodes:
    """The cluster's GPU nodes for the fleet (one replica each) and a node autoscaler that adds them.

    A pod that finds no free node stays Pending; the autoscaler adds a node for it ``provisioning_s``
    after it asked. Added nodes stay: a real autoscaler removes an unneeded node only after minutes
    (cluster-autoscaler: 10), longer than a demo or a test. Time is the fleet's replay clock.
    """

    total: int
    provisioning_s: float
    arriving: list[float] = field(default_factory=list)

    def free(self, occupied: int, now_s: float) -> int:
        """Nodes without a replica now, once the nodes due by ``now_s`` have joined."""
        self.total += sum(t <= now_s for t in self.arriving)
        self.arriving = [t for t in self.arriving if t > now_s]
        return max(0, self.total - occupied)

    def provision(self, now_s: float) -> None:
        self.arriving.append(now_s + self.provisioning_s)


def _now_stamp() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _PodRecord:
    name: str
    scheduled_at: str | None = None  # when the scheduler bound it; None while Pending
    reported: str = ""  # the state whose status was last written: pending, scheduled or ready
    deleted: bool = False


@dataclass
class ReplicaSetSimulator:
    """Plays the ReplicaSet controller, the scheduler and the kubelet for the engine's replicas.

    Pods mirror the engine: a pod per replica, ``PodScheduled`` when the replica starts, ``Ready``
    when its cold start is over, deleted when the replica stops taking requests (a draining pod
    still serves ``/metrics`` until it has finished its requests, as a terminating vLLM does). A
    pod for which no GPU node is free is ``pending`` (``PodScheduled=False``, ``Unschedulable``)
    and has no replica until :meth:`bind` gives it one. Every write is retried on the next sync if
    the API call fails, so the fleet keeps serving load through API hiccups.
    """

    core: kubernetes.client.CoreV1Api
    apps: kubernetes.client.AppsV1Api
    namespace: str
    deployment: str
    pods: dict[int, _PodRecord] = field(default_factory=dict)
    pending: list[_PodRecord] = field(default_factory=list)
    """Pods without a node, oldest first."""
    last_status: dict[str, int] | None = field(default=None, init=False)
    api_reachable: bool = field(default=True, init=False)
    _serial: Iterator[int] = field(default_factory=itertools.count, init=False)

    def read_deployment(self) -> DeploymentView:
        try:
            deployment = self.apps.read_namespaced_deployment(
                self.deployment, self.namespace, _request_timeout=_API_TIMEOUT_S
            )
        except urllib3.exceptions.HTTPError as exc:
            self.note_unreachable(exc)
            raise
        self.note_reachable()
        body = self.apps.api_client.sanitize_for_serialization(deployment)
        spec = body.get("spec") or {}
        return DeploymentView(
            replicas=int(spec.get("replicas", 1)),
            generation=int(body["metadata"].get("generation", 1)),
            selector_labels=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            template=spec.get("template") or {},
        )

    def pod_names(self) -> dict[int, str]:
        return {replica_id: record.name for replica_id, record in self.pods.items()}

    def create_pending(self, view: DeploymentView, template_hash: str) -> bool:
        """A pod no node fits yet; False when the API refused it (the next poll asks again)."""
        record = self._create_pod(view, template_hash)
        if record is None:
            return False
        self.pending.append(record)
        self._write_pod_status(record, "pending")
        logger.info("pod %s created, pending: no free GPU node", record.name)
        return True

    def drop_pending(self, count: int) -> None:
        """Scale-down takes pods without a node first (as a ReplicaSet does), the newest first."""
        for record in self.pending[len(self.pending) - count :]:
            self._delete_pod(record)
        del self.pending[len(self.pending) - count :]

    def bind(self, replica_id: int) -> None:
        """The oldest pending pod got a node: it becomes the pod of the engine's replica ``replica_id``."""
        record = self.pending.pop(0)
        record.scheduled_at = _now_stamp()
        self.pods[replica_id] = record
        logger.info("pod %s scheduled on a new node (cold start)", record.name)

    def sync(self, snapshot: FleetSnapshot, view: DeploymentView, template_hash: str) -> None:
        live = {replica.replica_id: replica for replica in snapshot.replicas}
        for replica in snapshot.replicas:
            if replica.replica_id not in self.pods:
                record = self._create_pod(view, template_hash)
                if record is not None:
                    record.scheduled_at = _now_stamp()
                    self.pods[replica.replica_id] = record
                    logger.info("pod %s created (cold start)", record.name)
        for replica_id, record in list(self.pods.items()):
            phase = live[replica_id].phase if replica_id in live else None
            if phase is None or phase is ReplicaPhase.DRAINING:
                self._delete_pod(record)
                if phase is None and record.deleted:
                    del self.pods[replica_id]
            else:
                self._write_pod_status(record, "ready" if phase is ReplicaPhase.READY else "scheduled")
        for record in self.pending:
            self._write_pod_status(record, "pending")
        counted = len([r for r in snapshot.replicas if r.phase is not ReplicaPhase.DRAINING]) + len(self.pending)
        ready = sum(r.phase is ReplicaPhase.READY for r in snapshot.replicas)
        self._write_status(
            {
                "replicas": counted,
                "updatedReplicas": counted,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": counted - ready,
                "observedGeneration": view.generation,
            }
        )

    def _create_pod(self, view: DeploymentView, template_hash: str) -> _PodRecord | None:
        name = pod_name(self.deployment, template_hash, next(self._serial))
        template = dict(view.template)
        labels = {**(template.get("metadata") or {}).get("labels", {}), **view.selector_labels}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {**labels, "pod-template-hash": template_hash},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{self.deployment}-{template_hash}",
                        "uid": hashlib.sha256(template_hash.encode()).hexdigest()[:32],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]},
        }
        if not self._call(self.core.create_namespaced_pod, self.namespace, body, conflict_ok=True):
            return None
        return _PodRecord(name)

    def _write_pod_status(self, record: _PodRecord, state: str) -> None:
        """The pod's status for ``state`` (pending, scheduled, ready), once: what a scheduler and kubelet write."""
        if record.reported == state or record.deleted:
            return
        now = _now_stamp()
        if state == "pending":
            status: dict[str, Any] = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/0 nodes are available: insufficient nvidia.com/gpu.",
                        "lastTransitionTime": now,
                    }
                ],
            }
        else:
            ready = "True" if state == "ready" else "False"
            status = {
                "phase": "Running",
                "startTime": record.scheduled_at,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": record.scheduled_at},
                    {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                    {"type": "Ready", "status": ready, "lastTransitionTime": now},
                ],
            }
        if self._call(self.core.patch_namespaced_pod_status, record.name, self.namespace, {"status": status}):
            record.reported = state
            if state == "ready":
                logger.info("pod %s ready", record.name)

    def _delete_pod(self, record: _PodRecord) -> None:
        if record.deleted:
            return
        if self._call(self.core.delete_namespaced_pod, record.name, self.namespace, missing_ok=True):
            record.deleted = True
            logger.info("pod %s deleted", record.name)

    def _write_status(self, status: dict[str, int]) -> None:
        if status == self.last_status:
            return
        if self._call(
            self.apps.patch_namespaced_deployment_status, self.deployment, self.namespace, {"status": status}
        ):
            self.last_status = status

    def _call(self, method: Any, *args: Any, conflict_ok: bool = False, missing_ok: bool = False) -> bool:
        try:
            method(*args, _request_timeout=_API_TIMEOUT_S)
        except ApiException as exc:
            if not ((conflict_ok and exc.status == 409) or (missing_ok and exc.status == 404)):
                logger.warning("%s failed: %s %s", method.__name__, exc.status, exc.reason)
                return False
        except urllib3.exceptions.HTTPError as exc:
            self.note_unreachable(exc)
            return False
        self.note_reachable()
        return True

    def note_unreachable(self, exc: Exception) -> None:
        # Once per outage: the fleet polls twice a second and would otherwise flood its log.
        if self.api_reachable:
            logger.warning("the API server is unreachable, retrying: %s", exc)
        self.api_reachable = False

    def note_reachable(self) -> None:
        if not self.api_reachable:
            logger.info("the API server is reachable again")
        self.api_reachable = True


# -- the process ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetOptions:
    api_url: str
    namespace: str
    deployment: str
    trace: TraceSlice
    port: int
    host: str = "127.0.0.1"
    cold_start_s: float = 15.0
    model_name: str = DEFAULT_MODEL
    tick_s: float = 0.1
    poll_s: float = 0.5
    ready_file: pathlib.Path | None = None
    free_gpu_nodes: int | None = None
    """GPU nodes free besides those of the Deployment's replicas; ``None``: a node for every pod."""
    node_provisioning_s: float = 0.0
    """How long the node autoscaler takes to add a node for a pod that found none free."""


def _api_client(url: str) -> kubernetes.client.ApiClient:
    # No retries inside a call: the fleet polls again half a second later anyway.
    configuration = kubernetes.client.Configuration(host=url, retries=0)
    return kubernetes.client.ApiClient(configuration)


def _wait_for_deployment(replica_sets: ReplicaSetSimulator, stop: threading.Event) -> DeploymentView | None:
    """The fleet may start before the demo has created its Deployment: wait for it."""
    logged = False
    while not stop.is_set():
        try:
            return replica_sets.read_deployment()
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            if not logged:
                logger.info("waiting for the deployment %s: %s", replica_sets.deployment, exc)
                logged = True
        stop.wait(0.5)
    return None


class SimulatedFleet:
    """The engine, the pods that mirror it and their metrics, advanced one tick at a time.

    Ticks advance the engine to the wall clock and publish the metrics; every ``poll_s`` the
    Deployment is read again and the pods and the Deployment's status are brought in line.
    """

    def __init__(
        self,
        options: FleetOptions,
        requests: Sequence[Request],
        replica_sets: ReplicaSetSimulator,
        view: DeploymentView,
    ) -> None:
        self.options = options
        self.replica_sets = replica_sets
        self.view = view
        self.template_hash = pod_template_hash(options.deployment, view.template)
        params = EngineParams(cold_start_s=options.cold_start_s)
        # The Deployment has been running: its current replicas start warm.
        self.engine = FleetEngine(params, initial_replicas=view.replicas)
        self.nodes = (
            None
            if options.free_gpu_nodes is None
            else GpuNodes(view.replicas + options.free_gpu_nodes, options.node_provisioning_s)
        )
        self.metrics = VllmMetrics(options.namespace, options.model_name, params.max_seqs)
        self._requests = requests
        self._next_request = 0
        self._next_poll_s = 0.0
        self._next_summary_s = 0.0

    def step(self, now_s: float) -> None:
        first_later = self._next_request
        while first_later < len(self._requests) and self._requests[first_later].arrival_s <= now_s:
            first_later += 1
        events = self.engine.advance(now_s, self._requests[self._next_request : first_later])
        self._next_request = first_later
        polling = now_s >= self._next_poll_s
        if polling:
            self._next_poll_s = now_s + self.options.poll_s
            events += self._follow_deployment(now_s)
        snapshot = self.engine.snapshot()
        # Metrics before the sync: the sync forgets the pods of replicas that are gone.
        self.metrics.record(snapshot, events, self.replica_sets.pod_names())
        if polling:
            self.replica_sets.sync(snapshot, self.view, self.template_hash)
        if now_s >= self._next_summary_s:
            self._next_summary_s = now_s + 10.0
            self._log_summary(snapshot)

    def _follow_deployment(self, now_s: float) -> list[EngineEvent]:
        try:
            self.view = self.replica_sets.read_deployment()
        except ApiException as exc:
            logger.warning("cannot read the deployment, keeping %d replicas: %s", self.view.replicas, exc)
        except urllib3.exceptions.HTTPError:
            pass  # logged once per outage; the fleet keeps its replicas meanwhile
        pending = self.replica_sets.pending
        wanted, have = self.view.replicas, self.engine.desired + len(pending)
        if wanted != have:
            logger.info("scaling %d -> %d replicas", have, wanted)
        if wanted < have:
            dropped = min(have - wanted, len(pending))
            self.replica_sets.drop_pending(dropped)
            return self.engine.scale(self.engine.desired - (have - wanted - dropped))
        return self._schedule(wanted - have, now_s)

    def _schedule(self, new_pods: int, now_s: float) -> list[EngineEvent]:
        """Pending pods take the nodes that are free, oldest first, then new pods; the rest wait for a node."""
        pending = self.replica_sets.pending
        free = (
            new_pods + len(pending)
            if self.nodes is None
            else self.nodes.free(len(self.engine.snapshot().replicas), now_s)
        )
        binding = min(free, len(pending))
        starting = min(free - binding, new_pods)
        if binding + starting == 0 and new_pods == 0:
            return []
        before = {r.replica_id for r in self.engine.snapshot().replicas}
        events = self.engine.scale(self.engine.desired + binding + starting)
        started = sorted(r.replica_id for r in self.engine.snapshot().replicas if r.replica_id not in before)
        for replica_id in started[:binding]:
            self.replica_sets.bind(replica_id)  # the others get their pods in the next sync
        for _ in range(new_pods - starting):
            if self.replica_sets.create_pending(self.view, self.template_hash) and self.nodes is not None:
                self.nodes.provision(now_s)
        return events

    def _log_summary(self, snapshot: FleetSnapshot) -> None:
        phases = [r.phase for r in snapshot.replicas]
        logger.info(
            "t=%.0fs replicas starting=%d ready=%d draining=%d running=%d waiting=%d replayed=%d/%d",
            snapshot.now_s,
            phases.count(ReplicaPhase.STARTING),
            phases.count(ReplicaPhase.READY),
            phases.count(ReplicaPhase.DRAINING),
            sum(r.running for r in snapshot.replicas),
            snapshot.router_waiting + sum(r.awaiting_prefill for r in snapshot.replicas),
            self._next_request,
            len(self._requests),
        )


def run_fleet(options: FleetOptions, stop: threading.Event) -> int:
    """Serve the simulated fleet until ``stop`` is set."""
    requests = read_trace(options.trace)
    logger.info("replaying %d requests from %s", len(requests), options.trace.path)
    api = _api_client(options.api_url)
    replica_sets = ReplicaSetSimulator(
        core=kubernetes.client.CoreV1Api(api),
        apps=kubernetes.client.AppsV1Api(api),
        namespace=options.namespace,
        deployment=options.deployment,
    )
    view = _wait_for_deployment(replica_sets, stop)
    if view is None:
        return 0
    fleet = SimulatedFleet(options, requests, replica_sets, view)
    server = serve_metrics(fleet.metrics, options.host, options.port)
    url = f"http://{options.host}:{server.server_address[1]}/metrics"
    logger.info("serving %s", url)
    started = time.monotonic()
    fleet.step(0.0)
    if options.ready_file is not None:
        options.ready_file.write_text(url + "\n")
    try:
        while not stop.wait(options.tick_s):
            fleet.step(time.monotonic() - started)
    finally:
        server.shutdown()
        server.server_close()
        api.close()  # type: ignore[no-untyped-call]
    return 0


def parse_args(argv: Sequence[str] | None = None) -> FleetOptions:
    parser = argparse.ArgumentParser(prog="python -m devtools.fleet", description=__doc__)
    parser.add_argument("--api", required=True, help="URL of the Kubernetes API server")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument(
        "--trace", required=True, type=pathlib.Path, help="CSV (plain or .gz): TIMESTAMP,ContextTokens,GeneratedTokens"
    )
    parser.add_argument("--port", type=int, required=True, help="port of /metrics on 127.0.0.1; 0 picks one")
    parser.add_argument("--speedup", type=float, default=1.0, help="trace seconds per real second")
    parser.add_argument("--load-scale", type=float, default=1.0, help="request rate multiplier")
    parser.add_argument("--cold-start", type=float, default=15.0, help="seconds from pod creation to Ready")
    parser.add_argument("--start-offset", type=float, default=0.0, help="trace seconds to skip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-name", default=DEFAULT_MODEL)
    parser.add_argument("--ready-file", type=pathlib.Path, help="written with the /metrics URL once serving")
    parser.add_argument(
        "--free-gpu-nodes",
        type=int,
        help="GPU nodes free besides the Deployment's; a pod beyond them stays Pending (Unschedulable) until a node "
        "is added. Unset: a node for every pod",
    )
    parser.add_argument(
        "--node-provisioning-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the node autoscaler takes to add a GPU node for a pending pod (with --free-gpu-nodes)",
    )
    args = parser.parse_args(argv)
    if (args.free_gpu_nodes is not None and args.free_gpu_nodes < 0) or args.node_provisioning_delay < 0:
        parser.error("--free-gpu-nodes and --node-provisioning-delay must be >= 0")
    if args.node_provisioning_delay and args.free_gpu_nodes is None:
        parser.error("--node-provisioning-delay needs --free-gpu-nodes (without it every pod finds a node)")
    return FleetOptions(
        api_url=args.api,
        namespace=args.namespace,
        deployment=args.deployment,
        trace=TraceSlice(
            path=args.trace,
            start_offset_s=args.start_offset,
            speedup=args.speedup,
            load_scale=args.load_scale,
            seed=args.seed,
        ),
        port=args.port,
        cold_start_s=args.cold_start,
        model_name=args.model_name,
        ready_file=args.ready_file,
        free_gpu_nodes=args.free_gpu_nodes,
        node_provisioning_s=args.node_provisioning_delay,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s fleet: %(message)s")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return run_fleet(options, stop)


if __name__ == "__main__":
    sys.exit(main())
