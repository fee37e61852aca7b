"""RBAC from evidence (issue 12): what the default install grants equals what the operator was seen calling.

The emulated API server records every request with its user (``devtools.apiserver.audit_entry``);
the operators of the end-to-end tests run as the service account deploy/ binds its roles to
(``OPERATOR_USER``). The two judges below run after every other test of the session
(``after_e2e``, tests/conftest.py), on the whole suite's record, both ways:

* every (API group, resource, verb) an operator called is granted: nothing fails in a cluster
  that the tests let pass;
* every grant was called: nothing is granted "just in case". So they judge the suite (``make
  test``), not a file run alone, which calls too little to use every grant.

Namespaces are not compared: the tests put each operator's Lease and Secrets in its test
namespace, where deploy/ binds them in the operator's own (``test_namespaced_grants_stay_namespaced``
checks that they stay namespaced there).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devtools.processes import operator_argv
from tests.conftest import OPERATOR_USER, OperatorFactory
from tests.harness.kube import present
from tests.harness.kustomize import OVERLAYS, render
from tests.harness.polling import wait_until

Grant = tuple[str, str, str]  # (API group, resource[/subresource], verb)
ROLLOUTS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "scope": "Namespaced",
        "names": {"kind": "Rollout", "plural": "rollouts", "singular": "rollout", "listKind": "RolloutList"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
            }
        ],
    },
}


def documents() -> list[dict[str, Any]]:
    """The default install, as ``kubectl apply -k deploy/overlays/cluster-wide`` sends it."""
    return render(OVERLAYS / "cluster-wide")


def bound_rules() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(binding, rule) for every rule bound to the operator's service account."""
    docs = documents()
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    assert f"system:serviceaccount:{account['namespace']}:{account['name']}" == OPERATOR_USER
    for binding in docs:
        if binding["kind"] in ("ClusterRoleBinding", "RoleBinding") and subject in binding["subjects"]:
            for rule in roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]["rules"]:
                yield binding, rule


def granted() -> set[Grant]:
    return {
        (group, resource, verb)
        for _, rule in bound_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def called(audit_log: pathlib.Path) -> set[Grant]:
    """What the operators of this session called, by the API server's record (discovery is everyone's)."""
    if not audit_log.exists():
        return set()
    entries = (json.loads(line) for line in audit_log.read_text().splitlines() if line)
    return {(e["group"], e["resource"], e["verb"]) for e in entries if e["user"] == OPERATOR_USER and "verb" in e}


def test_namespaced_grants_stay_namespaced() -> None:
    """The Lease and the Secrets are granted in a namespace, never cluster-wide; nothing is a wildcard."""
    for binding, rule in bound_rules():
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        if "leases" in rule["resources"] or "secrets" in rule["resources"]:
            assert binding["kind"] == "RoleBinding", f"{rule['resources']} must not be granted cluster-wide"


@pytest.mark.integration
def test_the_operator_scales_a_statefulset_and_an_argo_rollout(
    namespace: str, kube: client.ApiClient, operator: OperatorFactory
) -> None:
    """The workload kinds deploy/ grants besides Deployments, scaled for real (and so on the record)."""
    try:
        client.ApiextensionsV1Api(kube).create_custom_resource_definition(
            client.V1CustomResourceDefinition.model_validate(ROLLOUTS_CRD)
        )
    except ApiException as exc:
        if exc.status != 409:  # already there: an earlier test of the session made it
            raise
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    labels = {"app": "llm"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "vllm"}]}}
    statefulset = {
        "metadata": {"name": "llm"},
        "spec": {"replicas": 1, "serviceName": "llm", "selector": {"matchLabels": labels}, "template": template},
    }
    apps.create_namespaced_stateful_set(namespace, client.V1StatefulSet.model_validate(statefulset))
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "llm"},
        "spec": {"replicas": 1},
    }
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", rollout)
    for kind, api_version in (("StatefulSet", "apps/v1"), ("Rollout", "argoproj.io/v1alpha1")):
        policy = {
            "apiVersion": "infercast.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": kind.lower()},
            "spec": {
                "targetRef": {"apiVersion": api_version, "kind": kind, "name": "llm"},
                "minReplicas": 2,  # 1 is below the bounds: the first cycle writes 2
                "maxReplicas": 3,
                "interval": 5,
                "prometheus": {"url": "http://127.0.0.1:9"},
                "metrics": [{"name": "q", "query": "vector(1)", "target": {"type": "Value", "value": 1}}],
            },
        }
        custom.create_namespaced_custom_object("infercast.io", "v1alpha1", namespace, "scalingpolicies", policy)
    operator(operator_argv(namespace, "--metrics-port", "0"))

    def rollout_replicas() -> int:
        body = custom.get_namespaced_custom_object_scale("argoproj.io", "v1alpha1", namespace, "rollouts", "llm")
        return int(body["spec"]["replicas"])  # type: ignore[index]

    wait_until(
        lambda: present(apps.read_namespaced_stateful_set_scale("llm", namespace).spec).replicas == 2, timeout=30
    )
    wait_until(lambda: rollout_replicas() == 2, timeout=30)


@pytest.mark.integration
@pytest.mark.after_e2e
def test_every_call_the_operators_made_is_granted(audit_log: pathlib.Path) -> None:
    calls = called(audit_log)
    assert calls, "no operator call on the record"
    assert calls - granted() == set(), "called but not granted"


@pytest.mark.integration
@pytest.mark.after_e2e
def test_every_grant_was_called_by_the_suite(audit_log: pathlib.Path) -> None:
    assert granted() - called(audit_log) == set(), "granted but never called (judged on the whole suite: make test)"
