"""Operator replicas behind the API fault proxy, and the vLLM-like workload they scale.

:class:`Replicas` starts ``infercast run`` processes with leader election (the Lease in the test's
namespace, short durations), each through a port of its own on a :class:`FaultProxy`, so that
the proxy's record names the process behind every request. A replica can be killed with SIGKILL
(as ``kill -9``, no cleanup) and started again; a restart is a new process with a new identity
and a new port, as a restarted pod is.

:class:`Workload` is one Deployment, its load on the session's exporter and its ScalingPolicy.
"""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from devtools.apiserver import write_kubeconfig
from devtools.processes import ManagedProcess, operator_argv
from tests.conftest import OPERATOR_USER, OperatorFactory
from tests.harness.exporter import Exporter
from tests.harness.faultproxy import FaultProxy
from tests.harness.kube import custom_object, deployment, scale_replicas

GROUP, VERSION, PLURAL = "infercast.io", "v1alpha1", "scalingpolicies"
WAITING = "vllm:num_requests_waiting"


@dataclass(frozen=True)
class Election:
    """Durations of the leader election in the tests: short, with the renew deadline well inside the lease."""

    lease_duration_s: int = 4
    renew_deadline_s: float = 2.5
    retry_period_s: float = 0.5

    def env(self, namespace: str) -> dict[str, str]:
        return {
            "POD_NAMESPACE": namespace,  # the Lease lives in the test's namespace
            "INFERCAST_LEASE_DURATION": str(self.lease_duration_s),
            "INFERCAST_RENEW_DEADLINE": str(self.renew_deadline_s),
            "INFERCAST_RETRY_PERIOD": str(self.retry_period_s),
            "INFERCAST_SELECTION_PROCESSES": "0",
            "INFERCAST_FORECAST_PROCESSES": "0",
        }


def elected_argv(namespace: str) -> list[str]:
    """``infercast run`` as a Deployment runs it (leader election on), limited to the test's namespace."""
    return operator_argv(namespace, "--metrics-port", "0", standalone=False)


@dataclass
class Replicas:
    """Named operator replicas (``a``, ``b``...) through ``proxy``; ``incarnation`` counts their starts."""

    operator: OperatorFactory
    proxy: FaultProxy
    namespace: str
    workdir: pathlib.Path
    election: Election = field(default_factory=Election)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)  # replica name -> its current proxy client name
    starts: int = 0

    def start(self, name: str, extra_env: Mapping[str, str] | None = None) -> ManagedProcess:
        self.starts += 1
        client_name = f"{name}#{self.starts}"
        kubeconfig = write_kubeconfig(
            self.proxy.client_url(client_name), self.workdir / f"kubeconfig-{client_name}", user=OPERATOR_USER
        )
        env = {**self.election.env(self.namespace), **(extra_env or {})}
        process = self.operator(elected_argv(self.namespace), name=f"replica-{name}", env=env, kubeconfig=kubeconfig)
        self.processes[name], self.clients[name] = process, client_name
        return process

    def kill(self, name: str) -> None:
        """SIGKILL, as ``kill -9``: no handler runs, the Lease is not released."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)

    def name_of(self, client_name: str) -> str | None:
        return next((name for name, current in self.clients.items() if current == client_name), None)

    def logs(self) -> list[tuple[str, str]]:
        return [(str(p.log_path), p.log_text()) for p in self.operator.started]


@dataclass
class Workload:
    """A vLLM Deployment in the test's namespace, the queue it reports, and its ScalingPolicy."""

    kube: client.ApiClient
    exporter: Exporter
    namespace: str
    name: str = "vllm"

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.kube)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    def create(self, replicas: int) -> None:
        self.apps.create_namespaced_deployment(self.namespace, deployment(self.name, replicas=replicas))
        self.apps.patch_namespaced_deployment_status(
            self.name, self.namespace, {"status": {"replicas": replicas, "readyReplicas": replicas}}
        )

    def set_waiting(self, total: float) -> None:
        pod = f"{self.name}-7d4b9c6f5d-pod00"
        self.exporter.set_gauge(WAITING, total, namespace=self.namespace, pod=pod, model_name="llama")

    def replicas(self) -> int:
        return scale_replicas(self.apps, self.namespace, self.name)

    def scale(self, replicas: int) -> None:
        """A person's ``kubectl scale``: straight to the API server, around the operator's proxy."""
        self.apps.patch_namespaced_deployment_scale(self.name, self.namespace, {"spec": {"replicas": replicas}})

    def create_policy(self, prometheus_url: str, *, name: str = "vllm", **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": 1,
                "maxReplicas": 10,
                "interval": 5,
                "prometheus": {"url": prometheus_url, "timeout": 1},
                "metrics": [
                    {
                        "name": "waiting",
                        "preset": "vllm-requests-waiting",
                        "target": {"type": "AverageValue", "value": 10},
                    }
                ],
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def status(self, policy: str = "vllm") -> dict[str, Any]:
        obj = custom_object(self.custom, GROUP, VERSION, self.namespace, PLURAL, policy)
        return dict(obj.get("status") or {})

    def condition(self, type_: str, policy: str = "vllm") -> dict[str, Any]:
        return next((c for c in self.status(policy).get("conditions", []) if c["type"] == type_), {})

    def status_path(self, policy: str = "vllm") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{policy}/status"

    def scale_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.name}/scale"
