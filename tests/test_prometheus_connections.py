"""The HTTP connection pool per Prometheus URL holds as many connections as the I/O threads.

A pool smaller than the number of requests in flight makes urllib3 open extra connections and
throw them away ("Connection pool is full"), a new TCP (and TLS) handshake per query at scale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.clients.prometheus import Credentials, PrometheusPool
from controller.clients.refs import PrometheusSpec

PARALLEL = 16


class SlowPrometheus(BaseHTTPRequestHandler):
    """Answers every instant query with one sample, slowly enough that all requests overlap."""

    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the client's pool

    def do_GET(self) -> None:
        time.sleep(0.2)
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def prometheus_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def query_in_parallel(url: str, max_connections: int) -> list[float]:
    spec = PrometheusSpec(url=url, timeout_s=5.0)
    with ThreadPoolExecutor(PARALLEL) as executor:
        pool = PrometheusPool(executor=executor, max_connections=max_connections)
        # Twice: the second round reuses (or, with a small pool, reopens) the connections of the first.
        values = []
        for round_ in range(2):
            values += await asyncio.gather(
                *(pool.query(spec, Credentials(), f"up{{round='{round_}',n='{i}'}}") for i in range(PARALLEL))
            )
        return values


@pytest.mark.parametrize(("max_connections", "discarded"), [(PARALLEL, False), (4, True)])
async def test_parallel_queries_fit_in_the_connection_pool(
    prometheus_url: str, caplog: pytest.LogCaptureFixture, max_connections: int, discarded: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        values = await query_in_parallel(prometheus_url, max_connections)
    assert values == [1.0] * 2 * PARALLEL
    full = [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    assert bool(full) is discarded, [r.getMessage() for r in full]
