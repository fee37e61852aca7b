"""Reading numbers from Prometheus, safely, for many policies at once, each policy on its own.

Three kinds of read: :meth:`PrometheusPool.query`, the single value of an instant query (what a
metric is now); :meth:`PrometheusPool.query_each`, the single values of several instant queries
in one request (a server's signals); and :meth:`PrometheusPool.range_query`, the samples of one
series over a time range (the load history a forecaster fits on). All follow the rules below.

* **Never read nothing as zero.** A query that returns no series, several series where one is
  expected, NaN or Inf raises :class:`MetricError`. A policy that sees an error holds its
  replicas; reading "no data" as 0 would scale a loaded service down.
* **Identical PromQL is sent once per cycle.** Policies that evaluate the same expression (and,
  for a range, the same start, end and step) against the same Prometheus *with the same
  credentials* within ``coalesce_s`` share one HTTP request (a single-flight map plus a
  short-lived result cache). The cache key holds a keyed hash of the credentials, never the token:
  a policy without a token never receives a value read with another policy's.
* **One policy's trouble stays its own.** Every request has a deadline for the whole of it (queueing
  for a connection, connecting, sending, reading the last byte): a server that drips its answer
  a byte at a time cannot hold a policy longer than its ``timeout``. Requests run on the event
  loop (aiohttp) with connections of their own, so no number of slow answers can take those of the
  Kubernetes client; at most ``max_connections`` requests per endpoint are in flight at once.
* **A failing Prometheus is not hammered, and a failing query does not silence the others.** Only
  a failure to connect puts an endpoint into exponential backoff shared by every policy using it;
  a query that times out or meets a server error backs off alone (the same query, endpoint and
  credentials); an answer such as 401/403 or a rejected query is that policy's error and backs off
  nothing. During a backoff the query fails at once with ``BackingOff``; the first one after it
  probes again, so the controller recovers by itself.
* **No response body leaves this module.** An error says the HTTP status and, when the server
  named it, Prometheus' error type (one of its fixed vocabulary); never the body, which the server
  at a policy's URL chooses and which would reach conditions, Events and logs.

This module must not read Secrets or decide which URLs a policy may use
(:mod:`controller.clients.tenancy` does); it sends what it is given to the URL it is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.helpers import get_env_proxy_for_url

from controller.clients.refs import PrometheusSpec
from controller.errors import InfercastError

#: Reasons that describe Prometheus being unavailable rather than the answer being unusable.
OUTAGE_REASONS = frozenset({"Unreachable", "Timeout", "PrometheusError", "BackingOff"})

#: Prometheus' ``errorType`` vocabulary; any other text in that field is the server's own and is dropped.
PROMETHEUS_ERROR_TYPES = frozenset(
    {"timeout", "canceled", "execution", "bad_data", "internal", "unavailable", "not_found", "not_acceptable"}
)


class MetricError(InfercastError):
    """A metric could not be read. ``reason`` is a stable CamelCase code for conditions and logs.

    ``rejected`` marks errors of the query itself (Prometheus answered 400/422): the spec is
    wrong and retrying will not help, unlike an outage.
    """

    def __init__(self, reason: str, message: str, *, rejected: bool = False) -> None:
        super().__init__(reason, message)
        self.rejected = rejected

    @property
    def outage(self) -> bool:
        """Prometheus could not answer (down, slow, failing, or backed off): the same query may work later."""
        return self.reason in OUTAGE_REASONS

    @property
    def temporary(self) -> bool:
        return self.outage


class _EndpointDown(MetricError):
    """No connection could be made: the endpoint is down for every policy, so it backs off as a whole."""


class _NotSent(MetricError):
    """The deadline passed while waiting for a free connection: nothing was asked, so nothing backs off."""


#: Hashes credentials into cache keys; random per process, so a key says nothing outside it.
_FINGERPRINT_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Credentials:
    """What a policy's Secrets (or its endpoint's files) resolved to. Its repr never shows them."""

    bearer_token: str | None = None
    ca_pem: str | None = None

    def __repr__(self) -> str:
        return (
            f"Credentials(bearer_token={'<set>' if self.bearer_token else None},"
            f" ca_pem={'<set>' if self.ca_pem else None})"
        )

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        """A keyed hash identifying these credentials in cache keys; empty without any."""
        if not self.bearer_token and not self.ca_pem:
            return ""
        material = f"{self.bearer_token or ''}\0{self.ca_pem or ''}".encode()
        return hmac.new(_FINGERPRINT_KEY, material, hashlib.sha256).hexdigest()[:32]


def _the_series(result: list[dict[str, Any]], query: str, over: str) -> dict[str, Any]:
    """The one series of a result: none is ``NoData`` (never a zero), several ``AmbiguousResult``."""
    if not result:
        raise MetricError("NoData", f"query returned no series{over}: {query}")
    if len(result) > 1:
        raise MetricError(
            "AmbiguousResult", f"query returned {len(result)} series where one is expected (aggregate it): {query}"
        )
    return result[0]


def parse_single_value(result: list[dict[str, Any]], query: str) -> float:
    """The one finite value of an instant-query vector result, or a :class:`MetricError`."""
    series = _the_series(result, query, "")
    try:
        value = float(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise MetricError("BadResponse", "the sample is not a [time, value] pair") from None
    if not math.isfinite(value):
        raise MetricError("InvalidValue", f"query returned {value}: {query}")
    return value


#: The label :func:`union_query` marks each query's series with.
QUERY_LABEL = "infercast_query"
_QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def union_query(queries: Mapping[str, str]) -> str:
    """One PromQL expression with the series of every query of ``queries``, each marked with its name.

    ``or`` keeps every series of both sides whose labels differ, and the names make them differ.
    """
    for name in queries:
        if not _QUERY_NAME.match(name):
            raise ValueError(f"not a query name: {name!r}")
    marked = (f'label_replace({promql}, "{QUERY_LABEL}", "{name}", "", "")' for name, promql in queries.items())
    return " or ".join(marked)


def parse_each(result: list[dict[str, Any]], queries: Mapping[str, str]) -> dict[str, float | MetricError]:
    """Each query's one finite value from the result of its :func:`union_query`, or its own error."""
    series: dict[str, list[dict[str, Any]]] = {name: [] for name in queries}
    for item in result:
        name = (item.get("metric") or {}).get(QUERY_LABEL)
        if name in series:
            series[name].append(item)
    values: dict[str, float | MetricError] = {}
    for name, promql in queries.items():
        try:
            values[name] = parse_single_value(series[name], promql)
        except MetricError as exc:
            values[name] = exc
    return values


