"""The demo (``make demo``): the operator scaling a simulated vLLM fleet, on this machine, in about 3 minutes.

No cluster and no GPU: every piece but the fleet is the real thing, each in its own process:

* the dev API server (:mod:`devtools.apiserver`), to which the demo applies
  ``crds/scalingpolicies.yaml``, then namespace ``demo``, a vLLM Deployment and a ScalingPolicy;
* the simulated fleet (:mod:`devtools.fleet`), which replays a slice of the Azure LLM
  conversation trace, follows the Deployment's replicas with a cold start and serves vLLM metrics;
* a real Prometheus scraping the fleet every second;
* the operator, ``infercast run --standalone --namespace demo``, through a temporary kubeconfig.

The demo streams the operator's decisions as they happen, records the Deployment's desired and
ready replicas every second, and ends with a summary. Every process it started is stopped at the
end, also on Ctrl-C, SIGTERM or an error; the logs stay in a temporary directory it prints.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import pathlib
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

import kubernetes.client
import urllib3.exceptions
import yaml

from controller.observability.explain import decision_records, learned_lines
from devtools import processes
from devtools.apiserver import start_apiserver, write_kubeconfig
from devtools.prometheus_server import Prometheus, free_port

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMESPACE = "demo"
DEPLOYMENT = "vllm"
POLICY = "vllm"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TIMELINE_STEP_S = 10.0
#: Prompt tokens/s one simulated replica serves within the SLO (a quarter of its prefill rate).
CAPACITY_PER_REPLICA = 3000
LOAD_RATE_WINDOW_S = 15


@dataclasses.dataclass(frozen=True)
class Scenario:
    """The traffic of the demo and the simulated engine's cold start.

    The slice (minutes 14 to 59 of the Azure conversation trace, the file in ``data/traces/``)
    starts quiet, rises to the trace's peak around minute 30 and falls back, so reactive scaling
    goes up and down in one run.
    However long the demo, the whole slice is replayed (``speedup`` = slice / duration) at the same
    request rate, ``rate_multiplier`` times the recorded one: a shorter demo plays the same
    shape faster. At 0.75x the quiet start fits one simulated GPU and the peak needs several.
    """

    trace: pathlib.Path = REPO_ROOT / "data/traces/azure_llm_2023_conv_from840s.csv.gz"
    start_offset_s: float = 0.0
    slice_s: float = 2700.0
    rate_multiplier: float = 0.75
    cold_start_s: float = 15.0

    def fleet_args(self, duration_s: float) -> list[str]:
        speedup = self.slice_s / duration_s
        return [
            "--trace", str(self.trace.resolve()),
            "--start-offset", str(self.start_offset_s),
            "--speedup", f"{speedup:.4f}",
            "--load-scale", f"{self.rate_multiplier / speedup:.5f}",
            "--cold-start", str(self.cold_start_s),
        ]  # fmt: skip


def deployment_manifest() -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": DEPLOYMENT}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.8.5", "args": [f"--model={MODEL}"]}]
                },
            },
        },
    }


def policy_manifest(prometheus_url: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The demo's ScalingPolicy: predictive, with the example policy's shape and timings shrunk to fit 3 minutes.

    ``spec.forecast`` makes it forecast-driven: the load is the fleet's prefill rate in prompt
    tokens/s, forecast every 5 s step from a history that fills within the first half minute;
    the model is selected automatically and re-selected every minute. The lead time starts at the
    fleet's cold start and is then measured from the pods the fleet creates. One replica of the
    simulated engine prefills 12,000 tokens/s; a quarter of that keeps decoding within its
    latency budget under the demo's bursty prompts, so the peak needs three replicas and the
    quiet start one.

    ``spec.metrics`` (waiting and running requests) are what a reactive policy would scale on:
    they are logged with every decision and stay the fallback while no forecast can be made.
    The rate window of the load is short because the demo replays 45 minutes in 3: Prometheus'
    usual minute would smooth the whole peak away. A 30 s scale-down window (instead of minutes)
    lets a scale-down happen within the run.
    """
    load = (
        f'sum(rate({{__name__=~"vllm[:_]prompt_tokens_total", namespace="{namespace}", model_name="{MODEL}"}}'
        f"[{LOAD_RATE_WINDOW_S}s]))"
    )
    return {
        "apiVersion": "infercast.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": POLICY, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "minReplicas": 1,
            "maxReplicas": 8,
            "mode": "Auto",
            "interval": 5,
            "prometheus": {"url": prometheus_url, "timeout": 2, "maxStaleness": 10},
            "metrics": [
                {
                    "name": "waiting",
                    "preset": "vllm-requests-waiting",
                    "modelName": MODEL,
                    "target": {"type": "AverageValue", "value": 4},
                },
                {
                    "name": "running",
                    "preset": "vllm-requests-running",
                    "modelName": MODEL,
                    "target": {"type": "AverageValue", "value": 24},
                },
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 30,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
                },
            },
            "fallback": {"onMetricsUnavailable": "Hold"},
            "forecast": {
                "leadTimeSeconds": int(Scenario.cold_start_s),
                "stepSeconds": 5,
                "historySeconds": 600,
                "refitIntervalSeconds": 60,
                "model": "Auto",
                "capacity": {"unit": "PrefillTokensPerSecond", "perReplica": CAPACITY_PER_REPLICA},
                "load": {"query": load},
            },
        },
    }


