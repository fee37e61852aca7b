"""How many ScalingPolicies one operator replica keeps on schedule: a reproducible load test.

Starts, all on 127.0.0.1: the dev API server, a real Prometheus scraping one exporter that serves
vLLM metrics for every Deployment, and ``infercast run`` (with the dev Prometheus access rules). It
then creates N Deployments and N ScalingPolicies (interval 15 s), lets the operator run, and prints
a table:

* decisions per policy per minute (on schedule: 60 / interval), the cycle period and the **cycle
  start delay** (how much later than one interval after the previous cycle a cycle started);
* the operator's CPU (its process and its forecasting worker processes) per policy-cycle and in
  all, and its memory (from /proc);
* PromQL requests Prometheus served per cycle (instant and range queries), against the naive
  count for the reactive policies (one per policy, two with the freshness probe), to show the
  coalescing.

    .venv/bin/python benchmarks/operator_scale.py [--policies 1000] [--seconds 120] [--shared-query]
        [--misbehaving 100]
    .venv/bin/python benchmarks/operator_scale.py --predictive [--policies 1000] [--seconds 900]
        [--misbehaving 100]

``--shared-query`` makes every policy use the same raw PromQL, the case the single-flight
coalescing exists for (e.g. a fleet-wide metric): Prometheus should then see about one request
per cycle, not N.

``--predictive`` gives every policy ``spec.forecast`` with the operator's defaults (model
``Auto``, 60 s steps, two days of history, a model selection every 600 s in the operator's
process pool), a load of its own (prompt tokens/s with a daily cycle and per-minute noise,
read with ``spec.forecast.load.query``; two days of it backfilled into Prometheus before the
start) and the vLLM latency and queue series its capacity signals read; a watch plays the
Deployment controller (a scaled Deployment is ready at once). It waits until every policy's first
model selection has run (all of them start together), then measures, and also reports the share
of decisions made with a fresh forecast and the model selections finished per minute (run at
least 600 s to see a round of them). The CPU of the API server emulator and of Prometheus, which
share the machine, is reported beside the operator's.

``--misbehaving N`` points the first N policies (in turn) at three fault-injecting Prometheus
servers (``tests/harness/faults.py``): one drips its answers a byte every 0.5 s, one stalls for
60 s, one refuses the policies' token (from a Secret opted in with the operator's label) with 401.
The table then has a column per group, and the healthy policies' cycle start delay must stay under
one interval (issue 12: no policy blinds the others). With ``--predictive`` the misbehaving
policies' forecasts read the same servers and never start; the wait is for the healthy policies'
first model selections.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import hashlib
import http.server
import itertools
import math
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes.watch
import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.clients.credentials import DEFAULT_SECRET_LABEL
from controller.observability.explain import decision_records
from devtools.apiserver import start_apiserver, write_kubeconfig
from devtools.processes import operator_argv, start_process, wait_for
from devtools.prometheus_server import Prometheus, free_port
from tests.harness.faults import Answer, Drip, FaultyPrometheus, Refuse, Stall, by_token

ROOT = pathlib.Path(__file__).resolve().parent.parent
INTERVAL_S = 15
NAMESPACE = "scale"
SCRAPE_INTERVAL_S = 5.0
LOAD = "infercast_bench_prompt_tokens_rate"
HISTORY_S = 172_800  # spec.forecast.historySeconds' default: what every policy fetches at its start
BACKFILL_STEP_S = 300  # within Prometheus' 5 min look-back, so a range query finds a value at every step
TTFT_BUCKETS = {"0.1": 0.5, "0.25": 0.8, "0.5": 0.9, "1.0": 0.97, "2.5": 0.995, "5.0": 1.0, "+Inf": 1.0}
PROMPT_TOKENS_PER_REQUEST = 500
# A forecast made this cycle is issued from a sample at most one sample spacing (20 s for two days
# of history at 60 s steps) plus a scrape interval old; one followed after its history stopped is older.
FRESH_S = 60.0


def pod_of(i: int) -> str:
    return f"vllm-{i}-7d4b9c6f5d-abcde"


# -- the workload --------------------------------------------------------------------------------


def load_at(i: int, t: float) -> float:
    """Deployment ``i``'s prompt tokens/s at Unix time ``t``: a daily cycle of its own phase and
    level, and per-minute noise (the same value for the same minute, live or backfilled)."""
    base = 2000.0 + 500.0 * (i % 7)
    daily = 1.0 + 0.4 * math.sin(2 * math.pi * (t / 86_400 + i / 997))
    digest = hashlib.blake2b(f"{i}/{int(t // 60)}".encode(), digest_size=4).digest()
    noise = int.from_bytes(digest) / 2**32 * 2 - 1
    return round(base * daily * (1 + 0.15 * noise), 1)


class Exporter:
    """Serves every Deployment's series: the vLLM queue gauge, and for ``--predictive`` the load
    gauge and a TTFT histogram whose counts grow with the load."""

    def __init__(self, policies: int, predictive: bool) -> None:
        self.policies, self.predictive = policies, predictive
        self.started = time.time()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def body(self) -> bytes:
        now = time.time()
        lines = ["# TYPE vllm:num_requests_waiting gauge"]
        labels = [f'namespace="{NAMESPACE}",pod="{pod_of(i)}",model_name="m"' for i in range(self.policies)]
        lines += [f"vllm:num_requests_waiting{{{label}}} 4" for label in labels]
        if self.predictive:
            lines.append(f"# TYPE {LOAD} gauge")
            lines += [
                f'{LOAD}{{namespace="{NAMESPACE}",deployment="vllm-{i}"}} {load_at(i, now)}'
                for i in range(self.policies)
            ]
            lines.append("# TYPE vllm:time_to_first_token_seconds histogram")
            for i, label in enumerate(labels):
                requests = load_at(i, now) / PROMPT_TOKENS_PER_REQUEST * (now - self.started)
                lines += [
                    f'vllm:time_to_first_token_seconds_bucket{{{label},le="{le}"}} {math.floor(requests * share)}'
                    for le, share in TTFT_BUCKETS.items()
                ]
        return ("\n".join(lines) + "\n").encode()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def history(self, until: float) -> str:
        """The load gauge over the last :data:`HISTORY_S` before ``until``, as OpenMetrics for promtool,
        labelled as Prometheus labels the live series so that both are one series."""
        scraped = Prometheus.instance_labels("fleet", self.address)
        extra = ",".join(f'{k}="{v}"' for k, v in scraped.items())
        start = int(until - HISTORY_S) // BACKFILL_STEP_S * BACKFILL_STEP_S
        lines = [f"# TYPE {LOAD} gauge"]
        for i in range(self.policies):
            series = f'{LOAD}{{namespace="{NAMESPACE}",deployment="vllm-{i}",{extra}}}'
            lines += [f"{series} {load_at(i, t)} {t}" for t in range(start, int(until), BACKFILL_STEP_S)]
        return "\n".join(lines) + "\n# EOF\n"

    def shutdown(self) -> None:
        self.server.shutdown()


def policy(i: int, prometheus: dict[str, Any], shared_query: bool, predictive: bool) -> dict[str, Any]:
    metric: dict[str, Any] = (
        {"name": "queue", "query": f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}"}})'}
        if shared_query
        else {"name": "queue", "preset": "vllm-requests-waiting"}
    )
    metric["target"] = {
        "type": "AverageValue" if not shared_query else "Value",
        "value": 4 if not shared_query else 1e9,
    }
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"vllm-{i}"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "interval": INTERVAL_S,
        "prometheus": prometheus,
        "metrics": [metric],
    }
    if predictive:
        # The operator's defaults for the rest: Auto, 60 s steps, two days of history, refit every 600 s.
        spec["forecast"] = {
            "capacity": {"unit": "PrefillTokensPerSecond", "perReplica": 5000},
            "load": {"query": f'sum({LOAD}{{namespace="{NAMESPACE}",deployment="vllm-{i}"}})'},
        }
    return {
        "apiVersion": "infercast.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": f"vllm-{i}"},
        "spec": spec,
    }


# A Secret the bad-token policies send (opted in, as a policy's Secret must be), with a token no server accepts.
BAD_TOKEN_SECRET_NAME = "expired-token"
BAD_TOKEN_SECRET: dict[str, Any] = {
    "metadata": {"name": BAD_TOKEN_SECRET_NAME, "labels": dict([DEFAULT_SECRET_LABEL])},
    "data": {"token": base64.b64encode(b"expired").decode()},
}


def misbehaving_servers() -> dict[str, FaultyPrometheus]:
    """The three ways a Prometheus misbehaves here, each one server; started."""
    return {
        "drip": FaultyPrometheus(Drip(every_s=0.5)).start(),
        "stall": FaultyPrometheus(Stall(60.0)).start(),
        "bad token": FaultyPrometheus(by_token({"valid": Answer(4.0)}, default=Refuse(401))).start(),
    }


def prometheus_of(i: int, misbehaving: int, healthy_url: str, servers: dict[str, FaultyPrometheus]) -> dict[str, Any]:
    """Policy ``i``'s prometheus block: the first ``misbehaving`` policies read the misbehaving servers in turn."""
    if i >= misbehaving:
        return {"url": healthy_url}
    kind = list(servers)[i % len(servers)]
    block: dict[str, Any] = {"url": servers[kind].url}
    if kind == "bad token":
        block["bearerTokenSecretRef"] = {"name": BAD_TOKEN_SECRET_NAME, "key": "token"}
    return block


