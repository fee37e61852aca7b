"""How many ScalingPolicies one operator replica keeps on schedule: a reproducible load test.

Starts, all on 127.0.0.1: the dev API server, a real Prometheus scraping one exporter that serves
a vLLM queue metric for every Deployment, and ``infercast run``. It then creates N Deployments and
N ScalingPolicies (interval 15 s), lets the operator run, and prints a table:

* decisions per policy per minute (on schedule: 60 / interval) and how late cycles start;
* the operator's CPU use and peak memory (from /proc);
* PromQL requests Prometheus served per cycle, against the naive count (one per metric per
  policy, two with the freshness probe), to show the coalescing.

    .venv/bin/python benchmarks/operator_scale.py [--policies 1000] [--seconds 120] [--shared-query]
        [--misbehaving 100]

``--shared-query`` makes every policy use the same raw PromQL, the case the single-flight
coalescing exists for (e.g. a fleet-wide metric): Prometheus should then see about one request
per cycle, not N.

``--misbehaving N`` points N of the policies (in turn) at three fault-injecting Prometheus servers
(``tests/harness/faults.py``): one drips its answers a byte every 0.5 s, one stalls for 60 s, one
refuses the policies' token with 401. The table then has a column per group, and the healthy
policies' **cycle start delay** (how much later than one interval after the previous cycle a cycle
started) must stay under one interval (issue 12: no policy blinds the others).
"""

from __future__ import annotations

import argparse
import base64
import calendar
import itertools
import os
import pathlib
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest

from controller.observability.explain import decision_records
from devtools.apiserver import start_apiserver, write_kubeconfig
from devtools.processes import operator_argv, start_process
from devtools.prometheus_server import Prometheus
from tests.harness.faults import Answer, Drip, FaultyPrometheus, Refuse, Stall, by_token

ROOT = pathlib.Path(__file__).resolve().parent.parent
INTERVAL_S = 15
NAMESPACE = "scale"


def serve_metrics(policies: int) -> tuple[Any, str]:
    """An exporter with one vLLM queue gauge per Deployment (kept steady: the decisions are holds)."""
    import http.server
    import threading

    registry = CollectorRegistry()
    gauge = Gauge("vllm:num_requests_waiting", "queue", ["namespace", "pod", "model_name"], registry=registry)
    for i in range(policies):
        gauge.labels(NAMESPACE, f"vllm-{i}-7d4b9c6f5d-abcde", "m").set(4.0)
    body = generate_latest(registry)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def policy(i: int, prometheus: dict[str, Any], shared_query: bool) -> dict[str, Any]:
    metric: dict[str, Any] = (
        {"name": "queue", "query": f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}"}})'}
        if shared_query
        else {"name": "queue", "preset": "vllm-requests-waiting"}
    )
    metric["target"] = {
        "type": "AverageValue" if not shared_query else "Value",
        "value": 4 if not shared_query else 1e9,
    }
    return {
        "apiVersion": "infercast.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": f"vllm-{i}"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"vllm-{i}"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "interval": INTERVAL_S,
            "prometheus": prometheus,
            "metrics": [metric],
        },
    }