# -- what the demo observes ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Decision:
    at_s: float
    action: str
    from_replicas: int
    to_replicas: int
    reason: str
    message: str
    path: str
    """The predictive policy's path that set the count (``forecast``, ``reactive``, ``hold``, ``limit``)."""

    @classmethod
    def from_log(cls, record: dict[str, Any], at_s: float) -> Decision:
        path = str((record.get("output") or {}).get("path") or "reactive")  # a policy without spec.forecast
        return cls(at_s, record["action"], record["from"], record["to"], record["reason"], record["message"], path)

    def one_line(self) -> str:
        return (
            f"{self.at_s:6.1f}s  {self.action:<9} {self.from_replicas:>2} -> {self.to_replicas:<2}"
            f" [{self.path}] {self.reason}: {self.message}"
        )


@dataclasses.dataclass(frozen=True)
class ReplicaSample:
    at_s: float
    desired: int
    ready: int


@dataclasses.dataclass
class DemoResult:
    decisions: list[Decision] = dataclasses.field(default_factory=list)
    timeline: list[ReplicaSample] = dataclasses.field(default_factory=list)
    logs: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    pids: list[int] = dataclasses.field(default_factory=list)
    completed: bool = False
    policy_status: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The ScalingPolicy's status at the end of the run: what the operator learned."""

    def count(self, action: str) -> int:
        return sum(d.action == action for d in self.decisions)

    def count_path(self, path: str) -> int:
        return sum(d.path == path for d in self.decisions)


