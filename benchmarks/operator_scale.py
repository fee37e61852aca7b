"""How many ScalingPolicies one operator replica keeps on schedule: a reproducible load test.

Starts, all on 127.0.0.1: the dev API server, a real Prometheus scraping one exporter that serves
a vLLM queue metric for every Deployment, and ``infercast run``. It then creates N Deployments and
N ScalingPolicies (interval 15 s), lets the operator run, and prints a table:

* decisions per policy per minute (on schedule: 60 / interval) and how late cycles start;
* the operator's CPU use and peak memory (from /proc);
* PromQL requests Prometheus served per cycle, against the naive count (one per metric per
  policy, two with the freshness probe), to show the coalescing.

    .venv/bin/python benchmarks/operator_scale.py [--policies 1000] [--seconds 120] [--shared-query]

``--shared-query`` makes every policy use the same raw PromQL, the case the single-flight
coalescing exists for (e.g. a fleet-wide metric): Prometheus should then see about one request
per cycle, not N.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from typing import Any

from kubernetes import client
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest

from controller.observability.explain import decision_records
from devtools.apiserver import start_apiserver, write_kubeconfig
from devtools.processes import operator_argv, start_process
from devtools.prometheus_server import Prometheus

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


def policy(i: int, prometheus_url: str, shared_query: bool) -> dict[str, Any]:
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
            "prometheus": {"url": prometheus_url},
            "metrics": [metric],
        },
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120.0, help="measured run after every policy decided once")
    parser.add_argument("--shared-query", action="store_true")
    args = parser.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="infercast-scale-"))
    exporter, address = serve_metrics(args.policies)
    api = start_apiserver(workdir / "apiserver", crds=[ROOT / "crds"])
    prometheus = Prometheus({"fleet": [address]}, workdir=workdir / "prometheus", scrape_interval=5.0).start()
    operator = None
    try:
        prometheus.wait_for_series("up == 1", timeout=30)
        kubeconfig = write_kubeconfig(api.url, workdir / "kubeconfig")
        kube = client.ApiClient(client.Configuration(host=api.url))
        client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
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
            custom.create_namespaced_custom_object(
                "infercast.io", "v1alpha1", NAMESPACE, "scalingpolicies", policy(i, prometheus.url, args.shared_query)
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
        window = [d for d in decisions()[seen0:]]
        per_policy: dict[str, list[float]] = defaultdict(list)
        for d in decisions():
            per_policy[d["policy"]].append(time.mktime(time.strptime(d["time"], "%Y-%m-%dT%H:%M:%SZ")))
        gaps = sorted(b - a for times in per_policy.values() for a, b in itertools.pairwise(times))
        cycles = elapsed / INTERVAL_S
        naive = args.policies * (1 if args.shared_query else 2)
        per_minute = len(window) / args.policies / elapsed * 60
        period = f"{gaps[len(gaps) // 2]:.0f} / {gaps[int(len(gaps) * 0.95)]:.0f} / {gaps[-1]:.0f} s" if gaps else "-"
        rows = [
            ("policies", f"{args.policies}", ""),
            ("policies with a first decision", f"{first_round}", f"after {warm:.0f}s (incl. object creation)"),
            ("decisions per policy per minute", f"{per_minute:.2f}", f"on schedule: {60 / INTERVAL_S:.2f}"),
            ("cycle period p50 / p95 / max", period, f"spec interval {INTERVAL_S} s (1 s resolution)"),
            ("operator CPU", f"{(cpu1 - cpu0) / elapsed * 100:.0f} % of one core", ""),
            ("operator peak RSS", f"{rss / 2**20:.0f} MiB", ""),
            ("PromQL requests per cycle", f"{(queries1 - queries0) / cycles:.0f}", f"naive: {naive}"),
        ]
        print(
            f"\n| measure ({'shared query' if args.shared_query else 'one preset query per policy'}) | value | note |"
        )
        print("|---|---:|---|")
        for name, value, note in rows:
            print(f"| {name} | {value} | {note} |")
        return 0
    finally:
        if operator is not None:
            operator.stop()
        prometheus.stop()
        api.stop()
        exporter.shutdown()


if __name__ == "__main__":
    sys.exit(main())
