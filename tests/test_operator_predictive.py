"""The real operator with spec.forecast: a load ramp is provisioned for in advance; lead time is learned from pods.

The test's stand-in Deployment controller (:class:`PodFollower`) makes Pod objects that turn
Ready a known delay after creation; the operator must measure that delay from the pods. The load
is a gauge on the test exporter that the test ramps up, read through ``spec.forecast.load.query``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.polling import wait_until
from tests.harness.workload import PodFollower
from tests.test_operator_scaling import Fleet, decision_lines, start_operator

pytestmark = pytest.mark.integration

STARTUP_S = 10.0  # the simulated pod start-up the operator must learn
CAPACITY = 100.0  # requests/s one replica serves (spec.forecast.capacity.perReplica)
START_LOAD, RAMP_PER_S = 60.0, 2.0  # 2 replicas serve 200: the ramp reaches that after 70 s
LOAD = "infercast_test_load"


@pytest.fixture
def fleet(namespace: str, kube: client.ApiClient, exporter: Exporter, prometheus: Prometheus) -> Fleet:
    return Fleet(namespace=namespace, name="vllm", kube=kube, exporter=exporter)


@pytest.fixture
def pods(fleet: Fleet) -> Iterator[PodFollower]:
    with PodFollower(client.CoreV1Api(fleet.kube), fleet.apps, fleet.namespace, fleet.name, delay_s=STARTUP_S) as f:
        yield f


class Ramp:
    """The load gauge rising linearly from when it starts; ``value()`` is what was last exported."""

    def __init__(self, exporter: Exporter, namespace: str) -> None:
        self.exporter, self.namespace = exporter, namespace
        self.current = START_LOAD
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.25):
            self.current = START_LOAD + RAMP_PER_S * (time.monotonic() - started)
            self.exporter.set_gauge(LOAD, self.current, namespace=self.namespace)

    def __enter__(self) -> Ramp:
        self.exporter.set_gauge(LOAD, START_LOAD, namespace=self.namespace)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_scales_up_ahead_of_a_ramp_and_learns_the_lead_time(
    fleet: Fleet, prometheus: Prometheus, operator: OperatorFactory, exporter: Exporter, pods: PodFollower
) -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": fleet.name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": fleet.name}},
            "template": {
                "metadata": {"labels": {"app": fleet.name}},
                "spec": {"containers": [{"name": "server", "image": "vllm"}]},
            },
        },
    }
    fleet.apps.create_namespaced_deployment(fleet.namespace, client.V1Deployment.model_validate(manifest))
    with Ramp(exporter, fleet.namespace) as ramp:
        process = start_operator(operator, fleet.namespace)
        fleet.create_policy(
            prometheus.url,
            name="vllm",
            forecast={
                "leadTimeSeconds": 20,
                "stepSeconds": 5,
                "historySeconds": 600,
                "refitIntervalSeconds": 60,
                "model": "Linear",
                "capacity": {"unit": "RequestsPerSecond", "perReplica": CAPACITY},
                "load": {"query": f'sum({LOAD}{{namespace="{fleet.namespace}"}})'},
            },
        )
        wait_until(lambda: fleet.replicas() > 2, timeout=70, interval=0.5)
        load_at_scale_up = ramp.current

    assert load_at_scale_up < 2 * CAPACITY, "scaled up before the ramp reached the capacity of 2 replicas"
    up = next(d for d in decision_lines(process) if d["action"] == "ScaleUp")
    assert up["output"]["path"] == "forecast" and up["reason"] == "ForecastScaleUp"
    assert "(forecast)" in up["message"]
    forecast = up["inputs"]["forecast"]
    assert forecast["quantile"] > 2 * CAPACITY > forecast["observedLoad"], "the forecast, not the load of now, asked"
    assert forecast["capacityPerReplica"] == CAPACITY and forecast["quantileLevel"] == 0.9

    status = wait_until(lambda: (s := fleet.status("vllm")).get("leadTime", {}).get("source") == "measured" and s)
    assert status["leadTime"]["seconds"] == pytest.approx(STARTUP_S, rel=0.2)
    # perReplica is the prior of every resource until the replicas' metrics teach it (this fleet exports none).
    capacity = status["capacity"]
    assert (capacity["unit"], capacity["perReplica"], capacity["source"]) == ("RequestsPerSecond", CAPACITY, "prior")
    assert status["forecast"]["quantile"] == 0.9 and status["forecast"]["model"] == "Linear"
    assert status["forecast"]["last"]["upper"], "the forecast in force is kept in status"
