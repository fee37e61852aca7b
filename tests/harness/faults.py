"""Fault-injecting HTTP servers that speak the Prometheus HTTP API, for tests, benchmarks and chaos runs.

:class:`FaultyPrometheus` answers ``/api/v1/query`` and ``/api/v1/query_range`` as Prometheus
does, or misbehaves as told: it drips its answer a byte at a time (the body or the headers too),
stalls, answers garbage, refuses with 4xx/5xx and a Prometheus error body, resets the connection,
or forwards to a real Prometheus. What it does is a :data:`Behaviour`, or a function choosing one
per request (by the ``Authorization`` header, the query, the path...), and can be changed while it
runs. Every request is recorded with its headers (to prove a token was, or was not, sent), and the
server counts requests in flight and connections opened (to prove a concurrency cap, or
connection reuse).

It runs in a thread of the test process (``with FaultyPrometheus(...) as server``), or as a process
of its own: ``python -m tests.harness.faults --behaviour drip`` prints ``listening on URL``.

This module must not import the operator: it stands for the world the operator talks to.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A healthy answer: one series of ``value`` (a vector for a query, a matrix for a range)."""

    value: float = 1.0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drip:
    """Status and headers at once (or dripped as well, ``headers=True``), then the body a byte every ``every_s``."""

    every_s: float = 0.5
    headers: bool = False
    answer: Answer = Answer()


@dataclass(frozen=True)
class Stall:
    """Nothing for ``delay_s`` seconds, then ``then`` (the server's stop ends a stall early)."""

    delay_s: float
    then: Behaviour = Answer()


@dataclass(frozen=True)
class Garbage:
    """``body`` as is: a login page, JSON of another shape, a truncated answer."""

    body: bytes = b"<html>a login page</html>"
    content_type: str = "text/html"
    status: int = 200


@dataclass(frozen=True)
class Refuse:
    """An HTTP error with a Prometheus error body (``errorType`` and ``error``), as Prometheus or a proxy sends."""

    status: int = 401
    error_type: str = "unauthorized"
    error: str = "refused by the fault server"


@dataclass(frozen=True)
class Reset:
    """The connection is closed without an answer (a crashing backend, an idle-timeout race)."""


@dataclass(frozen=True)
class Forward:
    """The request is passed on to ``upstream`` (a real Prometheus) and its answer returned."""

    upstream: str
    timeout_s: float = 30.0


Behaviour = Answer | Drip | Stall | Garbage | Refuse | Reset | Forward


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; ``params`` merges the query string and a form body."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    received_at: float
    connection: int
    """Which connection (numbered in accept order) carried it: equal numbers mean a reused connection."""

    @property
    def authorization(self) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == "authorization"), None)

    @property
    def query(self) -> str | None:
        return self.params.get("query")


Route = Callable[[RecordedRequest], Behaviour]


def by_token(tokens: Mapping[str | None, Behaviour], default: Behaviour = Refuse(401)) -> Route:
    """A route by bearer token: ``tokens[token]``, ``tokens[None]`` without one, else ``default``."""

    def route(request: RecordedRequest) -> Behaviour:
        auth = request.authorization
        token = auth.removeprefix("Bearer ") if auth and auth.startswith("Bearer ") else None
        return tokens.get(token, default)

    return route


def vector(value: float, labels: Mapping[str, str], at: float) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [sample(value, labels, at)]}}


def sample(value: float, labels: Mapping[str, str], at: float) -> dict[str, Any]:
    return {"metric": dict(labels), "value": [at, _number(value)]}


