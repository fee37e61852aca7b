"""An HTTP proxy that injects faults on a seeded schedule and records every exchange: for the API server and Prometheus.

The operator reaches the emulated API server (or Prometheus) through this proxy instead of
directly. Each client gets a port of its own (:meth:`FaultProxy.client_url`), so every recorded
exchange says which operator process sent it: the one-writer check reads "who wrote what, when"
from this log, as an auditor would read a real API server's audit log.

Faults are :class:`Rule` objects, matched against each request in order (first match wins):

* ``status``: answer this HTTP status without forwarding (a Kubernetes ``Status`` body; for a
  watch, 410 is sent as the ``ERROR`` event a real API server streams for an expired version);
* ``delay_s``: forward, then hold the answer this long (a slow answer: the request took effect);
* ``drip_s``: forward, then send the answer's bytes one chunk at a time over this long;
* ``garbage``: forward, then answer 200 with a body that is not JSON;
* ``before``: call this first, then forward (a concurrent change by someone else, made just
  before the operator's request arrives).

A rule may fire with a ``probability`` drawn from the proxy's seeded random generator, up to
``times`` times, until ``until`` (``time.monotonic()``). ``hooks`` run after the upstream
answered and before the client sees the answer: a test kills the operator there, "between" its
write and whatever it would have done next.

The proxy serves from its own thread and event loop; everything a test calls is thread-safe.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web

_FORWARDED_HEADERS = ("Authorization", "Accept", "Content-Type")
_REASONS = {
    403: "Forbidden",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    401: "Unauthorized",
}


@dataclass(frozen=True)
class Request:
    """What a rule or a hook sees of a request."""

    client: str
    method: str
    path: str
    query: dict[str, str]
    body: Any

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD")


@dataclass
class Rule:
    """One fault: which requests it hits and what it does to them (see the module docstring)."""

    name: str
    matches: Callable[[Request], bool]
    status: int | None = None
    delay_s: float = 0.0
    drip_s: float = 0.0
    garbage: bool = False
    before: Callable[[Request], None] | None = None
    probability: float = 1.0
    times: float = math.inf
    until: float = math.inf
    hits: int = 0


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy and its answer; ``fault`` names the rule that hit it."""

    seq: int
    client: str
    method: str
    path: str
    query: dict[str, str]
    body: Any
    received: float
    answered: float
    status: int
    fault: str | None
    forwarded: bool
    """Whether the request reached the upstream server (an injected status never does)."""
    intact: bool = True
    """Whether the client got the upstream's own answer (late or dripped still counts; garbage does not)."""
    answer: Any = None  # the answer's JSON, for writes only (what the server stored)

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD")


Hook = Callable[[Request, int], None]