#: Prometheus refuses a range query of more points than this per series.
MAX_RANGE_POINTS = 11_000


@dataclass(frozen=True)
class RangeSamples:
    """The samples of one series over a range query, oldest first.

    ``step_s`` is the step Prometheus evaluated at (it may be coarser than asked, see
    :func:`range_step`). Timestamps without a value (no data then, or NaN) are simply absent:
    a gap stays a gap, it is never read as zero.
    """

    step_s: float
    times: tuple[float, ...]
    values: tuple[float, ...]


def range_step(start: float, end: float, step_s: float) -> float:
    """``step_s``, made coarse enough (whole seconds) that ``[start, end]`` fits in :data:`MAX_RANGE_POINTS`."""
    return max(step_s, float(math.ceil((end - start) / (MAX_RANGE_POINTS - 1))))


def parse_range(result: list[dict[str, Any]], query: str, step_s: float) -> RangeSamples:
    """The finite samples of the one series of a matrix result, or a :class:`MetricError`."""
    series = _the_series(result, query, " over the range")
    try:
        pairs = [(float(t), float(v)) for t, v in series["values"]]
    except (KeyError, TypeError, ValueError):
        raise MetricError("BadResponse", "the samples are not [time, value] pairs") from None
    finite = [(t, v) for t, v in pairs if math.isfinite(v)]
    if not finite:
        raise MetricError("InvalidValue", f"query returned no finite value over the range: {query}")
    return RangeSamples(step_s, tuple(t for t, _ in finite), tuple(v for _, v in finite))


#: Requests in flight per endpoint unless configured: what the operator's shared thread pool allowed
#: once (a Prometheus slowed by CPU contention answers in proportion to the queries in flight;
#: beyond its own --query.max-concurrency, 20 by default, it queues them itself).
DEFAULT_CONNECTIONS = 32
#: Open connections across all endpoints: bounds the operator's sockets whatever the policies point at.
MAX_TOTAL_CONNECTIONS = 512
#: An answer larger than this is not a Prometheus answer to one series (11,000 points take ~0.5 MB).
MAX_BODY_BYTES = 16 * 2**20


