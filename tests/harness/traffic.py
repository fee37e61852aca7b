"""Istio and Gateway API objects for the traffic-policy tests: upstream CRDs, and the objects themselves."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.harness.openapi import crd_version_schema, validator

UPSTREAM_CRDS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "crds"
DESTINATION_RULES = UPSTREAM_CRDS / "istio-destinationrules.networking.istio.io.yaml"
VIRTUAL_SERVICES = UPSTREAM_CRDS / "istio-virtualservices.networking.istio.io.yaml"
HTTP_ROUTES = UPSTREAM_CRDS / "gateway-api-httproutes.gateway.networking.k8s.io.yaml"
INFERENCE_POOLS = UPSTREAM_CRDS / "gaie-inferencepools.inference.networking.k8s.io.yaml"


def register_upstream_crds(kube: client.ApiClient) -> None:
    """Create the upstream CRDs through the API, as ``kubectl apply`` would; already there is fine.

    They stay for the session: the API server is shared, and deleting a CRD would delete the
    objects of tests running later.
    """
    extensions = client.ApiextensionsV1Api(kube)
    for path in (DESTINATION_RULES, VIRTUAL_SERVICES, HTTP_ROUTES, INFERENCE_POOLS):
        try:
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        except ApiException as exc:
            if exc.status != 409:
                raise


def schema_errors(path: pathlib.Path, obj: dict[str, Any]) -> list[str]:
    """Violations of the upstream v1 schema in ``path`` by ``obj`` (CEL rules not evaluated).

    Upstream schemas leave out ``apiVersion``, ``kind`` and ``metadata``, which the API server
    validates itself for every kind.
    """
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return [e.message for e in validator(crd_version_schema(path, "v1")).iter_errors(body)]


def destination_rule(name: str, host: str, subsets: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name},
        "spec": {"host": host, "subsets": [{"name": s, "labels": {"pool": s}} for s in subsets], **spec},
    }


def virtual_service(name: str, host: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "name": "completions",
                    "route": [{"destination": {"host": host, "subset": s}, "weight": w} for s, w in weights.items()],
                }
            ],
        },
    }


def http_route(name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "rules": [{"name": "completions", "backendRefs": refs}],
        },
    }
