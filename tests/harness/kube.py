"""Kubernetes client helpers bound to an explicit kubeconfig (the client reads $KUBECONFIG only once)."""

from __future__ import annotations

import json
import pathlib
import urllib.error
import urllib.request
from typing import Any, TypeVar

from kubernetes import client, config

T = TypeVar("T")


def api_client(kubeconfig: pathlib.Path) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))
    return api


def deployment_manifest(name: str, *, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A minimal valid Deployment; its pods are never run (there are no controllers or nodes)."""
    pod_labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:latest"}]},
            },
        },
    }


def deployment(name: str, *, replicas: int, labels: dict[str, str] | None = None) -> client.V1Deployment:
    """``deployment_manifest`` as the client's model, the type its create methods declare."""
    return client.V1Deployment.model_validate(deployment_manifest(name, replicas=replicas, labels=labels))


def present(value: T | None) -> T:
    """``value``, asserted set: the client types every model field as optional, even those the server always sets."""
    assert value is not None, "a field the API server always sets is missing"
    return value


def custom_object(
    custom: client.CustomObjectsApi, group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    """A custom object as the JSON map it is (the client declares its return as ``object``)."""
    return json_object(custom.get_namespaced_custom_object(group, version, namespace, plural, name), f"{plural}/{name}")


def json_object(body: object, what: str = "the answer") -> dict[str, Any]:
    """A custom-object call's answer as the JSON map it is (the client declares it as ``object``)."""
    assert isinstance(body, dict), f"{what} is not a JSON object: {body!r}"
    return body


def scale_replicas(apps: client.AppsV1Api, namespace: str, name: str) -> int:
    """``spec.replicas`` of a Deployment's scale subresource, which the API server always sets."""
    spec = apps.read_namespaced_deployment_scale(name, namespace).spec
    assert spec is not None and spec.replicas is not None, f"the scale of {name} has no spec.replicas"
    return spec.replicas


def events_for(core: client.CoreV1Api, namespace: str, name: str) -> list[client.CoreV1Event]:
    """Events whose involvedObject is ``name`` in ``namespace``, oldest first."""
    events = core.list_namespaced_event(namespace).items
    return [event for event in events if event.involved_object.name == name]


def raw_request(
    server: str, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """One HTTP call outside the typed client: for patch types and paths the client has no method for."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server + path, data=data, method=method, headers={"Content-Type": content_type, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
