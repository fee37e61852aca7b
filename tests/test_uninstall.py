"""Why docs/install.md deletes the policies before the operator, and what docs/troubleshooting.md does when it was not.

Kopf puts its finalizer on every policy, whose daemon it must stop before the object may go. With
the operator running, a deleted policy goes at once; with no operator, its deletion hangs until an
operator runs again or the finalizer is removed by hand. Run against the emulated API server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devtools.processes import ManagedProcess, operator_argv
from tests.conftest import OperatorFactory
from tests.harness.kube import custom_object, deployment
from tests.harness.polling import wait_until

pytestmark = pytest.mark.integration

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
SCALING_POLICIES = ("infercast.io", "v1alpha1", "scalingpolicies")


class Policies:
    """ScalingPolicies of one test namespace, each targeting the same Deployment."""

    def __init__(self, kube: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube)
        self.namespace = namespace

    def create(self, name: str) -> None:
        body = {
            "apiVersion": "infercast.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name},
            # Recommend: no writer conflict between the policies; a closed port: no metrics are needed.
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
                "maxReplicas": 4,
                "mode": "Recommend",
                "prometheus": {"url": "http://127.0.0.1:9"},
                "metrics": [
                    {
                        "name": "waiting",
                        "preset": "vllm-requests-waiting",
                        "target": {"type": "AverageValue", "value": 4},
                    }
                ],
            },
        }
        self.custom.create_namespaced_custom_object(*SCALING_POLICIES[:2], self.namespace, SCALING_POLICIES[2], body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return custom_object(self.custom, *SCALING_POLICIES[:2], self.namespace, SCALING_POLICIES[2], name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def finalizers(self, name: str) -> list[str]:
        policy = self.get(name)
        return list((policy or {}).get("metadata", {}).get("finalizers") or [])

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(*SCALING_POLICIES[:2], self.namespace, SCALING_POLICIES[2], name)

    def gone(self, name: str) -> bool:
        return self.get(name) is None


@pytest.fixture
def policies(kube: client.ApiClient, namespace: str) -> Iterator[Policies]:
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment("vllm", replicas=1))
    yield Policies(kube, namespace)


def start(operator: OperatorFactory, namespace: str) -> ManagedProcess:
    return operator(operator_argv(namespace, "--metrics-port", "0"))


def test_policies_go_while_the_operator_runs_and_hang_without_it(
    operator: OperatorFactory, namespace: str, policies: Policies
) -> None:
    for name in ("first", "second", "third"):
        policies.create(name)
    running = start(operator, namespace)
    wait_until(lambda: all(KOPF_FINALIZER in policies.finalizers(n) for n in ("first", "second", "third")), timeout=30)

    # Policies before the operator: the deletion completes.
    policies.delete("first")
    wait_until(lambda: policies.gone("first"), timeout=30)

    # The operator first: the deletion is accepted and then held by the finalizer.
    assert running.stop() == 0
    policies.delete("second")
    policies.delete("third")
    for name in ("second", "third"):
        held = policies.get(name)
        assert held is not None and held["metadata"].get("deletionTimestamp")
        assert KOPF_FINALIZER in held["metadata"]["finalizers"]

    # Fix 1: run the operator again; it releases what it finalizes.
    start(operator, namespace)
    wait_until(lambda: policies.gone("second") and policies.gone("third"), timeout=30)


def test_a_hanging_deletion_ends_when_the_finalizer_is_removed(
    operator: OperatorFactory, namespace: str, policies: Policies
) -> None:
    policies.create("orphan")
    running = start(operator, namespace)
    wait_until(lambda: KOPF_FINALIZER in policies.finalizers("orphan"), timeout=30)
    assert running.stop() == 0
    policies.delete("orphan")
    assert policies.get("orphan") is not None

    # Fix 2 (the operator is gone for good): the merge patch docs/troubleshooting.md gives.
    policies.custom.patch_namespaced_custom_object(
        *SCALING_POLICIES[:2], namespace, SCALING_POLICIES[2], "orphan", {"metadata": {"finalizers": None}}
    )
    wait_until(lambda: policies.gone("orphan"), timeout=10)
