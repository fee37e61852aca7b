"""Proof of the observability end to end: the operator drives the simulated fleet, a real Prometheus scrapes both.

The run uses the demo's predictive ScalingPolicy (forecast, learned lead time, model refits), a
reactive one on a metric that does not exist, and a CircuitBreakerPolicy and a RoutingPolicy on an
Istio DestinationRule and VirtualService with two subsets (upstream CRDs), whose Istio and vLLM
series the session exporter serves, one backend failing throughout so that it is flagged and
drained. One run (about a minute) checks everything a user of issue 6 relies on:

* a live scrape of the operator's ``/metrics`` passes ``promtool check metrics``;
* every decision line the operator wrote matches docs/decision-log.schema.json;
* ``infercast explain`` prints the policy's state (with its lead time, capacity and forecast) and its
  decision timeline (with the path and the forecast) from the API and the log;
* every PromQL expression of every dashboard panel and annotation, with the template variables
  resolved the way Grafana resolves them (their own queries run against the same Prometheus),
  returns data.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from kubernetes import client

from controller.observability.explain import decision_records
from controller.observability.metrics import (
    CIRCUIT_BREAKING,
    ROUTING,
)
from devtools import dashboards, demo
from devtools.processes import ManagedProcess, operator_argv
from devtools.prometheus_server import Prometheus, free_port
from tests.conftest import EXPORTER_JOB, REPO_ROOT, OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.kube import custom_object, deployment
from tests.harness.polling import wait_until
from tests.harness.traffic import Backend, Traffic, destination_rule, register_upstream_crds, virtual_service

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "infercast.io", "v1alpha1", "scalingpolicies"
FLEET_DURATION_S = 60.0  # the demo's traffic slice replayed in a minute: quiet, peak, quiet
RATE_INTERVAL = "20s"  # what Grafana's $__rate_interval is at a 1 s scrape interval and a short range

# The traffic policies (both named so that the traffic dashboard's policy variable selects both),
# their mesh host and the two GPU pools behind it; h100 fails throughout (spec limit: 5 % 5xx).
MESH_POLICY, MESH_HOST, MESH_OBJECT = "mesh", "vllm.svc.cluster.local", "vllm"  # MESH_OBJECT: DR and VS name
POOLS = ("h100", "l4")
HEALTH = {"maxErrorRate": 0.05, "maxTTFTSeconds": 4, "recoveryHoldSeconds": 20, "rateWindow": "10s"}
BOARD_UIDS = tuple(board.uid for board in dashboards.BOARDS)


class Run:
    """The processes of one observed run and what they wrote."""

    def __init__(self, namespace: str, prometheus: Prometheus, operator: ManagedProcess, metrics_port: int) -> None:
        self.namespace = namespace
        self.prometheus = prometheus
        self.operator = operator
        self.metrics_port = metrics_port
        self.started = time.time()

    def decision_lines(self) -> list[dict[str, Any]]:
        return decision_records(self.operator.log_text().splitlines())


def with_namespace(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}


def create_mesh(kube: client.ApiClient, namespace: str) -> None:
    """The pools' Deployments (4 ready replicas each), and the DestinationRule and VirtualService
    with a subset per pool that the traffic policies act on."""
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    register_upstream_crds(kube)
    for pool in POOLS:
        apps.create_namespaced_deployment(namespace, deployment(f"vllm-{pool}", replicas=4))
        apps.patch_namespaced_deployment_status(
            f"vllm-{pool}", namespace, {"status": {"replicas": 4, "readyReplicas": 4}}
        )
    rule = destination_rule(MESH_OBJECT, MESH_HOST, list(POOLS))
    service = virtual_service(MESH_OBJECT, MESH_HOST, dict.fromkeys(POOLS, 50))
    custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "destinationrules", rule)
    custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", service)


def traffic_policy(kind: str, target_kind: str, namespace: str, prometheus_url: str) -> dict[str, Any]:
    backends: list[dict[str, Any]] = [
        {
            "name": pool,
            "subset": pool,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"vllm-{pool}"},
        }
        for pool in POOLS
    ]
    if kind == CIRCUIT_BREAKING:
        backends = [{**backend, "requestsPerReplica": 10} for backend in backends]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": MESH_POLICY, "namespace": namespace},
        "spec": {
            "interval": 5,
            "prometheus": {"url": prometheus_url, "timeout": 1},
            "targetRef": {"apiVersion": "networking.istio.io/v1", "kind": target_kind, "name": MESH_OBJECT},
            "backends": backends,
            "health": HEALTH,
        },
    }


@pytest.fixture
def run(
    namespace: str,
    kube: client.ApiClient,
    apiserver: str,
    exporter: Exporter,
    operator: OperatorFactory,
    tmp_path: pathlib.Path,
) -> Iterator[Run]:
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    apps.create_namespaced_deployment(
        namespace, client.V1Deployment.model_validate(with_namespace(demo.deployment_manifest(), namespace))
    )
    # A second workload whose policy reads a metric that does not exist: query errors and a hold.
    apps.create_namespaced_deployment(namespace, deployment("idle", replicas=1))
    apps.patch_namespaced_deployment_status("idle", namespace, {"status": {"replicas": 1, "readyReplicas": 1}})
    create_mesh(kube, namespace)

    fleet_port, metrics_port = free_port(), free_port()
    server = Prometheus(
        {
            "vllm": [f"127.0.0.1:{fleet_port}"],
            "infercast": [f"127.0.0.1:{metrics_port}"],
            EXPORTER_JOB: [exporter.address],  # the mesh's Istio series and the pools' vLLM ones
        },
        workdir=tmp_path / "prometheus",
    )
    with server, Traffic(namespace, exporter, {"h100": Backend(error_rate=0.5), "l4": Backend()}):
        process = operator(
            operator_argv(namespace, "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port))
        )
        operator(
            [
                sys.executable, "-m", "devtools.fleet", "--api", apiserver, "--namespace", namespace,
                "--deployment", demo.DEPLOYMENT, "--port", str(fleet_port), "--model-name", demo.MODEL,
                *demo.Scenario().fleet_args(FLEET_DURATION_S),
            ],
            name="fleet",
        )  # fmt: skip
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, demo.policy_manifest(server.url, namespace)
        )
        broken = demo.policy_manifest(server.url, namespace)
        broken["metadata"]["name"] = "idle"
        broken["spec"]["targetRef"]["name"] = "idle"
        del broken["spec"]["forecast"]  # reactive: its records have no forecast, and it only holds
        broken["spec"]["metrics"] = [
            {"name": "missing", "query": "sum(infercast_test_no_such_metric)", "target": {"type": "Value", "value": 1}}
        ]
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, broken)
        for kind, plural, target_kind in (
            (CIRCUIT_BREAKING, "circuitbreakerpolicies", "DestinationRule"),
            (ROUTING, "routingpolicies", "VirtualService"),
        ):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, traffic_policy(kind, target_kind, namespace, server.url)
            )
        yield Run(namespace, server, process, metrics_port)


# -- resolving the dashboards' variables and queries ---------------------------------------------


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$([A-Za-z_]\w*)", lambda m: values[m.group(1)], text)


def resolve_variables(board: dict[str, Any], prometheus: Prometheus, chosen: dict[str, str]) -> dict[str, str]:
    """Each variable as Grafana would offer it: its query must list the value we pick (or the only one)."""
    values = {"__rate_interval": RATE_INTERVAL}
    for variable in board["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "datasource":
            continue
        if variable["type"] == "textbox":
            values[name] = variable["query"]
            continue
        if variable.get("includeAll") and name not in chosen:
            values[name] = variable["allValue"]  # Grafana's "All", the default: the query need list nothing
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
        assert match, variable["query"]
        expr, label = substitute(match.group(1), values), match.group(2)
        offered = {s["metric"][label] for s in prometheus.query(f"group by ({label}) ({expr})")}
        if variable.get("regex"):
            pattern = re.compile(variable["regex"].strip("/"))
            offered = {m.group(1) for v in offered if (m := pattern.fullmatch(v))}
        want = chosen.get(name)
        assert (want in offered) if want else len(offered) == 1, (name, offered)
        values[name] = want or offered.pop()
    return values


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel or annotation title, PromQL) for every query of every dashboard."""
    found = []
    for board in dashboards.BOARDS:
        document = json.loads((dashboards.DASHBOARD_DIR / f"{board.uid}.json").read_text())
        for panel in document["panels"]:
            found += [(board.uid, panel["title"], t["expr"]) for t in panel["targets"]]
        found += [(board.uid, a["name"], a["expr"]) for a in document["annotations"].get("list", [])]
    return found


