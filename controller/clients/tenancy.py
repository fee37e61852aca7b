"""Which Prometheus a policy may read, with which credentials: the cluster admin's rules for every namespace.

Policies are written by each namespace's users; the operator runs with cluster-wide rights and
sends whatever credentials it resolves to whatever URL a spec names. So the admin, not the policy
author, decides where requests may go (``infercast run --prometheus-config FILE``, usually a
mounted ConfigMap; :func:`load_access`):

* **endpoints**: named Prometheus servers with the admin's URL, credentials (files mounted into
  the operator's pod, re-read when they change, as Prometheus reads ``bearer_token_file``) and
  TLS; a policy names one (``prometheus.endpoint``) and never sees its credentials. An endpoint
  may pass the policy's namespace as a query parameter (``namespaceParameter``) to a tenancy
  proxy such as prom-label-proxy, so that a namespace reads its own series only;
* **allowedURLs**: the patterns a policy's own ``prometheus.url`` must match (by default the
  in-cluster Service names, ``SERVICE.NAMESPACE.svc``); an empty list allows named endpoints only;
* **credentialSecretLabel**: the label a Secret must carry before a policy's
  ``bearerTokenSecretRef``/``caSecretRef`` may send it (:mod:`controller.clients.credentials`).

A refusal is a :class:`SpecError` whose message names the rule, never a credential. docs/security.md
states the model. This module must not talk to Prometheus; it decides what the pool is given.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import yaml

from controller.clients.credentials import DEFAULT_SECRET_LABEL, read_credentials
from controller.clients.kube import Kube
from controller.clients.prometheus import DEFAULT_CONNECTIONS, Credentials
from controller.clients.refs import PrometheusSpec
from controller.errors import SpecError

#: What a policy's own URL may be without the admin saying more: a Service of the cluster, by its DNS name.
DEFAULT_ALLOWED_URLS = (
    "http://*.*.svc:*",
    "https://*.*.svc:*",
    "http://*.*.svc.cluster.local:*",
    "https://*.*.svc.cluster.local:*",
)
#: Query parameters the pool sets itself; an endpoint cannot claim them for the namespace.
_RESERVED_PARAMETERS = frozenset({"query", "start", "end", "step", "time", "timeout"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class UrlPattern:
    """``scheme://host[:port][/path]``: ``*`` as the whole host matches any host, as a label one DNS label;
    port ``*`` any port, no port the scheme's default only; the path is a prefix (whole segments)."""

    text: str
    scheme: str
    host: tuple[str, ...] | None
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPattern:
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in _DEFAULT_PORTS:
            raise ValueError(f"allowed URL {text!r} must start with http:// or https://")
        authority, slash, path = rest.partition("/")
        host, port_text = _split_port(authority)
        if not host or any(c in text for c in "?#@ "):
            raise ValueError(f"allowed URL {text!r} needs a host and no query, fragment, user or space")
        if port_text == "*":
            port = None
        elif port_text.isdigit():
            port = int(port_text)
        elif not port_text:
            port = _DEFAULT_PORTS[scheme]
        else:
            raise ValueError(f"allowed URL {text!r} has a port that is neither a number nor *")
        labels = None if host == "*" else tuple(host.lower().split("."))
        return cls(text, scheme, labels, port, ("/" + path if slash else "").rstrip("/"))

    def matches(self, url: str) -> bool:
        parts = urlsplit(url)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        host = (parts.hostname or "").split(".")
        path = parts.path.rstrip("/")
        return (
            parts.scheme == self.scheme
            and bool(parts.hostname)
            and (self.host is None or _labels_match(self.host, tuple(host)))
            and (self.port is None or port == self.port)
            and (not self.path or path == self.path or path.startswith(self.path + "/"))
        )


