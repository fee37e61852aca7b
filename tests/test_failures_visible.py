"""Every failure visible (issue 12, finding 5): an API error reading the target is a condition and one Event.

The operator reads its target through the fault proxy. While the API server answers 403 (RBAC
taken away) or 5xx to the target's ``/scale``, or answers it with something that is not JSON (a
bug's path: an unexpected exception), the policy says ``Ready=False`` with the reason, once in an
Event, and recovers by itself when the fault ends. Before, a 403 or 5xx left ``Ready=True`` and a
stale ``lastDecision``, with the traceback only in the log.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from kubernetes import client

from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.faultproxy import FaultProxy, Request, Rule
from tests.harness.kube import events_for
from tests.harness.polling import wait_until
from tests.harness.replicas import Replicas, Workload

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(apiserver: str) -> Iterator[FaultProxy]:
    with FaultProxy(apiserver, seed=5) as running:
        yield running


def test_api_errors_on_the_target_become_a_condition_and_one_event_each(
    namespace: str,
    kube: client.ApiClient,
    exporter: Exporter,
    prometheus: Prometheus,
    operator: OperatorFactory,
    proxy: FaultProxy,
    tmp_path: pathlib.Path,
) -> None:
    workload = Workload(kube, exporter, namespace)
    workload.create(replicas=2)
    workload.set_waiting(20)  # exactly the target: hold at 2
    replicas = Replicas(operator, proxy, namespace, tmp_path)
    replicas.start("a")
    workload.create_policy(prometheus.url)
    wait_until(lambda: workload.condition("Ready").get("reason") == "Scaling", timeout=40)

    def warnings() -> list[str]:
        events = events_for(client.CoreV1Api(kube), namespace, "vllm")
        return [f"{e.reason}: {e.message}" for e in events if e.type == "Warning"]

    def reported_while(fault: Rule, reason: str, says: str) -> None:
        proxy.add(fault)
        ready = wait_until(lambda: [c for c in [workload.condition("Ready")] if c.get("reason") == reason], timeout=20)[
            0
        ]
        assert ready["status"] == "False" and says in ready["message"]
        cycles = fault.hits
        wait_until(lambda: fault.hits > cycles, timeout=20)  # one more failed cycle: no second Event
        assert len([w for w in warnings() if w.startswith(reason) and says in w]) == 1
        proxy.remove(fault)
        wait_until(lambda: workload.condition("Ready").get("status") == "True", timeout=20)

    def reads_the_scale(request: Request) -> bool:
        return request.path == workload.scale_path() and request.method == "GET"

    reported_while(Rule("403 on the scale", reads_the_scale, status=403), "KubeApiError", "403")
    # Not JSON: the client raises what no cycle expects, the path of any bug.
    reported_while(Rule("garbage on the scale", reads_the_scale, garbage=True), "InternalError", "JSONDecodeError")
