"""The real operator on a cluster short of GPU nodes: pending replicas and the wait for a node join the lead time.

The dev fleet (:mod:`devtools.fleet`) plays the cluster with no free GPU node: the replicas the
operator adds stay Pending (``PodScheduled=False``, ``Unschedulable``) until a node autoscaler
has provisioned a node, ``PROVISIONING_S`` later, and then cold-start for ``COLD_START_S``. The
operator must show the pending replicas while they wait, measure the wait from the pods'
conditions, and provision one start-up *plus* that wait ahead.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from kubernetes import client

from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.fleet import running_fleet, write_trace
from tests.harness.kube import deployment
from tests.harness.polling import wait_until
from tests.test_operator_scaling import Fleet, decision_lines, start_operator

pytestmark = pytest.mark.integration

PROVISIONING_S = 20.0  # a GPU node takes this long to join
COLD_START_S = 10.0  # then the replica loads its model
DEFAULT_LEAD_S = 60  # spec.forecast.leadTimeSeconds: what the operator assumes before it measured
LOAD = "infercast_supply_test_load"


def test_pending_replicas_extend_the_lead_time_by_the_measured_wait_for_a_node(
    namespace: str,
    kube: client.ApiClient,
    exporter: Exporter,
    prometheus: Prometheus,
    operator: OperatorFactory,
    apiserver: str,
    tmp_path: pathlib.Path,
) -> None:
    fleet = Fleet(namespace=namespace, name="vllm", kube=kube, exporter=exporter)
    fleet.apps.create_namespaced_deployment(namespace, deployment(fleet.name, replicas=1))
    exporter.set_gauge(LOAD, 50.0, namespace=namespace)
    trace = tmp_path / "trace.csv"
    write_trace(trace, requests_per_s=1, seconds=600)
    supply = ("--free-gpu-nodes", "0", "--node-provisioning-delay", str(PROVISIONING_S))
    cold_start = ("--cold-start", str(COLD_START_S))
    with running_fleet(apiserver, namespace, fleet.name, trace, tmp_path, *supply, *cold_start):
        process = start_operator(operator, namespace)
        fleet.create_policy(
            prometheus.url,
            name="vllm",
            minReplicas=3,  # the operator adds two replicas at once; no node is free for them
            forecast={
                "leadTimeSeconds": DEFAULT_LEAD_S,
                "stepSeconds": 5,
                "historySeconds": 600,
                "model": "Linear",
                "capacity": {"unit": "RequestsPerSecond", "perReplica": 100},
                "load": {"query": f'sum({LOAD}{{namespace="{namespace}"}})'},
            },
        )
        wait_until(lambda: fleet.replicas() == 3, timeout=30, interval=0.5)

        def lead_time(**expected: int) -> dict[str, Any] | None:
            """``status.leadTime`` once its fields have the ``expected`` values (lists: that many items)."""
            lead = dict(fleet.status("vllm").get("leadTime") or {})
            seen = {k: len(v) if isinstance(v, list) else v for k, v in lead.items() if k in expected}
            return lead if seen == expected else None

        waiting = wait_until(lambda: lead_time(pendingReplicas=2), timeout=15)
        assert waiting["supply"] == "Short"
        assert waiting["seconds"] == pytest.approx(
            waiting["startupSeconds"] + waiting["schedulingDelaySeconds"], abs=0.2
        )
        assert 0 < waiting["schedulingDelaySeconds"] < PROVISIONING_S, "so far, the time the pods have waited"

        served = wait_until(lambda: lead_time(schedulingSamples=2), timeout=PROVISIONING_S + COLD_START_S + 20)

    assert served["pendingReplicas"] == 0 and served["supply"] == "Short", "the pods scheduled last had to wait"
    assert served["schedulingSamples"] == [pytest.approx(PROVISIONING_S, rel=0.2)] * 2
    assert served["startupSeconds"] == pytest.approx(COLD_START_S, rel=0.2), "the cold start, without the wait"
    assert served["seconds"] == pytest.approx(PROVISIONING_S + COLD_START_S, rel=0.2)
    pending = [d for d in decision_lines(process) if d["inputs"]["forecast"].get("pendingReplicas") == 2]
    assert pending, "the decisions made while the replicas waited say so"
    shown = pending[-1]["inputs"]["forecast"]
    assert shown["leadTimeSeconds"] >= shown["schedulingDelaySeconds"] > 0