class ReadyFollower:
    """Plays the Deployment controller: a Deployment the operator scales has all its replicas ready
    at once (one watch, a status write per change), so that a policy's workload settles again."""

    def __init__(self, kube: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(kube)
        self.watch = kubernetes.watch.Watch()
        self.stopped = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        while not self.stopped.is_set():
            try:
                for event in self.watch.stream(self.apps.list_namespaced_deployment, NAMESPACE):
                    deployment = event["object"]
                    wanted = deployment.spec.replicas
                    if event["type"] != "DELETED" and (deployment.status.ready_replicas or 0) != wanted:
                        status = {"status": {"replicas": wanted, "readyReplicas": wanted}}
                        self.apps.patch_namespaced_deployment_status(deployment.metadata.name, NAMESPACE, status)
            except (ApiException, urllib3.exceptions.HTTPError):
                self.stopped.wait(1)  # the stream broke (or the API server is stopping): watch again

    def stop(self) -> None:
        self.stopped.set()
        self.watch.stop()


# -- what is measured ----------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the forecasting workers are the operator's children)."""
    parents: dict[int, int] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident memory in bytes) of one process."""
    fields = _stat(pid)
    if fields is None:
        return 0.0, 0
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def tree_stats(pid: int) -> tuple[float, float, int, int]:
    """(CPU s of ``pid``, CPU s of its descendants, RSS of ``pid``, RSS of its descendants)."""
    own_cpu, own_rss = proc_stats(pid)
    others = [proc_stats(child) for child in process_tree(pid)[1:]]
    return own_cpu, sum(c for c, _ in others), own_rss, sum(r for _, r in others)


def scrape_counters(url: str, prefix: str, contains: str = "") -> float:
    """The sum of the samples whose line starts with ``prefix`` (and contains ``contains``)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix) and contains in line
    )


