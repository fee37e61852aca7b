"""How the operator's Kubernetes client reaches the API server: connections, TLS, credentials, proxy.

The client sends its requests on the event loop (aiohttp) with what the ``kubernetes`` client's
configuration says; each test here runs a small loopback server standing in for the API server
(or a proxy) and checks what arrived there. The certificates are made by ``openssl`` for the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from controller.clients.kube import Kube, KubeconfigError, KubeError, load_configuration
from devtools.apiserver import write_kubeconfig

PARALLEL = 16


@dataclass
class Seen:
    """What the stand-in server saw: per request, its client connection, path and headers."""

    connections: list[tuple[str, int]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    client_certificates: list[bool] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler(seen: Seen, delay_s: float = 0.0, status: Callable[[str | None], int] = lambda _: 200) -> type:
    class StandIn(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the client's pool

        def do_GET(self) -> None:
            with seen.lock:
                seen.in_flight += 1
                seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
                seen.connections.append(self.client_address[:2])
                seen.paths.append(self.path)
                seen.authorizations.append(self.headers.get("Authorization"))
                seen.client_certificates.append(bool(getattr(self.connection, "getpeercert", lambda: None)()))
            time.sleep(delay_s)
            code = status(self.headers.get("Authorization"))
            body = json.dumps({"kind": "Scale", "spec": {"replicas": 1}} if code == 200 else {"reason": "Nope"})
            with seen.lock:
                seen.in_flight -= 1
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: object) -> None:
            pass

    return StandIn


@dataclass
class Server:
    url: str
    seen: Seen


@contextlib.contextmanager
def serve(seen: Seen, tls: ssl.SSLContext | None = None, **behaviour: Any) -> Iterator[Server]:
    """A stand-in server on loopback answering as :func:`handler` with ``behaviour``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(seen, **behaviour))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    try:
        yield Server(f"{scheme}://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def slow_server() -> Iterator[Server]:
    with serve(Seen(), delay_s=0.2) as server:
        yield server


@pytest.mark.parametrize("max_connections", [PARALLEL, 4])
async def test_requests_in_flight_are_capped_and_connections_reused(
    slow_server: Server, tmp_path: pathlib.Path, max_connections: int
) -> None:
    kubeconfig = write_kubeconfig(slow_server.url, tmp_path / "kubeconfig")
    async with Kube(load_configuration(str(kubeconfig)), max_connections=max_connections) as kube:
        answers = []
        for _ in range(2):  # the second round reuses the first round's connections
            answers += await asyncio.gather(*(kube.request("GET", f"/apis/apps/v1/x/{i}") for i in range(PARALLEL)))
    assert len(answers) == 2 * PARALLEL and all(a["kind"] == "Scale" for a in answers)
    assert slow_server.seen.most_in_flight == max_connections
    assert len(set(slow_server.seen.connections)) == max_connections, "no connection opened per request"
    assert set(slow_server.seen.authorizations) == {"Bearer devcluster"}


@dataclass(frozen=True)
class Pki:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))  # fmt: skip
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[Server]:
    """An HTTPS stand-in that requires a client certificate signed by the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    with serve(Seen(), tls=context) as server:
        yield server


def data(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_for(path: pathlib.Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


async def test_tls_with_the_kubeconfigs_ca_client_certificate_and_token(
    mtls_server: Server, pki: Pki, tmp_path: pathlib.Path
) -> None:
    client_identity = {"client-certificate-data": data(pki.client_cert), "client-key-data": data(pki.client_key)}
    kubeconfig = kubeconfig_for(
        tmp_path / "kubeconfig",
        {"server": mtls_server.url, "certificate-authority-data": data(pki.ca)},
        {**client_identity, "token": "s3cret"},
    )
    async with Kube(load_configuration(kubeconfig)) as kube:
        assert (await kube.request("GET", "/apis/apps/v1/x"))["kind"] == "Scale"
    assert mtls_server.seen.authorizations == ["Bearer s3cret"]
    assert mtls_server.seen.client_certificates == [True]

    # Without the CA, the server's certificate is not trusted; told to skip verification, it is.
    unknown_ca = kubeconfig_for(tmp_path / "unknown-ca", {"server": mtls_server.url}, client_identity)
    async with Kube(load_configuration(unknown_ca)) as kube:
        with pytest.raises(KubeError) as caught:
            await kube.request("GET", "/apis/apps/v1/x")
    assert caught.value.status == 0 and "certificate" in caught.value.message.lower()
    insecure = kubeconfig_for(
        tmp_path / "insecure", {"server": mtls_server.url, "insecure-skip-tls-verify": True}, client_identity
    )
    async with Kube(load_configuration(insecure)) as kube:
        assert (await kube.request("GET", "/apis/apps/v1/x"))["kind"] == "Scale"


async def test_a_401_asks_the_clients_refresh_hook_for_new_credentials(tmp_path: pathlib.Path) -> None:
    seen = Seen()
    with serve(seen, status=lambda authorization: 200 if authorization == "Bearer new" else 401) as server:
        configuration = load_configuration(str(write_kubeconfig(server.url, tmp_path / "kubeconfig", user="old")))
        asked: list[str] = []

        def rotate(c: Any) -> None:  # as the in-cluster loader's hook re-reads a rotated token file
            asked.append("hook")
            c.api_key["BearerToken"] = "new" if len(asked) > 2 else "old"
            c.api_key_prefix["BearerToken"] = "Bearer"

        configuration.refresh_api_key_hook = rotate  # type: ignore[assignment]
        async with Kube(configuration) as kube:
            with pytest.raises(KubeError) as caught:
                await kube.request("GET", "/a")
            assert caught.value.status == 401
            with pytest.raises(KubeError):
                await kube.request("GET", "/b")
            assert len(asked) == 2, "the hook is asked again after a 401, not at every request"
            assert (await kube.request("GET", "/c"))["kind"] == "Scale"
            assert (await kube.request("GET", "/d"))["kind"] == "Scale"
        assert len(asked) == 3, "within the re-read interval a working header is reused"
        assert seen.authorizations == ["Bearer old", "Bearer old", "Bearer new", "Bearer new"]


async def test_the_kubeconfigs_proxy_is_used_and_a_socks_proxy_refused(tmp_path: pathlib.Path) -> None:
    seen = Seen()
    with serve(seen) as proxy:  # answers as the API server would, through the proxy
        api = "http://api.cluster.example:6443"
        kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", {"server": api, "proxy-url": proxy.url}, {"token": "t"})
        async with Kube(load_configuration(kubeconfig)) as kube:
            assert (await kube.request("GET", "/api/v1/namespaces"))["kind"] == "Scale"
        assert seen.paths == [f"{api}/api/v1/namespaces"], "the request went to the proxy, for the API server"
    socks = kubeconfig_for(tmp_path / "socks", {"server": api, "proxy-url": "socks5://127.0.0.1:1080"}, {"token": "t"})
    with pytest.raises(KubeconfigError) as refused:
        Kube(load_configuration(socks))
    assert refused.value.reason == "UnsupportedProxy"
