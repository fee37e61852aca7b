"""The Kubernetes API as the reconcile step needs it: a few verbs on any resource, by path.

We use the official ``kubernetes`` client for what it is good at, finding the credentials
(kubeconfig, in-cluster service account, exec plugins and the refresh of their tokens), and send
the requests ourselves, on the event loop with aiohttp, as Kopf and the Prometheus client do:

* resources are addressed by path, because the operator works on *any* workload with a ``scale``
  subresource (Deployments, StatefulSets, Argo Rollouts, LeaderWorkerSets...), found by API
  discovery rather than by a typed class per kind;
* no thread per request: the synchronous client needed a hand-off to a worker thread and back for
  each call, and with its urllib3 stack cost a fifth of the operator's CPU at 300 policies; a
  request now waits on the loop like every other. At most ``max_connections`` are in flight; more
  wait for a connection within their deadline.

What is taken from the client's configuration: the server URL, its CA, a client certificate,
``insecure-skip-tls-verify``, the TLS server name, the ``Authorization`` header (bearer token or
basic login, re-read through the client's refresh hook at most every :data:`CREDENTIALS_REREAD_S`
and after a 401), and an HTTP(S) proxy unless ``no_proxy`` exempts the server. A SOCKS proxy is
refused when a :class:`Kube` is made (at the operator's start), with :class:`KubeconfigError`:
neither aiohttp nor Kopf's watch speaks it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes import client, config
from kubernetes.client.rest import is_socks_proxy_url, should_bypass_proxies

from controller.clients.refs import ObjectRef
from controller.errors import InfercastError, InputError

#: Statuses the same request may not meet again: no answer, a conflict, throttling, a server error.
TEMPORARY_STATUSES = frozenset({0, 409, 429, 500, 502, 503, 504})
#: The longest object name the API server takes (a DNS subdomain), Event names included.
MAX_NAME_LENGTH = 253
_EVENT_SUFFIX_LENGTH = 17  # "." and 16 hex digits
#: Requests in flight at once unless configured (``INFERCAST_KUBE_CONNECTIONS`` in the operator).
DEFAULT_CONNECTIONS = 32
#: How long an ``Authorization`` header is sent before the client's refresh hook is asked again:
#: the hook re-reads a kubeconfig or a service-account token, too much to do at every request.
#: Service-account tokens are rotated long before they expire; a 401 asks again at once.
CREDENTIALS_REREAD_S = 10.0


class KubeError(InfercastError):
    """An API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.status = status

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def temporary(self) -> bool:
        return self.status in TEMPORARY_STATUSES


@dataclass(frozen=True)
class Resource:
    """A discovered resource type: where its objects live and which subresources it has."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)


class KubeconfigError(InputError):
    """No credentials for the API: no usable kubeconfig, and not in a pod."""


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """Credentials from the pod's service account when in a cluster, else from a kubeconfig."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig or os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
    except (config.ConfigException, OSError) as exc:
        raise KubeconfigError("NoKubeconfig", f"no usable kubeconfig: {exc}") from exc
    return configuration


@dataclass(frozen=True)
class Connection:
    """How requests reach the API server, read once from the client's configuration."""

    url: str
    tls: ssl.SSLContext | None
    server_hostname: str | None = None
    proxy: str | None = None
    proxy_headers: Mapping[str, str] | None = None

    @classmethod
    def of(cls, configuration: client.Configuration) -> Connection:
        """Raises :class:`KubeconfigError` for what cannot be used: unreadable TLS files, a SOCKS proxy."""
        url = str(configuration.host).rstrip("/")
        proxy = configuration.proxy
        if proxy and should_bypass_proxies(url, configuration.no_proxy or ""):
            proxy = None
        if proxy and is_socks_proxy_url(proxy):
            raise KubeconfigError("UnsupportedProxy", f"a SOCKS proxy for the API server is not supported: {proxy}")
        headers = configuration.proxy_headers
        return cls(
            url=url,
            tls=_tls_context(configuration) if url.startswith("https:") else None,
            server_hostname=configuration.tls_server_name or None,
            proxy=proxy or None,
            proxy_headers={str(k): str(v) for k, v in headers.items()} if proxy and headers else None,
        )


def _tls_context(configuration: client.Configuration) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    except (ssl.SSLError, OSError) as exc:
        raise KubeconfigError("NoKubeconfig", f"unusable TLS files for the API server: {exc}") from exc
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    return context


