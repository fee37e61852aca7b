"""No lost update (issue 12, finding 4): a manual scale is not overwritten, a crash does not reset the rate limits.

* A person scales the target to 7 while the operator is writing 4: the operator's write was made
  on the count it read, the API server refuses it (409), and the operator decides again on 7,
  which it takes as the current count (an Event says so) and holds through the stabilization
  window. Before, ``/scale`` was patched without a resourceVersion and 7 became 4 at once.
* The operator is killed (SIGKILL) after its scale write reached the API server and before it
  recorded the change in ``status.history``. The intent, recorded before the write
  (``status.pendingScale``), tells the restarted operator that the move landed: it counts it, and
  the scale-up rate limit holds across the crash. Before, the restart scaled up again at once,
  past the limit.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.faultproxy import FaultProxy, Request, Rule
from tests.harness.invariants import rate_limit_breaks, scale_changes
from tests.harness.kube import events_for
from tests.harness.polling import stays, wait_until
from tests.harness.replicas import Replicas, Workload
from tests.harness.workload import ReadyFollower

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(apiserver: str) -> Iterator[FaultProxy]:
    with FaultProxy(apiserver, seed=4) as running:
        yield running


@pytest.fixture
def replicas(operator: OperatorFactory, proxy: FaultProxy, namespace: str, tmp_path: pathlib.Path) -> Replicas:
    return Replicas(operator, proxy, namespace, tmp_path)


@pytest.fixture
def workload(namespace: str, kube: client.ApiClient, exporter: Exporter, prometheus: Prometheus) -> Workload:
    return Workload(kube, exporter, namespace)


def reasons(workload: Workload) -> list[str | None]:
    return [e.reason for e in events_for(client.CoreV1Api(workload.kube), workload.namespace, "vllm")]


def test_a_manual_scale_during_a_decision_is_taken_not_overwritten(
    workload: Workload, replicas: Replicas, proxy: FaultProxy, prometheus: Prometheus
) -> None:
    window = 10
    workload.create(replicas=6)
    workload.set_waiting(40)  # 4 replicas' worth: the operator will scale 6 -> 4 once the window allows
    scale_path = workload.scale_path()

    def person_scales_to_7(request: Request) -> None:
        workload.scale(7)

    proxy.add(
        Rule(
            "kubectl scale --replicas 7 meanwhile",
            lambda r: r.path == scale_path and r.method == "PATCH",
            before=person_scales_to_7,
            times=1,
        )
    )
    with ReadyFollower(workload.apps, workload.namespace, workload.name):
        replicas.start("a")
        workload.create_policy(prometheus.url, behavior={"scaleDown": {"stabilizationWindowSeconds": window}})
        wait_until(lambda: "ReplicasChangedOutside" in reasons(workload), timeout=60)
        taken_at = time.monotonic()
        assert workload.replicas() == 7, "the person's 7 stands"
        # Held by the stabilization window that now includes 7, not reverted at the next cycle.
        stays(lambda: workload.replicas() == 7, seconds=window - 3 - (time.monotonic() - taken_at))

    writes = [e for e in proxy.exchanges() if e.path == scale_path and e.method == "PATCH"]
    assert writes[0].status == 409, "the operator's write on the count it had read was refused"
    assert all(e.body["metadata"]["resourceVersion"] for e in writes), "every scale write names what it read"


def test_a_kill_between_the_scale_write_and_its_record_keeps_the_rate_limit(
    workload: Workload, replicas: Replicas, proxy: FaultProxy, prometheus: Prometheus
) -> None:
    period = 60
    workload.create(replicas=2)
    workload.set_waiting(100)  # 10 replicas' worth
    scale_path = workload.scale_path()
    killed: list[float] = []

    def kill_after_the_write(request: Request, status: int) -> None:
        if request.path == scale_path and request.method == "PATCH" and status == 200 and not killed:
            replicas.kill("a")  # before the answer reaches the operator: its status write never happens
            killed.append(time.monotonic())

    proxy.add_hook(kill_after_the_write)
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": period}],
        }
    }
    with ReadyFollower(workload.apps, workload.namespace, workload.name):
        replicas.start("a")
        workload.create_policy(prometheus.url, behavior=behavior)
        wait_until(lambda: killed, timeout=40)
        assert workload.replicas() == 4
        replicas.start("a")  # a new process, as the kubelet restarts a killed container
        wait_until(lambda: workload.status().get("lastDecision"), timeout=40)  # its first cycle
        # Three more cycles of the restarted operator: still 4, the period of the first move is not over.
        stays(lambda: workload.replicas() == 4, seconds=15)

    changes = scale_changes(proxy.exchanges(), workload.namespace, workload.name)
    assert rate_limit_breaks(2, changes, up_pods=2, down_pods=10, period_s=period, tolerance_s=2) == []
    (move,) = workload.status()["history"]["scaleUpEvents"]
    assert move["replicas"] == 2, "the restart counted the move whose record the kill lost"