def _split_port(authority: str) -> tuple[str, str]:
    if authority.startswith("["):  # an IPv6 literal
        host, _, rest = authority[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = authority.partition(":")
    return host, port


def _labels_match(pattern: tuple[str, ...], host: tuple[str, ...]) -> bool:
    return len(pattern) == len(host) and all(p in ("*", h) for p, h in zip(pattern, host, strict=True))


@dataclass
class _FileCache:
    """A small text file (a projected token, a CA bundle) re-read when its modification time changes."""

    path: str
    _seen: tuple[int, str] | None = None

    def read(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if self._seen is None or self._seen[0] != mtime:
                self._seen = (mtime, pathlib.Path(self.path).read_text())
        except OSError as exc:
            raise SpecError(
                "EndpointCredentialsUnreadable", f"the operator cannot read {self.path}: {exc.strerror}"
            ) from None
        return self._seen[1]


@dataclass(frozen=True)
class Endpoint:
    """A Prometheus the admin defined: policies use it by ``name``, never seeing its credentials."""

    name: str
    url: str
    bearer_token_file: _FileCache | None = None
    ca_file: _FileCache | None = None
    insecure_skip_verify: bool = False
    namespace_parameter: str | None = None

    def credentials(self) -> Credentials:
        token = self.bearer_token_file.read().strip() if self.bearer_token_file else None
        return Credentials(bearer_token=token or None, ca_pem=self.ca_file.read() if self.ca_file else None)


@dataclass(frozen=True)
class PrometheusAccess:
    """The admin's rules: named endpoints, the URLs a policy may name itself, the Secret opt-in label."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    allowed_urls: tuple[UrlPattern, ...] = tuple(UrlPattern.parse(p) for p in DEFAULT_ALLOWED_URLS)
    secret_label: tuple[str, str] = DEFAULT_SECRET_LABEL
    max_connections_per_endpoint: int = DEFAULT_CONNECTIONS

    async def resolve(self, kube: Kube, namespace: str, spec: PrometheusSpec) -> tuple[PrometheusSpec, Credentials]:
        """Where the pool sends ``spec``'s queries and with what; a :class:`SpecError` when the rules refuse it."""
        if spec.endpoint is not None:
            endpoint = self.endpoints.get(spec.endpoint)
            if endpoint is None:
                known = ", ".join(sorted(self.endpoints)) or "none"
                raise SpecError(
                    "UnknownPrometheusEndpoint",
                    f"no Prometheus endpoint {spec.endpoint!r}; the cluster admin defines: {known}",
                )
            params = ((endpoint.namespace_parameter, namespace),) if endpoint.namespace_parameter else ()
            resolved = replace(
                spec, url=endpoint.url, insecure_skip_verify=endpoint.insecure_skip_verify, params=params
            )
            return resolved, endpoint.credentials()
        if not any(pattern.matches(spec.url) for pattern in self.allowed_urls):
            allowed = ", ".join(p.text for p in self.allowed_urls) or "none (name an endpoint)"
            endpoints = ", ".join(sorted(self.endpoints)) or "none"
            raise SpecError(
                "PrometheusURLNotAllowed",
                f"prometheus.url {spec.url} is not one the cluster admin allows ({allowed}); endpoints: {endpoints}",
            )
        return spec, await read_credentials(kube, namespace, spec, self.secret_label)


def load_access(path: str | os.PathLike[str]) -> PrometheusAccess:
    """The admin's rules from a YAML file; a ``ValueError`` that names the wrong field otherwise."""
    raw = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    return parse_access(raw)


def parse_access(raw: Mapping[str, Any]) -> PrometheusAccess:
    unknown = set(raw) - {"endpoints", "allowedURLs", "credentialSecretLabel", "maxConnectionsPerEndpoint"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    endpoints = [_endpoint(item) for item in raw.get("endpoints") or []]
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"endpoint names must be unique, got {names}")
    urls = raw.get("allowedURLs", list(DEFAULT_ALLOWED_URLS))
    label_key, sep, label_value = str(raw.get("credentialSecretLabel", "=".join(DEFAULT_SECRET_LABEL))).partition("=")
    if not sep or not label_key:
        raise ValueError("credentialSecretLabel must be KEY=VALUE")
    connections = int(raw.get("maxConnectionsPerEndpoint", DEFAULT_CONNECTIONS))
    if connections < 1:
        raise ValueError("maxConnectionsPerEndpoint must be at least 1")
    return PrometheusAccess(
        endpoints={e.name: e for e in endpoints},
        allowed_urls=tuple(UrlPattern.parse(str(u)) for u in urls or ()),
        secret_label=(label_key, label_value),
        max_connections_per_endpoint=connections,
    )


def _endpoint(raw: Any) -> Endpoint:
    if not isinstance(raw, dict) or not raw.get("name") or not raw.get("url"):
        raise ValueError(f"an endpoint needs a name and a url, got {raw!r}")
    if not _DNS_LABEL.fullmatch(str(raw["name"])):
        raise ValueError(f"endpoint name {raw['name']!r} must be a DNS label (as prometheus.endpoint in the CRDs)")
    unknown = set(raw) - {"name", "url", "bearerTokenFile", "caFile", "insecureSkipVerify", "namespaceParameter"}
    if unknown:
        raise ValueError(f"endpoint {raw['name']}: unknown keys {sorted(unknown)}")
    url = str(raw["url"]).rstrip("/")
    try:
        check_url(url)
    except ValueError as exc:
        raise ValueError(f"endpoint {raw['name']}: {exc}") from None
    parameter = raw.get("namespaceParameter")
    if parameter is not None and (not str(parameter) or str(parameter) in _RESERVED_PARAMETERS):
        raise ValueError(f"endpoint {raw['name']}: namespaceParameter {parameter!r} is empty or the pool's own")
    if raw.get("insecureSkipVerify") and raw.get("caFile"):
        raise ValueError(f"endpoint {raw['name']}: caFile and insecureSkipVerify exclude each other")
    return Endpoint(
        name=str(raw["name"]),
        url=url,
        bearer_token_file=_FileCache(str(raw["bearerTokenFile"])) if raw.get("bearerTokenFile") else None,
        ca_file=_FileCache(str(raw["caFile"])) if raw.get("caFile") else None,
        insecure_skip_verify=bool(raw.get("insecureSkipVerify", False)),
        namespace_parameter=str(parameter) if parameter is not None else None,
    )


def check_url(url: str) -> None:
    """A base URL of the Prometheus API: http(s), a host, a path at most; a ``ValueError`` says what else it has.

    A ``?`` or ``#`` would cut the API path off the request (the author would choose the path the
    credentials go to), and user information would be sent as credentials of its own.
    """
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{url!r} must start with http:// or https://")
    if any(c in url for c in "?#@") or any(c.isspace() for c in url):
        raise ValueError(f"{url!r} must not contain a query (?), a fragment (#), user information (@) or spaces")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{url!r} has a port that is not a number") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