@dataclass
class Kube:
    """The API server the ``configuration`` names; call :meth:`close` when done (or use ``async with``).

    ``fence`` is called before every request that writes and raises to refuse it (a
    :class:`KubeError`): an operator replica that is not the leader writes nothing.
    """

    configuration: client.Configuration
    max_connections: int = DEFAULT_CONNECTIONS
    timeout_s: float = 10.0
    fence: Callable[[], None] | None = None
    connection: Connection = field(init=False)
    _discovery: dict[str, dict[str, Resource]] = field(default_factory=dict, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _session_loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _authorization: str | None = field(default=None, init=False)
    _authorization_until: float = field(default=-1.0, init=False)

    def __post_init__(self) -> None:
        self.connection = Connection.of(self.configuration)

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        authorization = self._credentials()
        if authorization:
            headers["Authorization"] = authorization
        data = None if body is None else json.dumps(body).encode()
        connection = self.connection
        if method != "GET" and self.fence is not None:
            self.fence()  # as late as can be: what follows waits only for a connection and the send
        try:
            async with self._http().request(
                method,
                connection.url + path,
                params=dict(query) if query else None,
                data=data,
                headers=headers,
                ssl=connection.tls if connection.tls is not None else True,
                server_hostname=connection.server_hostname,
                proxy=connection.proxy,
                proxy_headers=connection.proxy_headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # no answer: refused, reset, timed out
            raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if status == 401:
            self._authorization_until = -1.0  # a rotated token: ask the refresh hook at the next request
        if status >= 400:
            raise _error_from_body(status, raw)
        if not raw:
            return {}
        answer = json.loads(raw)
        return answer if isinstance(answer, dict) else {"items": answer}

    def _credentials(self) -> str | None:
        """The ``Authorization`` header, through the client's refresh hook at most every CREDENTIALS_REREAD_S."""
        now = time.monotonic()
        if now >= self._authorization_until:
            bearer = self.configuration.auth_settings().get("BearerToken")
            self._authorization = str(bearer["value"]) if bearer and bearer.get("value") else None
            self._authorization_until = now + CREDENTIALS_REREAD_S
        return self._authorization

    def _http(self) -> aiohttp.ClientSession:
        """The session, made in the loop that sends (a session belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                trust_env=False,  # the proxy is the configuration's (which reads the environment's)
            )
        return self._session

    async def resource(self, api_version: str, kind: str) -> Resource:
        """Discover the resource that serves ``kind`` in ``api_version`` (cached per group/version)."""
        if api_version not in self._discovery:
            group, _, version = api_version.rpartition("/")
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            listing = await self.request("GET", path)
            found: dict[str, Resource] = {}
            subresources: dict[str, set[str]] = {}
            for item in listing.get("resources", []):
                name = str(item.get("name", ""))
                if "/" in name:
                    parent, _, sub = name.partition("/")
                    subresources.setdefault(parent, set()).add(sub)
            for item in listing.get("resources", []):
                name = str(item.get("name", ""))
                if "/" not in name:
                    found[str(item["kind"])] = Resource(
                        group=group,
                        version=version,
                        plural=name,
                        kind=str(item["kind"]),
                        namespaced=bool(item.get("namespaced", True)),
                        subresources=frozenset(subresources.get(name, ())),
                    )
            self._discovery[api_version] = found
        resources = self._discovery[api_version]
        if kind not in resources:
            # Not cached as absent: the CRD may be installed later.
            del self._discovery[api_version]
            raise KubeError(404, "UnknownKind", f"the API has no kind {kind} in {api_version}")
        return resources[kind]

    async def get(
        self, resource: Resource, namespace: str, name: str, subresource: str | None = None
    ) -> dict[str, Any]:
        return await self.request("GET", resource.path(namespace, name, subresource))

    async def list(self, resource: Resource, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        """The objects of ``resource`` in ``namespace`` matching ``label_selector`` (all when empty)."""
        query = {"labelSelector": label_selector} if label_selector else None
        listing = await self.request("GET", resource.path(namespace), query=query)
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            dict(patch),
            content_type="application/merge-patch+json",
        )

    async def post_event(
        self, about: ObjectRef, *, type_: str, reason: str, message: str, now_iso: str, component: str = "infercast"
    ) -> None:
        """A core/v1 Event, as ``kubectl describe`` shows them. Names are unique per call."""
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{about.name[: MAX_NAME_LENGTH - _EVENT_SUFFIX_LENGTH]}.{uuid.uuid4().hex[:16]}",
                "namespace": about.namespace,
            },
            "involvedObject": {
                "apiVersion": about.api_version,
                "kind": about.kind,
                "namespace": about.namespace,
                "name": about.name,
                **({"uid": about.uid} if about.uid else {}),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now_iso,
            "lastTimestamp": now_iso,
            "eventTime": None,
            "count": 1,
        }
        await self.request("POST", EVENTS.path(about.namespace), body)


def _error_from_body(status: int, raw: bytes | str | None) -> KubeError:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return KubeError(status, str(body.get("reason") or "Error"), str(body.get("message") or raw or "")[:500])
