"""Istio and Gateway API objects for the traffic-policy tests: upstream CRDs, the objects, the traffic they carry."""

from __future__ import annotations

import pathlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.harness.exporter import Exporter
from tests.harness.openapi import crd_version_schema, validator

# Unchanged upstream files; tests/upstream_crds/README.md names their commits and licences.
UPSTREAM_CRDS = pathlib.Path(__file__).resolve().parents[1] / "upstream_crds"
DESTINATION_RULES = UPSTREAM_CRDS / "istio-destinationrules.networking.istio.io.yaml"
VIRTUAL_SERVICES = UPSTREAM_CRDS / "istio-virtualservices.networking.istio.io.yaml"
HTTP_ROUTES = UPSTREAM_CRDS / "gateway-api-httproutes.gateway.networking.k8s.io.yaml"
INFERENCE_POOLS = UPSTREAM_CRDS / "gaie-inferencepools.inference.networking.k8s.io.yaml"
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A pod's engine gauges and token counter, which the stall signal reads.
ENGINE_SERIES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total")


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


@dataclass
class Backend:
    """What one pool reports: its 5xx share and a TTFT range, both changed by the test, and whether
    its pod's engine hung (``stalled``: its sequences stay running and its token counter stops)."""

    error_rate: float = 0.0
    ttft: tuple[float, float] = (0.2, 0.4)
    pod: str = "pod00"  # a new revision runs new pods, with new series
    stalled: bool = False


@dataclass
class Traffic:
    namespace: str
    exporter: Exporter
    backends: dict[str, Backend]
    weights: Callable[[], dict[str, int]] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        engines: dict[str, dict[str, str]] = {}  # each backend's pod, by the labels of its engine series
        while not self._stop.wait(0.5):
            weights = self.weights() if self.weights else None
            for name, backend in self.backends.items():
                requests = 20 if weights is None else round(40 * weights[name] / 100)
                labels = {
                    "reporter": "destination",
                    "destination_workload": f"vllm-{name}",
                    "destination_workload_namespace": self.namespace,
                }
                errors = sum(rng.random() < backend.error_rate for _ in range(requests))
                self.exporter.inc_counter("istio_requests_total", requests - errors, response_code="200", **labels)
                self.exporter.inc_counter("istio_requests_total", errors, response_code="503", **labels)
                pod = {
                    "namespace": self.namespace,
                    "pod": f"vllm-{name}-7d4b9c6f5d-{backend.pod}",
                    "model_name": "llama",
                }
                replaced = engines.get(name, pod)
                if replaced != pod:  # a replaced pod's scrape target goes away: its series go stale
                    for series in ENGINE_SERIES:
                        self.exporter.remove(series, **replaced)
                engines[name] = pod
                for _ in range(5 if requests else 0):  # enough samples for a p95, whatever the weight
                    self.exporter.observe(
                        "vllm:time_to_first_token_seconds", rng.uniform(*backend.ttft), buckets=TTFT_BUCKETS, **pod
                    )
                # Two sequences decoding while requests come, a token each per 25 ms step, none waiting;
                # once hung, they stay running and no token comes.
                self.exporter.set_gauge("vllm:num_requests_running", 2 if requests or backend.stalled else 0, **pod)
                self.exporter.set_gauge("vllm:num_requests_waiting", 0, **pod)
                self.exporter.inc_counter("vllm:generation_tokens_total", 0 if backend.stalled else 40, **pod)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
