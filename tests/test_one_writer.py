"""One writer among operator replicas (issue 12, finding 3): leader election on a Lease, judged from the API's side.

Two ``infercast run`` replicas, each through its own port of the fault proxy in front of the
emulated API server; the proxy's record says which process sent every request. The invariant:
every write reached the API server while the Lease (by its last successful write) named the
process that sent it. Before the Lease, both replicas wrote (Kopf's peering was not installed and
Kopf ran standalone without a word), and this test failed on its first write.
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
from tests.harness.invariants import LEASES, lease_writes, one_writer_breaks, operator_writes
from tests.harness.polling import wait_until
from tests.harness.replicas import Replicas, Workload
from tests.harness.workload import ReadyFollower

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(apiserver: str) -> Iterator[FaultProxy]:
    with FaultProxy(apiserver, seed=12) as running:
        yield running


@pytest.fixture
def workload(namespace: str, kube: client.ApiClient, exporter: Exporter, prometheus: Prometheus) -> Iterator[Workload]:
    target = Workload(kube, exporter, namespace)
    target.create(replicas=1)
    with ReadyFollower(target.apps, namespace, target.name):
        yield target


@pytest.fixture
def replicas(operator: OperatorFactory, proxy: FaultProxy, namespace: str, tmp_path: pathlib.Path) -> Replicas:
    return Replicas(operator, proxy, namespace, tmp_path)


def scale_writer(proxy: FaultProxy, workload: Workload) -> str:
    """The proxy client of the first process that wrote the target's scale."""
    return next(e.client for e in proxy.exchanges() if e.path == workload.scale_path() and e.writes)


def test_two_replicas_one_writer_and_the_standby_takes_over_a_killed_leader(
    workload: Workload, replicas: Replicas, proxy: FaultProxy, prometheus: Prometheus
) -> None:
    workload.set_waiting(40)  # 4 replicas' worth
    replicas.start("a")
    replicas.start("b")
    workload.create_policy(prometheus.url)
    wait_until(lambda: workload.replicas() == 4, timeout=40)

    leader = replicas.name_of(scale_writer(proxy, workload))
    assert leader is not None
    standby = "b" if leader == "a" else "a"
    workload.set_waiting(80)  # work for the next leader: 8 replicas
    killed_at = time.time()
    replicas.kill(leader)
    wait_until(lambda: workload.replicas() == 8, timeout=40)

    exchanges = proxy.exchanges()
    assert one_writer_breaks(exchanges) == []
    standby_client = replicas.clients[standby]
    takeover = next(w for w in lease_writes(exchanges) if w.client == standby_client and w.holder)
    # The standby waits one lease duration on the record it last saw change, then its next retry.
    election = replicas.election
    assert takeover.time - killed_at <= election.lease_duration_s + 2 * election.retry_period_s + 1.0
    assert all(e.received >= takeover.time for e in operator_writes(exchanges) if e.client == standby_client)


def test_a_leader_that_cannot_renew_stops_writing_before_the_standby_takes_over(
    workload: Workload, replicas: Replicas, proxy: FaultProxy, prometheus: Prometheus
) -> None:
    workload.set_waiting(40)
    replicas.start("a")
    wait_until(lambda: any(w.holder for w in lease_writes(proxy.exchanges())), timeout=20)
    replicas.start("b")
    workload.create_policy(prometheus.url)
    wait_until(lambda: workload.replicas() == 4, timeout=40)

    leader_client = replicas.clients["a"]

    def leader_lease_call(request: Request) -> bool:
        return request.client == leader_client and LEASES.match(request.path) is not None

    cut_at = time.time()
    proxy.add(Rule("lease unreachable for the leader", leader_lease_call, status=503))
    # The leader keeps writing its status every cycle while it leads; cut off from the Lease it must stop.
    wait_until(lambda: not replicas.processes["a"].running(), timeout=20)
    assert replicas.processes["a"].popen.returncode == 1, "a leader that lost the Lease exits to campaign afresh"
    workload.set_waiting(80)
    wait_until(lambda: workload.replicas() == 8, timeout=40)

    exchanges = proxy.exchanges()
    assert one_writer_breaks(exchanges) == []
    last_leader_write = max(e.received for e in operator_writes(exchanges) if e.client == leader_client)
    assert last_leader_write - cut_at <= replicas.election.renew_deadline_s + replicas.election.retry_period_s