# -- the proof -----------------------------------------------------------------------------------


def test_metrics_decision_log_explain_and_every_dashboard_query_against_real_prometheus(
    run: Run, kube: client.ApiClient, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    namespace, prometheus = run.namespace, run.prometheus
    fleet = {"namespace": namespace, "policy": demo.POLICY, "job": "infercast"}
    chosen = {uid: {**fleet, "policy": MESH_POLICY} if uid == "infercast-traffic" else fleet for uid in BOARD_UIDS}
    boards = {b.uid: json.loads((dashboards.DASHBOARD_DIR / f"{b.uid}.json").read_text()) for b in dashboards.BOARDS}
    queries = dashboard_queries()

    # The run has scaled up, and the operator's and the fleet's series are in Prometheus.
    wait_until(lambda: any(d["action"] == "ScaleUp" and d["applied"] for d in run.decision_lines()), timeout=90)

    def missing_data() -> list[tuple[str, str, str]]:
        end = time.time()
        missing = []
        for uid, title, expr in queries:
            values = resolve_variables(boards[uid], prometheus, chosen[uid])
            result = prometheus.query_range(substitute(expr, values), start=run.started, end=end, step=2)
            if not any(series["values"] for series in result):
                missing.append((uid, title, substitute(expr, values)))
        return missing

    still_missing: list[tuple[str, str, str]] = []

    def every_query_has_data() -> bool:
        still_missing[:] = missing_data()
        return not still_missing

    try:
        wait_until(every_query_has_data, timeout=60, interval=2)
    except TimeoutError:
        pytest.fail(f"dashboard queries without data: {json.dumps(still_missing, indent=1)}")
    # The failing pool was flagged, ejected sooner and drained: the traffic panels show it, not only zeros.
    at = {"namespace": namespace, "policy": MESH_POLICY}
    failing, healthy = {**at, "backend": "h100"}, {**at, "backend": "l4"}
    assert max(series_values(prometheus, run, "infercast_flagged_backends", at)) == 1
    assert max(series_values(prometheus, run, "infercast_failure_score", failing)) >= 0.5
    errors = {**at, "setting": "consecutive5xxErrors"}
    tight = min(series_values(prometheus, run, "infercast_outlier_setting", {**errors, "backend": "h100"}))
    assert tight < min(series_values(prometheus, run, "infercast_outlier_setting", {**errors, "backend": "l4"}))
    assert min(series_values(prometheus, run, "infercast_route_weight_ratio", failing)) < 0.5
    assert max(series_values(prometheus, run, "infercast_route_weight_ratio", healthy)) > 0.5

    # A live scrape of the operator is clean for promtool.
    scrape = subprocess.run(
        ["promtool", "check", "metrics"],
        input=_get(f"http://127.0.0.1:{run.metrics_port}/metrics"),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert scrape.returncode == 0, scrape.stdout.decode() + scrape.stderr.decode()

    # Every decision line the operator wrote matches the documented schema.
    schema = json.loads((REPO_ROOT / "docs/decision-log.schema.json").read_text())
    lines = run.decision_lines()
    for line in lines:
        jsonschema.validate(line, schema)
    actions = {(d["policy"].split("/")[1], d["action"]) for d in lines}
    assert {("vllm", "ScaleUp"), ("idle", "Hold"), (MESH_POLICY, "Tighten"), (MESH_POLICY, "Shift")} <= actions
    paths = {d["output"].get("path") for d in lines if d["policy"].endswith("/vllm")}
    assert "forecast" in paths, paths
    # The demo's model setting is Auto: the records, status and refit metric name the model it chose.
    refits = prometheus.query(f'infercast_model_last_refit_duration_seconds{{namespace="{namespace}"}}')
    policy = custom_object(client.CustomObjectsApi(kube), GROUP, VERSION, namespace, PLURAL, demo.POLICY)
    models = {d["inputs"]["forecast"]["model"] for d in run.decision_lines() if d["policy"].endswith("/vllm")}
    chosen_models = models - {"Auto"}
    assert chosen_models, models
    assert refits and {s["metric"]["model"] for s in refits} <= chosen_models, refits
    assert policy["status"]["forecast"]["model"] in chosen_models
    assert policy["status"]["lastDecision"]["path"] in {"forecast", "reactive", "hold", "limit"}

    # `infercast explain` reads the status through the API and the timeline from the log.
    log = tmp_path / "operator.log"
    log.write_text(run.operator.log_text())
    explained = subprocess.run(
        [sys.executable, "-m", "controller.cli", "explain", f"{namespace}/{demo.POLICY}", "--log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        cwd=REPO_ROOT,
    )
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert text.startswith(f"ScalingPolicy {namespace}/{demo.POLICY} -> Deployment/{demo.DEPLOYMENT} (mode Auto)")
    assert "Ready=True (Scaling)" in text
    latest = [d for d in decision_lines_at(log, namespace) if d["policy"].endswith("/vllm")][-1]
    assert f"{latest['action']:<10} {latest['from']} -> {latest['to']}" in text and f"id {latest['id']}" in text
    assert "waiting " in text and " vs target 4 per replica" in text
    assert f"path:     {latest['output']['path']}" in text and "forecast: q0.9 " in text
    assert re.search(r"lead time: [0-9.]+s \((measured|default)", text), text
    # The demo's perReplica is a prior: the simulated fleet exports no prefill seconds or TPOT to learn from.
    assert f"capacity: {demo.CAPACITY_PER_REPLICA} PrefillTokensPerSecond per replica (prior, prefill binds" in text
    assert re.search(r"SLO attainment: [0-9.]+ over the last [0-9]+ minutes for a target of 0.99; headroom", text)


def series_values(prometheus: Prometheus, run: Run, metric: str, labels: dict[str, str]) -> list[float]:
    """Every value over the run of ``metric`` at ``labels``."""
    selector = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    result = prometheus.query_range(f"{metric}{{{selector}}}", start=run.started, end=time.time(), step=2)
    return [float(value) for series in result for _, value in series["values"]]


def decision_lines_at(log: pathlib.Path, namespace: str) -> list[dict[str, Any]]:
    return [d for d in decision_records(log.read_text().splitlines()) if d["policy"].startswith(namespace)]


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body
