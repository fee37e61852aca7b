"""A gauge on the session's exporter that the Prometheus client tests read back.

Two pods (3.0 and 4.5) so that a query can be ambiguous or summed to a known 7.5, and a name
unique to the test so that tests sharing the session's Prometheus never see each other's series.
"""

from __future__ import annotations

import secrets

from controller.clients.refs import PrometheusSpec
from devtools.prometheus_server import Prometheus
from tests.harness.exporter import Exporter


def two_pod_gauge(exporter: Exporter, prometheus: Prometheus, prefix: str, scraped: str) -> str:
    """The new gauge's name, once Prometheus holds what ``scraped`` asks (PromQL with ``{name}``)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    exporter.set_gauge(name, 3.0, pod="a")
    exporter.set_gauge(name, 4.5, pod="b")
    prometheus.wait_for_series(scraped.format(name=name), timeout=20)
    return name


def spec_for(prometheus: Prometheus) -> PrometheusSpec:
    return PrometheusSpec(url=prometheus.url, timeout_s=2.0)