def api_url(spec: PrometheusSpec, path: str) -> yarl.URL:
    """``path`` under the spec's base URL, built from its scheme, host, port and path only.

    Whatever else the URL string holds (a ``#`` or ``?`` that would cut the API path off, user
    information) never reaches the request: the parser refuses such URLs, and this is the second
    line.
    """
    parts = urlsplit(spec.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetricError("Unreachable", f"not an http(s) URL: {spec.url}")
    return yarl.URL.build(scheme=parts.scheme, host=parts.hostname, port=parts.port, path=parts.path.rstrip("/") + path)


def _status_error(status: int, body: bytes) -> MetricError:
    """The error an HTTP status stands for, with Prometheus' error type when the body names a known one."""
    error_type = _error_type(body)
    said = f"HTTP {status}" + (f", {error_type}" if error_type else "")
    if status in (400, 422):
        return MetricError("QueryRejected", f"Prometheus rejected the query ({said})", rejected=True)
    if status in (401, 403):
        return MetricError("Unauthorized", f"Prometheus refused the credentials ({said})")
    return MetricError("PrometheusError", f"Prometheus answered {said}")


def _error_type(body: bytes) -> str | None:
    try:
        error_type = json.loads(body).get("errorType")
    except (ValueError, AttributeError):
        return None
    return error_type if error_type in PROMETHEUS_ERROR_TYPES else None


def _result(body: bytes) -> list[dict[str, Any]]:
    """``data.result`` of a successful answer; anything else is a ``BadResponse`` that quotes nothing of it."""
    try:
        document = json.loads(body)
        result = document["data"]["result"]
    except (ValueError, KeyError, TypeError):
        raise MetricError("BadResponse", "not a Prometheus API response") from None
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise MetricError("BadResponse", "not a Prometheus API response")
    return result


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise MetricError("BadResponse", f"answer larger than {MAX_BODY_BYTES // 2**20} MiB")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise MetricError("BadResponse", f"answer larger than {MAX_BODY_BYTES // 2**20} MiB")
    return bytes(body)


@dataclass
class _Backoff:
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class _Cached:
    expires_at: float
    outcome: object  # the parsed answer, or the MetricError it raised


@dataclass(frozen=True)
class _Route:
    """How requests to one host go, as the environment says: through the proxy of ``HTTP(S)_PROXY``
    unless ``NO_PROXY`` exempts the host, with the proxy's login as a ``Proxy-Authorization`` value.

    Never a login for the host itself: aiohttp's ``trust_env`` would also send the host's entry of
    ``~/.netrc``, i.e. a credential of the operator's, to whichever host a policy names. A policy's
    only credentials are the Secrets it references (docs/security.md).
    """

    proxy: yarl.URL | None = None
    proxy_authorization: str | None = None


def _route_from_env(url: yarl.URL) -> _Route:
    """The proxy settings of the environment for ``url`` (read once per host: it reads files)."""
    try:
        proxy, proxy_auth = get_env_proxy_for_url(url)
    except LookupError:
        return _Route()
    return _Route(proxy, proxy_auth.encode() if proxy_auth is not None else None)


T = TypeVar("T")
CacheKey = tuple[str, ...]  # the URL first, then the credentials and what identifies the request there
RequestObserver = Callable[[float, MetricError | None], None]


@dataclass
class PrometheusPool:
    """One HTTP session for every endpoint; backoff per endpoint and per query; single-flight + cache per query.

    ``clock`` is injectable so that the coalescing and backoff timing can be tested without sleeps.
    ``on_request`` is told the duration and the error (None on success) of every request really
    sent to Prometheus; answers from the cache and refusals during a backoff are not requests.
    ``max_connections`` caps the requests in flight per endpoint (base URL); more wait for a free
    one, within their deadline. Call :meth:`close` when done.
    """

    coalesce_s: float = 4.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 60.0
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    on_request: RequestObserver | None = None
    max_connections: int = DEFAULT_CONNECTIONS
    _session: aiohttp.ClientSession | None = None
    _tls: dict[str, ssl.SSLContext] = field(default_factory=dict)
    _slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _query_backoff: dict[CacheKey, _Backoff] = field(default_factory=dict)  # by _expression(key)
    _cache: dict[CacheKey, _Cached] = field(default_factory=dict)
    _pruned_at: float = -math.inf
    _inflight: dict[CacheKey, asyncio.Future[Any]] = field(default_factory=dict)
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    requests_sent: int = 0

    async def query(self, spec: PrometheusSpec, credentials: Credentials, promql: str) -> float:
        """The single value of ``promql``; raises :class:`MetricError`."""
        return await self._instant(spec, credentials, promql, lambda result: parse_single_value(result, promql))

    async def query_each(
        self, spec: PrometheusSpec, credentials: Credentials, queries: Mapping[str, str]
    ) -> dict[str, float | MetricError]:
        """The single value of each of ``queries`` (by name), in one request (:func:`union_query`).

        Each value fails alone (``NoData``, ``AmbiguousResult``, ``InvalidValue``) as with
        :meth:`query`; what fails the request (an outage, a rejected query) raises :class:`MetricError`
        for all of them.
        """
        return await self._instant(spec, credentials, union_query(queries), lambda result: parse_each(result, queries))

    async def _instant(
        self, spec: PrometheusSpec, credentials: Credentials, promql: str, parse: Callable[[list[dict[str, Any]]], T]
    ) -> T:
        return await self._coalesced(
            (spec.url, _params_key(spec), credentials.fingerprint, promql),
            spec,
            credentials,
            "/api/v1/query",
            {"query": promql},
            parse,
        )

    async def range_query(
        self, spec: PrometheusSpec, credentials: Credentials, promql: str, *, start: float, end: float, step_s: float
    ) -> RangeSamples:
        """The samples of ``promql`` (one series) from ``start`` to ``end``; raises :class:`MetricError`.

        ``start`` and ``end`` are moved down onto the step's grid, so that policies asking for the
        same history within one step send one request; the step is coarsened when the range
        would exceed Prometheus' points limit (``RangeSamples.step_s`` says which step was used).
        """
        step = range_step(start, end, step_s)
        first, last = math.floor(start / step) * step, math.floor(end / step) * step
        return await self._coalesced(
            (spec.url, _params_key(spec), credentials.fingerprint, promql, f"{first!r}:{last!r}:{step!r}"),
            spec,
            credentials,
            "/api/v1/query_range",
            {"query": promql, "start": f"{first:.3f}", "end": f"{last:.3f}", "step": f"{step:g}"},
            lambda result: parse_range(result, promql, step),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _coalesced(
        self,
        key: CacheKey,
        spec: PrometheusSpec,
        credentials: Credentials,
        path: str,
        params: dict[str, str],
        parse: Callable[[list[dict[str, Any]]], T],
    ) -> T:
        """One request per ``key`` at a time and per ``coalesce_s``, unless the endpoint or the query backs off."""
        now = self.clock()
        cached = self._cache.get(key)
        if cached and cached.expires_at > now:
            if isinstance(cached.outcome, MetricError):
                raise cached.outcome
            return cast(T, cached.outcome)
        if key in self._inflight:
            return cast(T, await asyncio.shield(self._inflight[key]))
        self._refuse_during_backoff(key, spec.url, now)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._fetch(spec, credentials, path, params, parse)
        except MetricError as exc:
            self._record(key, exc)
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters may be absent
            raise
        else:
            self._record(key, value)
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    def _refuse_during_backoff(self, key: CacheKey, url: str, now: float) -> None:
        endpoint = self._backoff.get(url)
        if endpoint and endpoint.retry_at > now:
            raise MetricError(
                "BackingOff",
                f"Prometheus at {url} could not be reached {endpoint.failures} time(s);"
                f" next try in {endpoint.retry_at - now:.0f}s",
            )
        query = self._query_backoff.get(_expression(key))
        if query and query.retry_at > now:
            raise MetricError(
                "BackingOff",
                f"this query failed {query.failures} time(s) in a row; next try in {query.retry_at - now:.0f}s",
            )

    async def _fetch(
        self,
        spec: PrometheusSpec,
        credentials: Credentials,
        path: str,
        params: dict[str, str],
        parse: Callable[[list[dict[str, Any]]], T],
    ) -> T:
        """One request's parsed answer or a :class:`MetricError`; reported to ``on_request`` if it was sent."""
        slots = self._slots.setdefault(spec.url, asyncio.Semaphore(self.max_connections))
        started: float | None = None
        try:
            async with asyncio.timeout(spec.timeout_s):
                async with slots:
                    started = self.clock()
                    self.requests_sent += 1
                    value = parse(await self._send(spec, credentials, path, params))
        except TimeoutError:
            error: MetricError = (
                MetricError("Timeout", f"no complete answer within {spec.timeout_s:g}s")
                if started is not None
                else _NotSent(
                    "Timeout",
                    f"all {self.max_connections} connections to Prometheus at {spec.url} stayed busy"
                    f" for the whole timeout ({spec.timeout_s:g}s)",
                )
            )
            self._observe(started, error)
            raise error from None
        except MetricError as exc:
            self._observe(started, exc)
            raise
        self._observe(started, None)
        return value

    async def _send(
        self, spec: PrometheusSpec, credentials: Credentials, path: str, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        url = api_url(spec, path)
        route = await self._route(url)
        headers = {"Accept": "application/json"}
        if credentials.bearer_token:
            headers["Authorization"] = f"Bearer {credentials.bearer_token}"
        try:
            async with self._http().get(
                url,
                params={**dict(spec.params), **params},
                headers=headers,
                proxy=route.proxy,
                proxy_headers=(
                    {"Proxy-Authorization": route.proxy_authorization} if route.proxy_authorization else None
                ),
                ssl=self._tls_for(spec, credentials),
                allow_redirects=False,  # a redirect would carry the token to a URL nobody allowed
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=spec.timeout_s / 2),
            ) as response:
                body = await _read_capped(response)
                if response.status != 200:
                    raise _status_error(response.status, body)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError):
            # A CA that does not fit is the policy's (its caSecretRef), not the endpoint's.
            raise MetricError("Unreachable", "TLS verification of Prometheus failed") from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _EndpointDown("Unreachable", f"cannot reach Prometheus: {type(exc).__name__}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise MetricError("Unreachable", f"the connection failed mid-answer: {type(exc).__name__}") from None
        return _result(body)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_TOTAL_CONNECTIONS, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None),  # each request has its own deadline
                trust_env=False,  # the environment is read once per host instead (:meth:`_route`)
            )
        return self._session

    async def _route(self, url: yarl.URL) -> _Route:
        """The proxy for ``url``'s host (HTTP(S)_PROXY, NO_PROXY), as the requests-based client
        honoured, read once per scheme and host. (aiohttp's ``trust_env`` reads the environment at
        every request, in two trips to a thread: a tenth of the operator's CPU with nine queries per
        policy-cycle; and it would send the host's ``~/.netrc`` login, see :class:`_Route`.)"""
        key = (url.scheme, url.host or "")
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = await asyncio.to_thread(_route_from_env, url)
        return route

    def _tls_for(self, spec: PrometheusSpec, credentials: Credentials) -> ssl.SSLContext | bool:
        if spec.insecure_skip_verify:
            return False
        if not credentials.ca_pem:
            return True
        key = Credentials(ca_pem=credentials.ca_pem).fingerprint
        if key not in self._tls:
            try:
                self._tls[key] = ssl.create_default_context(cadata=credentials.ca_pem)
            except (ssl.SSLError, ValueError):
                raise MetricError("Unreachable", "the CA bundle is not valid PEM") from None
        return self._tls[key]

    def _observe(self, started: float | None, error: MetricError | None) -> None:
        if started is not None and self.on_request is not None:
            self.on_request(self.clock() - started, error)

    def _record(self, key: CacheKey, outcome: object) -> None:
        url = key[0]
        now = self.clock()
        if isinstance(outcome, _NotSent):
            return
        if isinstance(outcome, _EndpointDown):
            self._back_off(self._backoff.setdefault(url, _Backoff()), now)
            return
        self._backoff.pop(url, None)  # the endpoint answered (or at least accepted a connection)
        if isinstance(outcome, MetricError) and outcome.outage:
            self._back_off(self._query_backoff.setdefault(_expression(key), _Backoff()), now)
            return
        self._query_backoff.pop(_expression(key), None)
        self._cache[key] = _Cached(expires_at=now + self.coalesce_s, outcome=outcome)
        if now >= self._pruned_at + self.coalesce_s:
            # Expired answers go within one coalescing window: a policy's first range query holds
            # days of samples, and a thousand of them kept until a size limit cost a gigabyte.
            self._cache = {k: v for k, v in self._cache.items() if v.expires_at > now}
            self._pruned_at = now
        if len(self._query_backoff) > 10_000:
            self._query_backoff = {k: v for k, v in self._query_backoff.items() if v.retry_at > now}

    def _back_off(self, state: _Backoff, now: float) -> None:
        state.failures += 1
        state.retry_at = now + min(self.backoff_cap_s, self.backoff_base_s * 2 ** (state.failures - 1))


def _expression(key: CacheKey) -> CacheKey:
    """The part of a cache key a query's backoff is kept under: endpoint, parameters, credentials and PromQL.

    Not the range: a range query's start and end move every cycle, and an expression too heavy to
    answer in time is as heavy for the next cycle's range (or as an instant query).
    """
    return key[:4]


def _params_key(spec: PrometheusSpec) -> str:
    return "&".join(f"{k}={v}" for k, v in spec.params)
