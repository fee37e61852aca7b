"""A Prometheus behind TLS and a bearer token: the CA from the policy's Secret verifies it, an unknown CA does not.

The server is a loopback HTTPS endpoint with a self-signed certificate made by ``openssl`` for the
test; it answers one sample and remembers the ``Authorization`` header it received.
"""

from __future__ import annotations

import json
import pathlib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec


@dataclass
class TlsPrometheus:
    url: str
    ca_pem: str
    authorizations: list[str | None] = field(default_factory=list)


@pytest.fixture
def tls_prometheus(tmp_path: pathlib.Path) -> Iterator[TlsPrometheus]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "3"]}]}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield TlsPrometheus(f"https://127.0.0.1:{server.server_address[1]}", cert.read_text(), seen)
    finally:
        server.shutdown()
        server.server_close()


async def test_the_policy_ca_verifies_the_server_and_the_token_is_sent(tls_prometheus: TlsPrometheus) -> None:
    spec = PrometheusSpec(url=tls_prometheus.url, timeout_s=5.0)
    credentials = Credentials(bearer_token="s3cret", ca_pem=tls_prometheus.ca_pem)
    assert await PrometheusPool().query(spec, credentials, "up") == 3.0
    assert tls_prometheus.authorizations == ["Bearer s3cret"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # what the spec asked for
async def test_a_server_no_known_ca_signed_is_unreachable_unless_verification_is_off(
    tls_prometheus: TlsPrometheus,
) -> None:
    with pytest.raises(MetricError) as caught:
        await PrometheusPool().query(PrometheusSpec(url=tls_prometheus.url, timeout_s=5.0), Credentials(), "up")
    assert caught.value.reason == "Unreachable"
    insecure = PrometheusSpec(url=tls_prometheus.url, timeout_s=5.0, insecure_skip_verify=True)
    assert await PrometheusPool().query(insecure, Credentials(), "up") == 3.0
    assert tls_prometheus.authorizations == [None], "no token without one in the spec; the refused handshake sent none"
