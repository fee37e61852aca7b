"""The fault-injection suite (issue 12): real processes, a seeded schedule of faults, zero invariant breaks.

``make test`` runs a short schedule (about a minute); ``make chaos`` the long one
(``INFERCAST_CHAOS=long``: >= 50 kills of the operator), and writes its report to
``$INFERCAST_CHAOS_REPORT``; docs/reliability.md shows its table. What is injected and what is
checked: :mod:`tests.harness.chaos`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client

from controller.clients.credentials import DEFAULT_SECRET_LABEL
from devtools.prometheus_server import Prometheus
from tests.conftest import OperatorFactory
from tests.harness.chaos import ChaosPlan, ChaosRun
from tests.harness.exporter import Exporter
from tests.harness.faultproxy import FaultProxy
from tests.harness.replicas import Replicas, Workload
from tests.harness.workload import ReadyFollower

pytestmark = pytest.mark.integration

LONG = os.environ.get("INFERCAST_CHAOS") == "long"
SEED = int(os.environ.get("INFERCAST_CHAOS_SEED", "1212"))
PLAN = (
    ChaosPlan(duration_s=600, step_s=(3, 6), seed=SEED, kill_weight=0.6, min_kills=55)
    if LONG
    else ChaosPlan(duration_s=50, step_s=(5, 8), seed=SEED)
)


@pytest.fixture
def proxies(apiserver: str, prometheus: Prometheus) -> Iterator[tuple[FaultProxy, FaultProxy, str]]:
    token = secrets.token_hex(16)
    with (
        FaultProxy(apiserver, seed=SEED) as api,
        FaultProxy(prometheus.url, seed=SEED + 2, kubernetes=False, require_token=token) as metrics,
    ):
        yield api, metrics, token


def test_chaos(
    namespace: str,
    kube: client.ApiClient,
    exporter: Exporter,
    operator: OperatorFactory,
    proxies: tuple[FaultProxy, FaultProxy, str],
    tmp_path: pathlib.Path,
) -> None:
    api, metrics, token = proxies
    client.CoreV1Api(kube).create_namespaced_secret(
        namespace,
        client.V1Secret(
            # Opted in, as an admin's default rules ask of a Secret sent as credentials (docs/security.md).
            metadata=client.V1ObjectMeta(name="prometheus", labels=dict([DEFAULT_SECRET_LABEL])),
            data={"token": base64.b64encode(token.encode()).decode()},
        ),
    )
    workload = Workload(kube, exporter, namespace)
    workload.create(replicas=PLAN.initial_replicas)
    workload.set_waiting(25)
    workload.create_policy(
        metrics.client_url("prometheus"),
        minReplicas=PLAN.min_replicas,
        maxReplicas=PLAN.max_replicas,
        interval=PLAN.interval_s,
        behavior=PLAN.behavior(),
        prometheus={
            "url": metrics.client_url("prometheus"),
            "timeout": 1,
            "bearerTokenSecretRef": {"name": "prometheus", "key": "token"},
        },
    )
    run = ChaosRun(PLAN, Replicas(operator, api, namespace, tmp_path), api, metrics, workload, token)
    with ReadyFollower(workload.apps, namespace, workload.name):
        run.run()
    operator.stop_all()  # before the proxies go: nothing is judged of what the stopping processes send
    report = run.judge()
    for name, proxy in (("api", api), ("prometheus", metrics)):  # for a post-mortem of any break
        with (tmp_path / f"{name}-exchanges.jsonl").open("w") as record:
            record.writelines(json.dumps(dataclasses.asdict(e), default=str) + "\n" for e in proxy.exchanges())
    print(report.table())
    print(report.to_json())
    if path := os.environ.get("INFERCAST_CHAOS_REPORT"):
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_text(report.to_json() + "\n")
        pathlib.Path(path).with_suffix(".md").write_text(report.table() + "\n")
    assert {name: found for name, found in report.breaks.items() if found} == {}
    assert report.scale_writes > 0 and report.leader_changes > 0, "the run must exercise what it judges"
    if LONG:
        assert sum(n for kind, n in report.faults.items() if kind.startswith("kill")) >= PLAN.min_kills
