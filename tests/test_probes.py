"""The Deployment's probes ask Kopf's health endpoint (``infercast run --liveness URL``): it answers once started.

deploy/base/deployment.yaml uses that endpoint for readiness too, because Kopf serves it only after
the operator's start-up handlers have finished. This runs the operator as the Deployment does (on
loopback ports) and checks that claim: when /healthz first answers, /metrics, which the start-up
handler opens, is already served.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from devtools.processes import operator_argv
from devtools.prometheus_server import free_port
from tests.conftest import OperatorFactory
from tests.harness.polling import wait_until

pytestmark = pytest.mark.integration


def answer(url: str) -> tuple[int, bytes] | None:
    """The status and body of a GET, or None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.URLError as exc:
        if isinstance(exc, urllib.error.HTTPError):
            return exc.code, b""
        return None


def test_the_health_endpoint_answers_once_the_operator_has_started(operator: OperatorFactory, namespace: str) -> None:
    health_port, metrics_port = free_port(), free_port()
    health = f"http://127.0.0.1:{health_port}/healthz"
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    argv = ["--liveness", health, "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics_port)]
    process = operator(operator_argv(namespace, *argv))

    def ready() -> tuple[int, bytes] | None:
        assert process.running(), process.log_tail()
        return answer(health)

    status, _ = wait_until(ready, timeout=60, interval=0.05)
    assert status == 200
    served = answer(metrics)
    assert served is not None and served[0] == 200
    assert b"infercast_reconcile_duration_seconds" in served[1]
