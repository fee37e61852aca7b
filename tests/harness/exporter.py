"""A Prometheus exporter whose values the test sets: the stand-in for vLLM/Triton/TGI pods.

It always answers in the plain text format (``generate_latest``), whatever the Accept header:
prometheus-client 0.26 renames ``vllm:num_requests_waiting`` to ``vllm_num_requests_waiting`` when
it negotiates OpenMetrics (client_python#1177), and the tests need the names real vLLM serves.

Metrics are created on first use, with the label names of that first call; every metric of one
name must then use the same label names (prometheus-client's rule). Tests share one exporter per
session, so give every series a label unique to the test, usually ``namespace=<test namespace>``.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# The vLLM latency buckets would do, but any sorted sequence is accepted per metric.
DEFAULT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Exporter:
    """A ``/metrics`` endpoint on 127.0.0.1 served from a background thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._available = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="exporter", daemon=True)

    @property
    def address(self) -> str:
        """``host:port``, as a Prometheus scrape target (and its ``instance`` label)."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> Exporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    # -- values ----------------------------------------------------------------------------------

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        self._child(Gauge, name, labels).set(value)

    def inc_counter(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Counters only go up; ``name`` may end in ``_total`` (it is exposed with it either way)."""
        self._child(Counter, name, labels).inc(amount)

    def observe(self, name: str, value: float, *, buckets: Sequence[float] = DEFAULT_BUCKETS, **labels: str) -> None:
        self._child(Histogram, name, labels, buckets=tuple(buckets)).observe(value)

    def remove(self, name: str, **labels: str) -> None:
        """Stop exposing one series (Prometheus then marks it stale)."""
        with self._lock:
            metric = self._metrics[name]
            metric.remove(*(labels[key] for key in metric._labelnames))

    def set_available(self, available: bool) -> None:
        """While unavailable, ``/metrics`` answers 503 (a scrape failure: ``up == 0``)."""
        self._available = available

    def _child(self, kind: type[Any], name: str, labels: dict[str, str], **options: Any) -> Any:
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = kind(name, f"test metric {name}", sorted(labels), registry=self.registry, **options)
                self._metrics[name] = metric
            elif not isinstance(metric, kind) or sorted(labels) != sorted(metric._labelnames):
                raise ValueError(
                    f"{name} is a {type(metric).__name__} with labels {sorted(metric._labelnames)}; "
                    f"got a {kind.__name__} with labels {sorted(labels)}"
                )
            return metric.labels(**labels) if labels else metric

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        exporter = self

        class MetricsHandler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                if not exporter._available:
                    self.send_error(503)
                    return
                body = generate_latest(exporter.registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A scraper that gave up (scrape timeout, Prometheus stopped mid-scrape) has closed its end.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape per second would drown the test output

        return MetricsHandler