def prometheus_requests(url: str, handler: str) -> float:
    """Requests Prometheus has served on ``handler``, from its own /metrics (it does not scrape itself here)."""
    return scrape_counters(f"{url}/metrics", "prometheus_http_requests_total{", f'handler="{handler}"')


def decided_at(decision: dict[str, Any]) -> float:
    return calendar.timegm(time.strptime(decision["time"], "%Y-%m-%dT%H:%M:%SZ"))


def forecast_fresh(decision: dict[str, Any]) -> bool:
    """Whether a decision had a forecast made this cycle: issued from samples at most
    :data:`FRESH_S` old (a forecast being followed after its history stopped is older)."""
    issued = (decision.get("inputs", {}).get("forecast") or {}).get("issuedAt")
    return issued is not None and decided_at(decision) - decided_at({"time": issued}) <= FRESH_S


def forecasting_share(decisions: list[dict[str, Any]]) -> float:
    """The share of policies whose latest decision had a fresh forecast."""
    latest = {d["policy"]: d for d in decisions}
    return sum(forecast_fresh(d) for d in latest.values()) / max(1, len(latest))


def policy_names(members: Collection[int]) -> set[str]:
    """The decision log's names (``NAMESPACE/NAME``) of the policies ``vllm-<i>`` for ``i`` in ``members``."""
    return {f"{NAMESPACE}/vllm-{i}" for i in members}


def among(decisions: Sequence[dict[str, Any]], names: set[str]) -> list[dict[str, Any]]:
    return [d for d in decisions if d["policy"] in names]


@dataclass(frozen=True)
class GroupStats:
    """How one group of policies kept its schedule (times in whole seconds, as the decision log has them)."""

    per_minute: float
    silent: int
    """Policies without a decision in the measured window."""
    period: str
    delay_p95: str
    forecasting: float
    """Share of policies whose latest decision before the window had a fresh forecast."""
    fresh: float
    """Share of the window's decisions made with a fresh forecast."""