class DecisionStream:
    """Follows the operator's log file and yields its decision records as they are written."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(errors="replace") as log:
            log.seek(self._offset)
            text = self._partial + log.read()
            self._offset = log.tell()
        *lines, self._partial = text.split("\n")
        yield from decision_records(lines)


class HoldFilter:
    """Prints every scaling decision, but a run of identical holds only once."""

    def __init__(self) -> None:
        self._last_hold: tuple[str, int] | None = None

    def shows(self, decision: Decision) -> bool:
        if decision.action != "Hold":
            self._last_hold = None
            return True
        key = (decision.reason, decision.to_replicas)
        shown = key != self._last_hold
        self._last_hold = key
        return shown


# -- the summary ---------------------------------------------------------------------------------


def summarize(result: DemoResult, out: TextIO) -> None:
    by_path = collections.Counter(d.path for d in result.decisions)
    print("\nDecisions by path (what set the count: the forecast, the load of now, a hold, a limit):", file=out)
    if not by_path:
        print("  (none)", file=out)
    for decided_by, count in sorted(by_path.items()):
        print(f"  {decided_by:<9} {count:>4}", file=out)
    by_reason = collections.Counter((d.action, d.reason) for d in result.decisions)
    print("\nDecisions by action and reason:", file=out)
    if not by_reason:
        print("  (none)", file=out)
    for (action, reason), count in sorted(by_reason.items()):
        print(f"  {action:<9} {reason:<32} {count:>4}", file=out)
    print("\nLearned by the operator (the policy's status):", file=out)
    for line in learned_lines(result.policy_status) or ["(status not read)"]:
        print(f"  {line}", file=out)
    print(f"\nReplicas over time (every {TIMELINE_STEP_S:.0f} s; # ready, + not ready yet):", file=out)
    print("     t  desired  ready", file=out)
    for sample in timeline_steps(result.timeline, TIMELINE_STEP_S):
        bar = "#" * sample.ready + "+" * max(0, sample.desired - sample.ready)
        print(f"  {sample.at_s:4.0f}s  {sample.desired:>7}  {sample.ready:>5}  {bar}", file=out)
    print("\nLogs:", file=out)
    for name, path in result.logs.items():
        print(f"  {name:<10} {path}", file=out)
    print(f"\nGrafana dashboards (fleet, traffic, operator health): {REPO_ROOT / 'dashboards'}/*.json", file=out)
    print("  import: Grafana > Dashboards > New > Import, upload a file, pick your Prometheus data source;", file=out)
    print("  with kube-prometheus-stack: kubectl apply -f deploy/monitoring/grafana-dashboards.yaml", file=out)


def timeline_steps(samples: Sequence[ReplicaSample], step_s: float) -> list[ReplicaSample]:
    """The last sample at or before each multiple of ``step_s`` (a step function of the run).

    The first sample also stands for the moments before it: nothing was observed earlier.
    """
    if not samples:
        return []
    steps: list[ReplicaSample] = []
    index = 0
    at = 0.0
    while at <= samples[-1].at_s:
        while index + 1 < len(samples) and samples[index + 1].at_s <= at:
            index += 1
        current = samples[index]
        steps.append(ReplicaSample(at, current.desired, current.ready))
        at += step_s
    return steps


# -- the run -------------------------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM, turned into an exception so that the cleanup runs as for Ctrl-C."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _api(url: str) -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))


def _apply_objects(api: kubernetes.client.ApiClient) -> None:
    """What a user would ``kubectl apply``: our CRD, then the namespace and the Deployment."""
    for crd in yaml.safe_load_all((REPO_ROOT / "crds" / "scalingpolicies.yaml").read_text()):
        if crd:
            kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    namespace = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
    kubernetes.client.CoreV1Api(api).create_namespace(namespace)
    # The client sends a plain manifest as is; its stubs only know the generated model classes.
    kubernetes.client.AppsV1Api(api).create_namespaced_deployment(
        NAMESPACE,
        deployment_manifest(),  # type: ignore[arg-type]
    )


def _create_policy(api: kubernetes.client.ApiClient, prometheus_url: str) -> None:
    group, version = "infercast.io", "v1alpha1"
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, NAMESPACE, "scalingpolicies", policy_manifest(prometheus_url)
    )


def _read_policy_status(api: kubernetes.client.ApiClient) -> dict[str, Any]:
    group, version = "infercast.io", "v1alpha1"
    policy = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        group, version, NAMESPACE, "scalingpolicies", POLICY, _request_timeout=5
    )
    status = policy.get("status") if isinstance(policy, dict) else None
    return dict(status or {})


def _sample_replicas(apps: kubernetes.client.AppsV1Api, at_s: float) -> ReplicaSample:
    deployment = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE, _request_timeout=2)
    ready = (deployment.status.ready_replicas if deployment.status else None) or 0
    return ReplicaSample(at_s, deployment.spec.replicas or 0, ready)


class Demo:
    """Starts the pieces, watches the run, and stops everything it started."""

    def __init__(self, duration_s: float, workdir: pathlib.Path, scenario: Scenario, out: TextIO) -> None:
        self.duration_s = duration_s
        self.workdir = workdir
        self.scenario = scenario
        self.out = out
        self.result = DemoResult()
        self._children: list[processes.ManagedProcess] = []
        self._prometheus: Prometheus | None = None

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> processes.ManagedProcess:
        log_path = self.workdir / f"{name}.log"
        return self._adopt(name, processes.start_process(argv, log_path=log_path, env=env, cwd=REPO_ROOT))

    def _adopt(self, name: str, process: processes.ManagedProcess) -> processes.ManagedProcess:
        """From now on ``process`` is stopped with the demo, and its log is listed in the summary."""
        self._children.append(process)
        self.result.logs[name] = process.log_path
        self.result.pids.append(process.pid)
        return process

    def run(self) -> DemoResult:
        try:
            self._run()
            self.result.completed = True
        finally:
            self.stop()
        return self.result

    def _run(self) -> None:
        self._say(f"infercast demo: {self.duration_s:.0f} s of simulated vLLM traffic; logs in {self.workdir}")
        apiserver = start_apiserver(self.workdir / "apiserver")
        self._adopt("apiserver", apiserver.process)
        api = _api(apiserver.url)
        _apply_objects(api)
        kubeconfig = write_kubeconfig(apiserver.url, self.workdir / "kubeconfig")
        self._say(f"  API server {apiserver.url}: applied crds/, namespace {NAMESPACE}, deployment {DEPLOYMENT}")

        fleet_port, metrics_port = free_port(), free_port()
        self._prometheus = Prometheus(
            {"vllm": [f"127.0.0.1:{fleet_port}"], "infercast": [f"127.0.0.1:{metrics_port}"]},
            workdir=self.workdir / "prometheus",
        )
        self._prometheus.start()
        self.result.logs["prometheus"] = self._prometheus.log_path
        _create_policy(api, self._prometheus.url)
        self._say(f"  Prometheus {self._prometheus.url} scraping the fleet and the operator; policy {POLICY} created")

        operator = self._start(
            "operator",
            processes.operator_argv(NAMESPACE, "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port)),
            env={"KUBECONFIG": str(kubeconfig)},
        )
        fleet = self._start(
            "fleet",
            [
                sys.executable, "-m", "devtools.fleet",
                "--api", apiserver.url, "--namespace", NAMESPACE, "--deployment", DEPLOYMENT,
                "--port", str(fleet_port), "--model-name", MODEL,
                *self.scenario.fleet_args(self.duration_s),
            ],
        )  # fmt: skip
        self._say("  operator and simulated fleet started; decisions as they happen:\n")
        self._watch(kubernetes.client.AppsV1Api(api), operator, fleet)
        self.result.policy_status = _read_policy_status(api)
        api.close()  # type: ignore[no-untyped-call]

    def _watch(
        self,
        apps: kubernetes.client.AppsV1Api,
        operator: processes.ManagedProcess,
        fleet: processes.ManagedProcess,
    ) -> None:
        decisions = DecisionStream(operator.log_path)
        holds = HoldFilter()
        started = time.monotonic()
        next_sample = 0.0
        while (elapsed := time.monotonic() - started) < self.duration_s:
            for process in (operator, fleet):
                if not process.running():
                    raise RuntimeError(f"{process.argv[2]} exited early:\n{process.log_tail(20)}")
            for record in decisions.new_records():
                decision = Decision.from_log(record, elapsed)
                self.result.decisions.append(decision)
                if holds.shows(decision):
                    self._say(decision.one_line())
            if elapsed >= next_sample:
                next_sample = elapsed + 1.0
                # A missed sample only leaves a gap in the timeline.
                with contextlib.suppress(kubernetes.client.ApiException, urllib3.exceptions.HTTPError):
                    self.result.timeline.append(_sample_replicas(apps, elapsed))
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop every child, newest first (the operator before the API server it talks to)."""
        for process in reversed(self._children):
            process.stop()
        if self._prometheus is not None:
            self._prometheus.stop()


