"""The ServiceMonitor scrapes the operator's metrics Service.

kubernetes-validate has no schemas for monitoring.coreos.com, so the fields we use are checked with a
JSON schema of that subset of the Prometheus Operator's ServiceMonitor (v1, tests/harness/monitoring.py),
and its references are checked against the operator's Service (deploy/base/).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jsonschema
import yaml

from tests.harness.monitoring import SERVICE_MONITOR_SUBSET

REPO = pathlib.Path(__file__).resolve().parent.parent
SERVICE_MONITOR = "deploy/monitoring/servicemonitor.yaml"


def load(path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / path).read_text()) if doc]


def test_the_service_monitor_has_the_prometheus_operator_shape() -> None:
    (monitor,) = load(SERVICE_MONITOR)
    jsonschema.validate(monitor, SERVICE_MONITOR_SUBSET)


def test_the_service_monitor_selects_the_metrics_service_and_its_port() -> None:
    (monitor,) = load(SERVICE_MONITOR)
    (service,) = [doc for doc in load("deploy/base/service.yaml") if doc["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])
    # The operator's series carry the policy's namespace in `namespace`: the scrape must keep it.
    assert all(endpoint["honorLabels"] is True for endpoint in monitor["spec"]["endpoints"])


def test_the_schema_subset_rejects_a_misspelt_field() -> None:
    (monitor,) = load(SERVICE_MONITOR)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    try:
        jsonschema.validate(monitor, SERVICE_MONITOR_SUBSET)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the misspelt field was accepted")