def group_stats(decisions: list[dict[str, Any]], seen0: int, t0: float, members: range, elapsed: float) -> GroupStats:
    """The group ``members``' decisions: those before index ``seen0`` (the warm-up) and the window's,
    which started at Unix time ``t0`` and lasted ``elapsed`` seconds."""
    names = policy_names(members)
    before, window = among(decisions[:seen0], names), among(decisions[seen0:], names)
    per_policy: dict[str, list[float]] = defaultdict(list)
    for d in before + window:
        per_policy[d["policy"]].append(decided_at(d))
    # The period of each cycle that ended in the measured window.
    gaps = sorted(b - a for times in per_policy.values() for a, b in itertools.pairwise(times) if b >= t0)
    period = f"{gaps[len(gaps) // 2]:.0f} / {gaps[int(len(gaps) * 0.95)]:.0f} / {gaps[-1]:.0f} s" if gaps else "-"
    delay = f"{max(0.0, gaps[int(len(gaps) * 0.95)] - INTERVAL_S):.0f} s" if gaps else "-"
    return GroupStats(
        per_minute=len(window) / max(1, len(names)) / elapsed * 60,
        silent=len(names - {d["policy"] for d in window}),
        period=period,
        delay_p95=delay,
        forecasting=forecasting_share(before),
        fresh=sum(map(forecast_fresh, window)) / max(1, len(window)),
    )


def cpu_seconds(pid: int) -> float:
    return proc_stats(pid)[0]


def child_named(command: str) -> int:
    """The pid of this process's child running ``command``."""
    return next(
        pid for pid in process_tree(os.getpid())[1:] if pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == command
    )


# -- the run -------------------------------------------------------------------------------------