def matrix(value: float, labels: Mapping[str, str], start: float, end: float, step: float) -> dict[str, Any]:
    points = [[start + i * step, _number(value)] for i in range(int((end - start) // step) + 1)]
    return {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": dict(labels), "values": points}]},
    }


def _number(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(value) if math.isfinite(value) else ("+Inf" if value > 0 else "-Inf")


class FaultyPrometheus:
    """A Prometheus API on 127.0.0.1 that behaves as ``behaviour`` says (a fixed one or a route)."""

    def __init__(self, behaviour: Behaviour | Route = Answer(), *, port: int = 0) -> None:
        self._route = _as_route(behaviour)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._sockets: set[socket.socket] = set()
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="faulty-prometheus", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def behave(self, behaviour: Behaviour | Route) -> None:
        """From now on behave as ``behaviour`` (requests already answering keep theirs)."""
        self._route = _as_route(behaviour)

    def tokens_seen(self) -> set[str | None]:
        """Every ``Authorization`` header value received (None: a request without one)."""
        with self._lock:
            return {r.authorization for r in self.requests}

    def start(self) -> FaultyPrometheus:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End stalls and drips, close every connection, free the port."""
        self._released.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> FaultyPrometheus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus serves

            def setup(self) -> None:
                super().setup()
                with outer._lock:
                    outer.connections += 1
                    self.connection_number = outer.connections
                    outer._sockets.add(self.connection)

            def finish(self) -> None:
                with outer._lock:
                    outer._sockets.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._serve(self.rfile.read(length) if length else b"")

            def _serve(self, body: bytes) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                if body and "form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    params.update(urllib.parse.parse_qsl(body.decode()))
                request = RecordedRequest(
                    self.command, url.path, params, dict(self.headers.items()), time.time(), self.connection_number
                )
                with outer._lock:
                    outer.requests.append(request)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer._answer(self, request, outer._route(request))
                except OSError:
                    self.close_connection = True  # the client gave up (its deadline): nothing to answer
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, request: RecordedRequest, what: Behaviour) -> None:
        match what:
            case Answer():
                _send(handler, 200, "application/json", _healthy(request, what))
            case Drip(every_s=every_s, headers=headers, answer=answer):
                body = _healthy(request, answer)
                head = _head(200, "application/json", len(body))
                if not headers:
                    handler.wfile.write(head)
                    handler.wfile.flush()
                for byte in (head if headers else b"") + body:
                    if self._released.wait(every_s):
                        handler.close_connection = True
                        return
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
            case Stall(delay_s=delay_s, then=then):
                if self._released.wait(delay_s):
                    handler.close_connection = True
                    return
                self._answer(handler, request, then)
            case Garbage(body=body, content_type=content_type, status=status):
                _send(handler, status, content_type, body)
            case Refuse(status=status, error_type=error_type, error=error):
                payload = {"status": "error", "errorType": error_type, "error": error}
                _send(handler, status, "application/json", json.dumps(payload).encode())
            case Reset():
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
            case Forward(upstream=upstream, timeout_s=timeout_s):
                status, content_type, body = _forward(upstream, request, timeout_s)
                _send(handler, status, content_type, body)


def _as_route(behaviour: Behaviour | Route) -> Route:
    if callable(behaviour):
        return behaviour
    return lambda _: behaviour


def _healthy(request: RecordedRequest, answer: Answer) -> bytes:
    now = time.time()
    if request.path.endswith("/query_range"):
        start, end = float(request.params.get("start", now)), float(request.params.get("end", now))
        step = _seconds(request.params.get("step", "15"))
        return json.dumps(matrix(answer.value, answer.labels, start, end, step)).encode()
    return json.dumps(vector(answer.value, answer.labels, now)).encode()


def _seconds(step: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if step.endswith(unit) and step[: -len(unit)].replace(".", "", 1).isdigit():
            return float(step[: -len(unit)]) * units[unit]
    return float(step)


def _head(status: int, content_type: str, length: int) -> bytes:
    reason = http.HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.wfile.write(_head(status, content_type, len(body)) + body)
    handler.wfile.flush()


def _forward(upstream: str, request: RecordedRequest, timeout_s: float) -> tuple[int, str, bytes]:
    url = f"{upstream.rstrip('/')}{request.path}?{urllib.parse.urlencode(dict(request.params))}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", "application/json"), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", "application/json"), exc.read()


BEHAVIOURS: dict[str, Behaviour] = {
    "answer": Answer(),
    "drip": Drip(),
    "drip-headers": Drip(headers=True),
    "stall": Stall(3600.0),
    "garbage": Garbage(),
    "unauthorized": Refuse(401),
    "forbidden": Refuse(403, "forbidden"),
    "unavailable": Refuse(503, "unavailable"),
    "reset": Reset(),
}


def main() -> int:
    parser = argparse.ArgumentParser(description="A Prometheus API that misbehaves on purpose.")
    parser.add_argument("--behaviour", choices=sorted(BEHAVIOURS), default="answer")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = FaultyPrometheus(BEHAVIOURS[args.behaviour], port=args.port).start()
    print(f"listening on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
