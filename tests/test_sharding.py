"""Namespace sharding (issue 12): operators on disjoint namespace sets, each with its own Lease, stay in theirs.

Two shards, each one ``infercast run --namespace NS --leader-election-id SHARD`` through its own
port of the fault proxy: each scales the workload of its namespace, and by the proxy's record
every call of a shard stays in its namespace (the cluster-scoped ones Kopf makes aside), which is
what lets each shard run under RBAC bound in its namespaces only (docs/reliability.md).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from kubernetes import client

from devtools.apiserver import parse_api_path, write_kubeconfig
from devtools.prometheus_server import Prometheus
from tests.conftest import OPERATOR_USER, OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.faultproxy import FaultProxy
from tests.harness.polling import wait_until
from tests.harness.replicas import Election, Workload, elected_argv
from tests.harness.workload import ReadyFollower

pytestmark = pytest.mark.integration

# Kopf's view of the cluster: discovery, CRDs and namespaces are cluster-scoped by nature.
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


@pytest.fixture
def second_namespace(namespace: str, kube: client.ApiClient) -> Iterator[str]:
    name = f"{namespace[:50]}-b"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_two_shards_each_scale_their_own_namespace_and_only_it(
    namespace: str,
    second_namespace: str,
    kube: client.ApiClient,
    exporter: Exporter,
    prometheus: Prometheus,
    operator: OperatorFactory,
    apiserver: str,
    tmp_path: pathlib.Path,
) -> None:
    shards = {"shard-a": namespace, "shard-b": second_namespace}
    workloads = {shard: Workload(kube, exporter, ns) for shard, ns in shards.items()}
    with FaultProxy(apiserver, seed=7) as proxy:
        followers = []
        for shard, ns in shards.items():
            workload = workloads[shard]
            workload.create(replicas=1)
            workload.set_waiting(30)
            followers.append(ReadyFollower(workload.apps, ns, workload.name).__enter__())
            kubeconfig = write_kubeconfig(proxy.client_url(shard), tmp_path / f"kubeconfig-{shard}", user=OPERATOR_USER)
            argv = [*elected_argv(ns), "--leader-election-id", f"infercast-{shard}"]
            operator(argv, name=shard, env=Election().env(namespace), kubeconfig=kubeconfig)
            workload.create_policy(prometheus.url)
        try:
            wait_until(lambda: all(w.replicas() == 3 for w in workloads.values()), timeout=40)
        finally:
            for follower in followers:
                follower.__exit__(None, None, None)
            operator.stop_all()
        exchanges = proxy.exchanges()

    for shard, ns in shards.items():
        calls = [parse_api_path(e.path) for e in exchanges if e.client == shard]
        namespaced = [c for c in calls if c is not None and c.plural is not None and c.plural not in CLUSTER_SCOPED]
        assert namespaced, f"{shard} made no call"
        # The Lease of both shards lives in the first namespace, as in one operator namespace.
        outside = {(c.namespace, c.plural) for c in namespaced if c.namespace != ns and c.plural != "leases"}
        assert outside == set(), f"{shard} reached outside its namespace"