# A Secret the bad-token policies send (opted in, as a policy's Secret must be), with a token no server accepts.
BAD_TOKEN_SECRET = {
    "metadata": {"name": "expired-token", "labels": {"infercast.io/prometheus-credentials": "true"}},
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
    """Policy ``i``'s prometheus block: every ``policies / misbehaving``-th one reads a misbehaving server."""
    if i >= misbehaving:
        return {"url": healthy_url}
    kind = list(servers)[i % len(servers)]
    block: dict[str, Any] = {"url": servers[kind].url}
    if kind == "bad token":
        block["bearerTokenSecretRef"] = {"name": "expired-token", "key": "token"}
    return block


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident memory in bytes) of one process."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def prometheus_queries(url: str) -> float:
    """Instant queries Prometheus has served, from its own /metrics (it does not scrape itself here)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line
    )


@dataclass(frozen=True)
class GroupStats:
    """How one group of policies kept its schedule (times in whole seconds, as the decision log has them)."""

    per_minute: float
    silent: int
    period: str
    delay_p95: str


def group_stats(records: list[dict[str, Any]], seen0: int, members: range, elapsed: float) -> GroupStats:
    """Decisions of the policies ``vllm-<i>`` for ``i`` in ``members``: rate in the window, periods, start delays."""
    names = {f"{NAMESPACE}/vllm-{i}" for i in members}
    window = [d for d in records[seen0:] if d["policy"] in names]
    per_policy: dict[str, list[float]] = defaultdict(list)
    for d in records:
        if d["policy"] in names:
            per_policy[d["policy"]].append(calendar.timegm(time.strptime(d["time"], "%Y-%m-%dT%H:%M:%SZ")))
    gaps = sorted(b - a for times in per_policy.values() for a, b in itertools.pairwise(times))
    period = f"{gaps[len(gaps) // 2]:.0f} / {gaps[int(len(gaps) * 0.95)]:.0f} / {gaps[-1]:.0f} s" if gaps else "-"
    delay = f"{max(0.0, gaps[int(len(gaps) * 0.95)] - INTERVAL_S):.0f} s" if gaps else "-"
    silent = len(names - {d["policy"] for d in window})
    return GroupStats(len(window) / len(names) / elapsed * 60, silent, period, delay)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120.0, help="measured run after every policy decided once")
    parser.add_argument("--shared-query", action="store_true")
    parser.add_argument("--misbehaving", type=int, default=0, help="policies reading misbehaving Prometheus servers")
    args = parser.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="infercast-scale-"))
    exporter, address = serve_metrics(args.policies)
    servers = misbehaving_servers() if args.misbehaving else {}
    api = start_apiserver(workdir / "apiserver", crds=[ROOT / "crds"])
    prometheus = Prometheus({"fleet": [address]}, workdir=workdir / "prometheus", scrape_interval=5.0).start()
    operator = None
    try:
        prometheus.wait_for_series("up == 1", timeout=30)
        kubeconfig = write_kubeconfig(api.url, workdir / "kubeconfig")
        kube = client.ApiClient(client.Configuration(host=api.url))
        client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
        if args.misbehaving:
            client.CoreV1Api(kube).create_namespaced_secret(NAMESPACE, client.V1Secret.model_validate(BAD_TOKEN_SECRET))
        started = time.monotonic()
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
            apps.patch_namespaced_deployment_status(
                f"vllm-{i}", NAMESPACE, {"status": {"replicas": 1, "readyReplicas": 1}}
            )
            spec_prometheus = prometheus_of(i, args.misbehaving, prometheus.url, servers)
            custom.create_namespaced_custom_object(
                "infercast.io", "v1alpha1", NAMESPACE, "scalingpolicies", policy(i, spec_prometheus, args.shared_query)
            )
        print(f"created {args.policies} Deployments and policies in {time.monotonic() - started:.0f}s", file=sys.stderr)

        log = workdir / "operator.log"
        operator = start_process(
            operator_argv(NAMESPACE, "--metrics-port", "0", "-q"),
            log_path=log,
            env={"KUBECONFIG": str(kubeconfig)},
            cwd=ROOT,
        )

        def decisions() -> list[dict[str, Any]]:
            return decision_records(log.read_text().splitlines())

        deadline = time.monotonic() + 600
        while len({d["policy"] for d in decisions()}) < args.policies and time.monotonic() < deadline:
            time.sleep(2)
        warm = time.monotonic() - started
        first_round = len({d["policy"] for d in decisions()})
        cpu0, _ = proc_stats(operator.pid)
        queries0 = prometheus_queries(prometheus.url)
        t0, seen0 = time.time(), len(decisions())
        time.sleep(args.seconds)
        cpu1, rss = proc_stats(operator.pid)
        queries1 = prometheus_queries(prometheus.url)
        elapsed = time.time() - t0
        all_decisions = decisions()
        groups = {"healthy": range(args.misbehaving, args.policies)}
        if args.misbehaving:
            groups["misbehaving"] = range(args.misbehaving)
        stats = {name: group_stats(all_decisions, seen0, members, elapsed) for name, members in groups.items()}
        cycles = elapsed / INTERVAL_S
        healthy = args.policies - args.misbehaving
        naive = healthy * (1 if args.shared_query else 2)

        def row(name: str, values: str | list[str], note: str = "") -> str:
            """A table row: one value per group, or one operator-wide value (in the first group's column)."""
            cells = values if isinstance(values, list) else [values] + [""] * (len(groups) - 1)
            return "| " + " | ".join([name, *cells, note]) + " |"

        received = ", ".join(f"{kind}: {len(server.requests)}" for kind, server in servers.items())
        rows = [
            row("policies", [f"{len(m)}" for m in groups.values()]),
            row("policies with a first decision", f"{first_round}", f"after {warm:.0f}s (incl. object creation)"),
            row(
                "decisions per policy per minute",
                [f"{g.per_minute:.2f}" for g in stats.values()],
                f"on schedule: {60 / INTERVAL_S:.2f}",
            ),
            row("policies without a decision", [f"{g.silent}" for g in stats.values()], f"in {args.seconds:.0f} s"),
            row("cycle period p50 / p95 / max", [g.period for g in stats.values()], f"interval {INTERVAL_S} s"),
            row("cycle start delay p95", [g.delay_p95 for g in stats.values()], f"target: under {INTERVAL_S} s"),
            row("operator CPU", f"{(cpu1 - cpu0) / elapsed * 100:.0f} % of one core"),
            row("operator peak RSS", f"{rss / 2**20:.0f} MiB"),
            row("PromQL requests per cycle", f"{(queries1 - queries0) / cycles:.0f}", f"healthy naive: {naive}"),
            *([row("requests to misbehaving servers", "", received)] if servers else []),
        ]
        kind = "shared query" if args.shared_query else "one preset query per policy"
        print(f"\n| measure ({kind}) | {' | '.join(groups)} | note |")
        print("|---|" + "---:|" * len(groups) + "---|")
        print("\n".join(rows))
        return 0
    finally:
        if operator is not None:
            operator.stop()
        prometheus.stop()
        api.stop()
        exporter.shutdown()
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
