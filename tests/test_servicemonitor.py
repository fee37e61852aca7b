"""The example ServiceMonitor scrapes the operator's metrics Service.

kubernetes-validate has no schemas for monitoring.coreos.com, so the fields we use are checked with a
JSON schema of that subset of the Prometheus Operator's ServiceMonitor (v1), and its references are
checked against deploy/.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jsonschema
import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent

LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
SERVICE_MONITOR_SUBSET = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": LABELS},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": LABELS},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}


def load(path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / path).read_text()) if doc]


def test_the_service_monitor_has_the_prometheus_operator_shape() -> None:
    (monitor,) = load("examples/servicemonitor.yaml")
    jsonschema.validate(monitor, SERVICE_MONITOR_SUBSET)


def test_the_service_monitor_selects_the_metrics_service_and_its_port() -> None:
    (monitor,) = load("examples/servicemonitor.yaml")
    (service,) = [doc for doc in load("deploy/03-service.yaml") if doc["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])


def test_the_schema_subset_rejects_a_misspelt_field() -> None:
    (monitor,) = load("examples/servicemonitor.yaml")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    try:
        jsonschema.validate(monitor, SERVICE_MONITOR_SUBSET)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the misspelt field was accepted")
