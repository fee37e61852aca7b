"""A tiny Kopf operator that proves the harness before the real one exists.

An ``Echo`` (``harness.infercast.io/v1``) names a Deployment and a replica count; the operator writes
that count through the Deployment's ``/scale``, posts an Event on the Echo and records what it did in
the Echo's status. Deleting an Echo scales the Deployment to zero first (through a finalizer).
Run it as ``python -m kopf run tests/harness/echo_operator.py --standalone -n NAMESPACE``.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config

GROUP, VERSION, PLURAL = "harness.infercast.io", "v1", "echoes"


@kopf.on.startup()
def load_kubeconfig(**_: Any) -> None:
    config.load_kube_config()  # $KUBECONFIG, set by the test's operator fixture


def scale(namespace: str | None, deployment: str, replicas: int) -> None:
    assert namespace is not None  # echoes are namespaced
    client.AppsV1Api().patch_namespaced_deployment_scale(deployment, namespace, {"spec": {"replicas": replicas}})


def echo(spec: kopf.Spec, namespace: str | None, body: kopf.Body, patch: kopf.Patch) -> None:
    replicas = int(spec["replicas"])
    scale(namespace, spec["target"], replicas)
    kopf.info(body, reason="Scaled", message=f"scaled {spec['target']} to {replicas}")
    patch.status["echoedReplicas"] = replicas


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(
    spec: kopf.Spec, status: kopf.Status, namespace: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    echo(spec, namespace, body, patch)
    # Counts creations so that a test can tell a resumed operator from one that starts over.
    patch.status["creations"] = int(status.get("creations", 0)) + 1


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def updated(spec: kopf.Spec, namespace: str | None, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    echo(spec, namespace, body, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(spec: kopf.Spec, namespace: str | None, **_: Any) -> None:
    scale(namespace, spec["target"], 0)
