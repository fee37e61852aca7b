"""Plain reference types that name things in the cluster: what a spec points at and what a client addresses.

The spec parsers produce these, the clients and actuators consume them; keeping them here, with no
behaviour and no imports of either side, lets a client or an actuator depend on a *value* without
depending on the parser that made it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The API group and version of infercast's own kinds (ScalingPolicy, CircuitBreakerPolicy, RoutingPolicy).
GROUP = "infercast.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class TargetRef:
    """An object of the policy's namespace, by API version, kind and name (a spec's ``targetRef``)."""

    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to address it and to name it in an Event."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret in the policy's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class PrometheusSpec:
    """Where and how a policy reads Prometheus: its URL, timeouts, TLS and the Secrets holding credentials.

    As parsed, a spec has either a ``url`` (with optional Secret references) or the name of an
    admin-defined ``endpoint`` (and an empty ``url``). Resolved for a request
    (:mod:`controller.clients.tenancy`), ``url`` is always set, and ``params`` are what the
    endpoint adds to every request (e.g. the policy's namespace for a tenancy proxy).
    """

    url: str
    timeout_s: float = 5.0
    max_staleness_s: float = 60.0
    insecure_skip_verify: bool = False
    bearer_token: SecretKeyRef | None = None
    ca: SecretKeyRef | None = None
    endpoint: str | None = None
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BackendRef:
    """A Gateway API ``backendRef`` identity: a Service by default, or an InferencePool."""

    name: str
    group: str = ""
    kind: str = "Service"