@dataclass
class FaultProxy:
    """A fault-injecting reverse proxy to ``upstream``; see the module docstring."""

    upstream: str
    seed: int = 0
    kubernetes: bool = True
    require_token: str | None = None
    """Answer 401 to a request without ``Authorization: Bearer <require_token>`` (Prometheus behind auth)."""
    rules: list[Rule] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._log: list[Exchange] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runners: list[aiohttp.web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle (called from the test's thread) ------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client_url(self, client: str) -> str:
        """A new port for ``client``; every exchange through it is recorded under that name."""
        return asyncio.run_coroutine_threadsafe(self._listen(client), self._loop).result(timeout=10)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def add_hook(self, hook: Hook) -> None:
        with self._lock:
            self.hooks.append(hook)

    def remove_hook(self, hook: Hook) -> None:
        with self._lock:
            if hook in self.hooks:
                self.hooks.remove(hook)

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._log)

    # -- serving (on the proxy's loop) --------------------------------------------------------

    async def _listen(self, client: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = aiohttp.web.Application(client_max_size=16 * 1024 * 1024)

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve(client, request)

        app.router.add_route("*", "/{tail:.*}", serve)
        runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        await asyncio.gather(*(runner.cleanup() for runner in self._runners))
        if self._session is not None:
            await self._session.close()
        # Streams still open (watches of processes that were killed) end with the proxy.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _pick(self, request: Request) -> Rule | None:
        now = time.monotonic()
        with self._lock:
            for rule in self.rules:
                if rule.hits >= rule.times or now >= rule.until or not rule.matches(request):
                    continue
                if self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule
        return None

    def _record(
        self,
        request: Request,
        received: float,
        status: int,
        fault: str | None,
        answer: Any,
        *,
        forwarded: bool = True,
        intact: bool | None = None,
    ) -> None:
        with self._lock:
            self._log.append(
                Exchange(
                    seq=len(self._log),
                    client=request.client,
                    method=request.method,
                    path=request.path,
                    query=request.query,
                    body=request.body,
                    received=received,
                    answered=time.time(),
                    status=status,
                    fault=fault,
                    forwarded=forwarded,
                    intact=forwarded if intact is None else intact,
                    answer=answer,
                )
            )

    async def _serve(self, client: str, raw: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        received = time.time()
        data = await raw.read()
        request = Request(client, raw.method, raw.path, dict(raw.query), _json(data))
        if self.require_token is not None and raw.headers.get("Authorization") != f"Bearer {self.require_token}":
            self._record(request, received, 401, "no-token", None, forwarded=False)
            return self._status(401, "a bearer token is required")
        rule = self._pick(request)
        if rule is not None and rule.status is not None:
            self._record(request, received, rule.status, rule.name, None, forwarded=False)
            if request.watch and rule.status == 410:
                return await self._expired_watch(raw)
            return self._status(rule.status, f"injected by the fault proxy ({rule.name})")
        if rule is not None and rule.before is not None:
            await asyncio.get_running_loop().run_in_executor(None, rule.before, request)
        assert self._session is not None
        headers = {name: raw.headers[name] for name in _FORWARDED_HEADERS if name in raw.headers}
        try:
            async with self._session.request(
                raw.method, self.upstream + raw.path_qs, data=data or None, headers=headers
            ) as upstream:
                if request.watch:
                    return await self._stream(raw, request, upstream, received, rule)
                body = await upstream.read()
                status, content_type = upstream.status, upstream.content_type
        except aiohttp.ClientError as exc:
            self._record(request, received, 502, "upstream-unreachable", None, forwarded=False)
            return self._status(502, f"upstream unreachable: {exc}")
        for hook in list(self.hooks):
            hook(request, status)
        fault = rule.name if rule is not None else None
        self._record(
            request, received, 200 if rule is not None and rule.garbage else status, fault, _answer(request, body)
        )
        if rule is not None and rule.delay_s:
            await asyncio.sleep(rule.delay_s)
        if rule is not None and rule.garbage:
            return aiohttp.web.Response(body=b"<html>\x00garbage", status=200, content_type="application/json")
        if rule is not None and rule.drip_s:
            return await self._drip(raw, body, status, content_type, rule.drip_s)
        return aiohttp.web.Response(body=body, status=status, content_type=content_type)

    async def _stream(
        self,
        raw: aiohttp.web.Request,
        request: Request,
        upstream: aiohttp.ClientResponse,
        received: float,
        rule: Rule | None,
    ) -> aiohttp.web.StreamResponse:
        self._record(request, received, upstream.status, rule.name if rule is not None else None, None)
        response = aiohttp.web.StreamResponse(status=upstream.status)
        response.content_type = upstream.content_type
        await response.prepare(raw)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _expired_watch(self, raw: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        await response.prepare(raw)
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
        event = {"type": "ERROR", "object": {**status, "message": "too old resource version (fault proxy)"}}
        await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    async def _drip(
        self, raw: aiohttp.web.Request, body: bytes, status: int, content_type: str, seconds: float
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(status=status)
        response.content_type = content_type
        await response.prepare(raw)
        chunks = [body[i : i + 8] for i in range(0, len(body), 8)] or [b""]
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(seconds / len(chunks))
        await response.write_eof()
        return response

    def _status(self, code: int, message: str) -> aiohttp.web.Response:
        if not self.kubernetes:  # Prometheus' error shape
            body = {"status": "error", "errorType": "unavailable" if code >= 500 else "bad_data", "error": message}
            return aiohttp.web.json_response(body, status=code)
        reason = _REASONS.get(code, "InternalError")
        status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
        status |= {"reason": reason, "message": message, "metadata": {}}
        return aiohttp.web.json_response(status, status=code)


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _answer(request: Request, body: bytes) -> Any:
    return _json(body) if request.writes else None