def create_objects(
    kube: client.ApiClient, args: argparse.Namespace, prometheus_url: str, servers: dict[str, FaultyPrometheus]
) -> None:
    """The namespace, the bad-token Secret if any policy misbehaves, and per policy its Deployment
    (ready), for ``--predictive`` its pod, and the ScalingPolicy with its own prometheus block."""
    core, apps, custom = client.CoreV1Api(kube), client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    if servers:
        core.create_namespaced_secret(NAMESPACE, client.V1Secret.model_validate(BAD_TOKEN_SECRET))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    for i in range(args.policies):
        labels = {"app": f"vllm-{i}"}
        deployment = {
            "metadata": {"name": f"vllm-{i}"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "x"}]}},
            },
        }
        apps.create_namespaced_deployment(NAMESPACE, client.V1Deployment.model_validate(deployment))
        apps.patch_namespaced_deployment_status(f"vllm-{i}", NAMESPACE, {"status": {"replicas": 1, "readyReplicas": 1}})
        if args.predictive:  # the pod the lead time is learned from (its start-up is long over)
            pod = client.V1Pod(
                metadata=client.V1ObjectMeta(name=pod_of(i), labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="s", image="x")]),
            )
            core.create_namespaced_pod(NAMESPACE, pod)
            conditions = [{"type": t, "status": "True", "lastTransitionTime": stamp} for t in ("PodScheduled", "Ready")]
            core.patch_namespaced_pod_status(pod_of(i), NAMESPACE, {"status": {"conditions": conditions}})
        custom.create_namespaced_custom_object(
            "infercast.io",
            "v1alpha1",
            NAMESPACE,
            "scalingpolicies",
            policy(i, prometheus_of(i, args.misbehaving, prometheus_url, servers), args.shared_query, args.predictive),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument(
        "--seconds",
        type=float,
        default=120.0,
        help="measured run after every policy decided once; --predictive: at least 600 (the refit interval) "
        "to count model selections, whose first ones run in the warm-up",
    )
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds to wait after every policy decided once, before measuring"
    )
    parser.add_argument(
        "--max-warmup",
        type=float,
        default=3600.0,
        help="--predictive: longest wait for 99%% of the healthy policies to forecast",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shared-query", action="store_true")
    mode.add_argument("--predictive", action="store_true", help="spec.forecast on every policy")
    parser.add_argument(
        "--misbehaving", type=int, default=0, help="policies reading misbehaving Prometheus servers (the first N)"
    )
    parser.add_argument(
        "--profile",
        type=pathlib.Path,
        help="py-spy the operator's process during the run, collapsed stacks to this path",
    )
    args = parser.parse_args()
    if not 0 <= args.misbehaving < args.policies:
        parser.error("--misbehaving must leave at least one healthy policy")
    groups = {"healthy": range(args.misbehaving, args.policies)}
    if args.misbehaving:
        groups["misbehaving"] = range(args.misbehaving)
    healthy = policy_names(groups["healthy"])

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="infercast-scale-"))
    exporter = Exporter(args.policies, args.predictive)
    servers = misbehaving_servers() if args.misbehaving else {}
    api = start_apiserver(workdir / "apiserver", crds=[ROOT / "crds"], access_log=False)
    prometheus = Prometheus(
        {"fleet": [exporter.address]}, workdir=workdir / "prometheus", scrape_interval=SCRAPE_INTERVAL_S
    )
    operator = profiler = follower = None
    try:
        if args.predictive:
            started = time.monotonic()
            prometheus.backfill(exporter.history(time.time()), timeout=900)
            print(f"backfilled {HISTORY_S / 3600:.0f} h of load in {time.monotonic() - started:.0f}s", file=sys.stderr)
        prometheus.start()
        prometheus.wait_for_series("up == 1", timeout=30)
        kubeconfig = write_kubeconfig(api.url, workdir / "kubeconfig")
        kube = client.ApiClient(client.Configuration(host=api.url))
        started = time.monotonic()
        create_objects(kube, args, prometheus.url, servers)
        print(f"created {args.policies} Deployments and policies in {time.monotonic() - started:.0f}s", file=sys.stderr)
        follower = ReadyFollower(kube)

        log = workdir / "operator.log"
        metrics_port = free_port()
        operator = start_process(
            operator_argv(NAMESPACE, "--metrics-port", str(metrics_port), "-q"),
            log_path=log,
            env={"KUBECONFIG": str(kubeconfig)},
            cwd=ROOT,
        )
        operator_metrics = f"http://127.0.0.1:{metrics_port}/metrics"

        def decisions() -> list[dict[str, Any]]:
            return decision_records(log.read_text().splitlines())

        deadline = time.monotonic() + 900
        while len({d["policy"] for d in decisions()}) < args.policies and time.monotonic() < deadline:
            time.sleep(2)
        warm = time.monotonic() - started
        first_round = {d["policy"] for d in decisions()}
        forecasting_after = None
        if args.predictive:  # every policy's first model selection runs in the pool after the start
            deadline = time.monotonic() + args.max_warmup
            while forecasting_share(among(decisions(), healthy)) < 0.99 and time.monotonic() < deadline:
                time.sleep(15)
            forecasting_after = time.monotonic() - started
        time.sleep(args.warmup)
        if args.profile is not None:
            py_spy = pathlib.Path(sys.executable).parent / "py-spy"
            profiler = start_process(
                [str(py_spy), "record", "-p", str(operator.pid), "-o", str(args.profile), "--format", "raw",
                 "-d", str(int(args.seconds)), "--rate", "50", "--gil", "--nonblocking"],
                log_path=workdir / "py-spy.log",
            )  # fmt: skip

        def refits() -> tuple[float, float]:
            count = scrape_counters(operator_metrics, "infercast_model_refit_duration_seconds_count")
            return count, scrape_counters(operator_metrics, "infercast_model_refit_duration_seconds_sum")

        cpu0, workers0, _, _ = tree_stats(operator.pid)
        instant0 = prometheus_requests(prometheus.url, "/api/v1/query")
        range0 = prometheus_requests(prometheus.url, "/api/v1/query_range")
        refits0, refit_s0 = refits()
        t0, seen0 = time.time(), len(decisions())
        others = {"API server": api.process.pid, "Prometheus": child_named("prometheus")}
        others0 = {name: cpu_seconds(pid) for name, pid in others.items()}
        peak_rss = peak_workers_rss = 0
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            _, _, rss, workers_rss = tree_stats(operator.pid)
            peak_rss, peak_workers_rss = max(peak_rss, rss), max(peak_workers_rss, workers_rss)
            time.sleep(max(0.0, min(30.0, end - time.monotonic())))
        cpu1, workers1, rss, workers_rss = tree_stats(operator.pid)
        others1 = {name: cpu_seconds(pid) for name, pid in others.items()}
        instant1 = prometheus_requests(prometheus.url, "/api/v1/query")
        range1 = prometheus_requests(prometheus.url, "/api/v1/query_range")
        refits1, refit_s1 = refits()
        elapsed = time.time() - t0
        peak_rss, peak_workers_rss = max(peak_rss, rss), max(peak_workers_rss, workers_rss)

        everything = decisions()
        stats = {name: group_stats(everything, seen0, t0, members, elapsed) for name, members in groups.items()}
        cycles = elapsed / INTERVAL_S
        cpu, workers = cpu1 - cpu0, workers1 - workers0
        per_cycle_ms = (cpu + workers) / max(1, len(everything) - seen0) * 1000
        besides = ", ".join(f"{name} {(others1[name] - others0[name]) / elapsed:.0%}" for name in others)
        naive = len(groups["healthy"]) * (1 if args.shared_query else 2)

        def per_group(cell: Callable[[GroupStats], str]) -> list[str]:
            return [cell(g) for g in stats.values()]

        # A value per group, or one operator-wide value (shown in the first group's column).
        rows: list[tuple[str, str | list[str], str]] = [
            ("policies", [f"{len(members)}" for members in groups.values()], ""),
            (
                "policies with a first decision",
                [f"{len(first_round & policy_names(members))}" for members in groups.values()],
                f"after {warm:.0f}s (incl. object creation)",
            ),
        ]
        if args.predictive:
            rows.append(
                (
                    "policies forecasting (first model selected)",
                    per_group(lambda g: f"{g.forecasting:.0%}"),
                    f"after {forecasting_after:.0f}s (the wait: 99% of the healthy ones, at most --max-warmup)",
                )
            )
        rows += [
            (
                "decisions per policy per minute",
                per_group(lambda g: f"{g.per_minute:.2f}"),
                f"on schedule: {60 / INTERVAL_S:.2f}",
            ),
            ("policies without a decision", per_group(lambda g: f"{g.silent}"), f"in the {elapsed:.0f} s measured"),
            (
                "cycle period p50 / p95 / max",
                per_group(lambda g: g.period),
                f"spec interval {INTERVAL_S} s (1 s resolution)",
            ),
            ("cycle start delay p95", per_group(lambda g: g.delay_p95), f"target: under {INTERVAL_S} s"),
            ("CPU per policy-cycle", f"{per_cycle_ms:.1f} ms", "operator and its forecasting workers"),
            (
                "operator CPU",
                f"{(cpu + workers) / elapsed * 100:.0f} % of one core",
                f"event loop process {cpu / elapsed:.0%}, workers {workers / elapsed:.0%}; "
                f"of one core besides: {besides}",
            ),
            ("operator peak RSS", f"{peak_rss / 2**20:.0f} MiB", f"workers: {peak_workers_rss / 2**20:.0f} MiB"),
            (
                "PromQL requests per cycle",
                f"{(instant1 - instant0 + range1 - range0) / cycles:.0f}",
                f"to the real Prometheus: instant {(instant1 - instant0) / cycles:.0f}, "
                f"range {(range1 - range0) / cycles:.0f}" + ("" if args.predictive else f"; healthy naive: {naive}"),
            ),
        ]
        if servers:
            received = {kind: len(server.requests) for kind, server in servers.items()}
            rows.append(
                (
                    "requests to misbehaving servers",
                    f"{sum(received.values())}",
                    "since the start: "
                    + ", ".join(f"{kind} {count}" for kind, count in received.items())
                    + "; Authorization sent to bad token: "
                    + ", ".join(sorted(str(token) for token in servers["bad token"].tokens_seen())),
                )
            )
        if args.predictive:
            done = refits1 - refits0
            rows += [
                (
                    "decisions with a fresh forecast",
                    per_group(lambda g: f"{g.fresh:.1%}"),
                    f"issued from samples at most {FRESH_S:.0f}s old",
                ),
                (
                    "model selections per minute",
                    f"{done / elapsed * 60:.1f}",
                    f"due: {len(groups['healthy']) / 10:.0f} (one per healthy policy per 600 s); "
                    f"mean {(refit_s1 - refit_s0) / max(1, done):.2f} s wall each",
                ),
            ]
        kind = (
            "predictive" if args.predictive else "shared query" if args.shared_query else "one preset query per policy"
        )
        print(f"\n| measure ({kind}) | {' | '.join(groups)} | note |")
        print("|---|" + "---:|" * len(groups) + "---|")
        for name, value, note in rows:
            cells = value if isinstance(value, list) else [value] + [""] * (len(groups) - 1)
            print("| " + " | ".join([name, *cells, note]) + " |")
        if profiler is not None:
            wait_for(lambda: not profiler.running(), timeout=600, what="py-spy to write its profile")
            print(f"profile: {args.profile}", file=sys.stderr)
        return 0
    finally:
        if profiler is not None:
            profiler.stop()
        if operator is not None:
            operator.stop()
        if follower is not None:
            follower.stop()
        prometheus.stop()
        api.stop()
        exporter.shutdown()
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
