"""The Kubernetes API as the reconcile step needs it: a few verbs on any resource, by path.

We use the official ``kubernetes`` client for what it is good at (kubeconfig and in-cluster
credentials, TLS, the HTTP pool) but address resources by path, because the operator works on
*any* workload with a ``scale`` subresource (Deployments, StatefulSets, Argo Rollouts,
LeaderWorkerSets...), found by API discovery rather than by a typed class per kind.

The client is synchronous: every call runs in a worker thread (``executor``) so that the
operator's event loop keeps serving 1,000 policies while one call waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from controller.clients.refs import ObjectRef
from controller.errors import InfercastError, InputError

#: Statuses the same request may not meet again: no answer, a conflict, throttling, a server error.
TEMPORARY_STATUSES = frozenset({0, 409, 429, 500, 502, 503, 504})
#: The longest object name the API server takes (a DNS subdomain), Event names included.
MAX_NAME_LENGTH = 253
_EVENT_SUFFIX_LENGTH = 17  # "." and 16 hex digits


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


def load_api_client(kubeconfig: str | None = None, *, max_connections: int | None = None) -> client.ApiClient:
    """Credentials from the pod's service account when in a cluster, else from a kubeconfig.

    ``max_connections`` is the HTTP connection pool: give it the number of threads that call the
    API at once. The client's default (5 per CPU) is smaller than the operator's I/O pool, and a
    request beyond the pool opens a connection it then throws away, a TCP (and TLS) handshake per
    request at scale.
    """
    configuration = client.Configuration()
    if max_connections is not None:
        configuration.connection_pool_maxsize = max_connections
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig or os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
    except (config.ConfigException, OSError) as exc:
        raise KubeconfigError("NoKubeconfig", f"no usable kubeconfig: {exc}") from exc
    return client.ApiClient(configuration)


@dataclass
class Kube:
    """``fence`` is called before every request that writes and raises to refuse it (a
    :class:`KubeError`): an operator replica that is not the leader writes nothing."""

    api: client.ApiClient
    executor: Executor | None = None
    timeout_s: float = 10.0
    fence: Callable[[], None] | None = None
    _discovery: dict[str, dict[str, Resource]] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self._request_sync, method, path, body, content_type, dict(query or {})
        )

    def _request_sync(
        self, method: str, path: str, body: Any, content_type: str, query: dict[str, str]
    ) -> dict[str, Any]:
        if method != "GET" and self.fence is not None:
            self.fence()  # checked here, in the thread that sends, as close to the write as can be
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # The body is plain JSON already: the client's walk over it to serialize its model classes
        # is skipped, which for a policy's status patch cost as much as sending it.
        _, url, headers, _, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=self.timeout_s)
            response.read()
        except ApiException as exc:
            raise _error_from(exc) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # no answer: refused, reset, timed out
            raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from exc
        if response.status >= 400:
            raise _error_from_body(response.status, response.data)
        if not response.data:
            return {}
        data = json.loads(response.data)
        return data if isinstance(data, dict) else {"items": data}

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


def _error_from(exc: ApiException) -> KubeError:
    if exc.status:
        return _error_from_body(int(exc.status), exc.body)
    return KubeError(0, "Unreachable", str(exc.reason))


def _error_from_body(status: int, raw: bytes | str | None) -> KubeError:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return KubeError(status, str(body.get("reason") or "Error"), str(body.get("message") or raw or "")[:500])
