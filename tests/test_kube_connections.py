"""The Kubernetes client's connection pool holds as many connections as the threads calling the API.

The client's default pool (5 per CPU) is smaller than the operator's I/O threads: with more
requests in flight than connections, urllib3 opens extra ones and throws them away ("Connection
pool is full"), a new TCP (and TLS) handshake per request at scale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.clients.kube import Kube, load_api_client
from devtools.apiserver import write_kubeconfig

PARALLEL = 16


class SlowApiServer(BaseHTTPRequestHandler):
    """Answers every GET with an empty object, slowly enough that all requests overlap."""

    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the client's pool

    def do_GET(self) -> None:
        time.sleep(0.2)
        body = json.dumps({"kind": "Scale", "spec": {"replicas": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield write_kubeconfig(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "kubeconfig")
    finally:
        server.shutdown()
        server.server_close()


async def get_in_parallel(kubeconfig: pathlib.Path, max_connections: int | None) -> list[dict[str, object]]:
    with ThreadPoolExecutor(PARALLEL) as executor:
        kube = Kube(load_api_client(str(kubeconfig), max_connections=max_connections), executor=executor)
        answers = []
        for _ in range(2):  # the second round reuses (or, with a small pool, reopens) the connections
            answers += await asyncio.gather(*(kube.request("GET", f"/apis/apps/v1/x/{i}") for i in range(PARALLEL)))
        return answers


@pytest.mark.parametrize(("max_connections", "discarded"), [(PARALLEL, False), (4, True)])
async def test_parallel_requests_fit_in_the_connection_pool(
    kubeconfig: pathlib.Path, caplog: pytest.LogCaptureFixture, max_connections: int, discarded: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        answers = await get_in_parallel(kubeconfig, max_connections)
    assert len(answers) == 2 * PARALLEL and all(a["kind"] == "Scale" for a in answers)
    full = [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    assert bool(full) is discarded, [r.getMessage() for r in full]