def run_demo(
    duration_s: float = 180.0,
    *,
    workdir: pathlib.Path | None = None,
    scenario: Scenario | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo; 0 when it ran to the end, 1 on an error, 130 when interrupted."""
    return run_demo_result(duration_s, workdir=workdir, scenario=scenario, out=out)[1]


def run_demo_result(
    duration_s: float = 180.0,
    *,
    workdir: pathlib.Path | None = None,
    scenario: Scenario | None = None,
    out: TextIO = sys.stdout,
) -> tuple[DemoResult, int]:
    """:func:`run_demo`, also returning what the run observed (for tests and tools)."""
    workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="infercast-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(duration_s, workdir, scenario or Scenario(), out)
    # Explicitly, also for SIGINT: a shell starting the demo in the background makes it ignore SIGINT.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_stopped),
    }
    code = 0
    try:
        demo.run()
    except (KeyboardInterrupt, _Stopped):
        print("\ninterrupted: every process the demo started has been stopped", file=out)
        code = 130
    except Exception as exc:
        print(f"\ndemo failed: {exc}", file=out)
        code = 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summarize(demo.result, out)
    if code == 0:
        ups, downs = demo.result.count("ScaleUp"), demo.result.count("ScaleDown")
        forecast = demo.result.count_path("forecast")
        print(
            f"\n{ups} scale-up(s), {downs} scale-down(s) in {duration_s:.0f} s;"
            f" {forecast} decision(s) set by the forecast.",
            file=out,
        )
    return demo.result, code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of simulated traffic")
    parser.add_argument("--workdir", type=pathlib.Path, help="where the logs go (default: a new temp dir)")
    args = parser.parse_args(argv)
    return run_demo(args.duration, workdir=args.workdir)


if __name__ == "__main__":
    sys.exit(main())
