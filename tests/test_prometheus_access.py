"""The cluster admin's rules for Prometheus access: allowed URL patterns, named endpoints, the config file.

See docs/security.md. The rules decide what the operator sends where (controller/clients/tenancy.py);
the tests of what a policy author could make it send before the rules are in test_prometheus_tenancy.py.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.clients.kube import Kube, load_configuration
from controller.clients.prometheus import Credentials
from controller.clients.tenancy import PrometheusAccess, UrlPattern, parse_access
from controller.errors import SpecError
from controller.reconcile.spec import parse_prometheus
from tests.harness.kustomize import OVERLAYS, render

DEFAULTS = PrometheusAccess()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://prometheus-operated.monitoring.svc:9090", True),
        ("https://thanos-querier.monitoring.svc.cluster.local:9091/prometheus", True),
        ("http://prometheus.monitoring.svc", True),
        ("http://prometheus-operated.monitoring:9090", False),  # SERVICE.NAMESPACE may also be an Internet name
        ("http://evil.example/x.svc:9090", False),
        ("http://a.b.c.svc:9090", False),
        ("http://localhost:8080", False),
        ("http://169.254.169.254", False),
        ("ftp://prometheus.monitoring.svc", False),
    ],
)
def test_by_default_a_policy_may_name_in_cluster_services_only(url: str, allowed: bool) -> None:
    assert any(pattern.matches(url) for pattern in DEFAULTS.allowed_urls) is allowed


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("https://thanos.example.com", "https://thanos.example.com", True),
        ("https://thanos.example.com", "https://thanos.example.com:443/", True),
        ("https://thanos.example.com", "https://thanos.example.com:8443", False),
        ("https://thanos.example.com:*", "https://thanos.example.com:8443", True),
        ("https://*.example.com", "https://eu.example.com", True),
        ("https://*.example.com", "https://a.eu.example.com", False),
        ("https://*.example.com", "https://example.com", False),
        ("https://thanos.example.com/tenant-a", "https://thanos.example.com/tenant-a/prometheus", True),
        ("https://thanos.example.com/tenant-a", "https://thanos.example.com/tenant-ab", False),
        ("http://*:*", "http://10.0.0.7:9090", True),
        ("http://*:*", "https://10.0.0.7:9090", False),
        ("http://[::1]:9090", "http://[::1]:9090", True),
    ],
)
def test_url_patterns(pattern: str, url: str, matches: bool) -> None:
    assert UrlPattern.parse(pattern).matches(url) is matches


@pytest.mark.parametrize(
    "raw",
    [
        {"allowedURL": []},
        {"allowedURLs": ["prometheus.monitoring.svc"]},
        {"allowedURLs": ["http://*.svc:port"]},
        {"allowedURLs": ["http://p.svc/#"]},
        {"endpoints": [{"name": "a"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc"}, {"name": "a", "url": "http://b.svc"}]},
        {"endpoints": [{"name": "A", "url": "http://a.svc"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc/#"}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc", "namespaceParameter": "query"}]},
        {"endpoints": [{"name": "a", "url": "https://a.svc", "caFile": "/ca", "insecureSkipVerify": True}]},
        {"endpoints": [{"name": "a", "url": "http://a.svc", "token": "inline"}]},
        {"credentialSecretLabel": "no-value"},
        {"maxConnectionsPerEndpoint": 0},
    ],
)
def test_a_wrong_config_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_access(raw)


def test_an_empty_list_allows_named_endpoints_only() -> None:
    assert parse_access({"allowedURLs": []}).allowed_urls == ()
    assert parse_access({}).allowed_urls == DEFAULTS.allowed_urls


async def test_an_endpoint_resolves_to_the_admins_url_credentials_and_namespace(
    tmp_path: pathlib.Path, kubeconfig: pathlib.Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    access = parse_access(
        {
            "endpoints": [
                {"name": "shared", "url": "https://thanos.monitoring.svc:9092", "bearerTokenFile": str(token)},
                {"name": "tenants", "url": "https://thanos.monitoring.svc:9092", "namespaceParameter": "namespace"},
            ],
            "allowedURLs": [],
        }
    )
    kube = Kube(load_configuration(str(kubeconfig)))
    spec = parse_prometheus({"endpoint": "shared", "timeout": 2})
    resolved, credentials = await access.resolve(kube, "team-a", spec)
    assert (resolved.url, resolved.timeout_s, resolved.params) == ("https://thanos.monitoring.svc:9092", 2.0, ())
    assert credentials.bearer_token == "first"
    token.write_text("rotated\n")
    os.utime(token, ns=(0, time.time_ns() + 10**9))  # a new modification time, as a projected token's rotation
    assert (await access.resolve(kube, "team-a", spec))[1].bearer_token == "rotated", "re-read when it changes"
    resolved, credentials = await access.resolve(kube, "team-b", parse_prometheus({"endpoint": "tenants"}))
    assert resolved.params == (("namespace", "team-b"),) and credentials == Credentials()
    with pytest.raises(SpecError) as caught:
        await access.resolve(kube, "team-a", parse_prometheus({"endpoint": "other"}))
    assert caught.value.reason == "UnknownPrometheusEndpoint" and "shared, tenants" in caught.value.message
    with pytest.raises(SpecError) as caught:
        await access.resolve(kube, "team-a", parse_prometheus({"url": "https://thanos.monitoring.svc:9092"}))
    assert caught.value.reason == "PrometheusURLNotAllowed"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"url": "http://p.monitoring.svc", "endpoint": "shared"},
        {"endpoint": "shared", "bearerTokenSecretRef": {"name": "s", "key": "k"}},
        {"endpoint": "shared", "caSecretRef": {"name": "s", "key": "k"}},
        {"endpoint": "shared", "insecureSkipVerify": True},
    ],
    ids=["neither", "both", "endpoint-with-token", "endpoint-with-ca", "endpoint-insecure"],
)
def test_an_endpoint_brings_its_own_credentials(raw: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_prometheus(raw)
    assert caught.value.reason == "InvalidPrometheus"


def test_the_operator_refuses_to_start_on_a_wrong_config(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "access.yaml"
    config.write_text("allowedURLs: [prometheus.monitoring.svc]\n")
    assert main(["run", "--prometheus-config", str(config)]) == 2


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir()))
def test_every_install_reads_the_documented_defaults(overlay: str) -> None:
    """Each overlay mounts the ConfigMap where the operator's --prometheus-config points, and it says the defaults."""
    docs = render(OVERLAYS / overlay)
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("prometheus-access")
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = pathlib.PurePosixPath(container["args"][container["args"].index("--prometheus-config") + 1])
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == config_map["metadata"]["name"]]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert str(path.parent) == mount["mountPath"] and path.name in config_map["data"]
    assert parse_access(yaml.safe_load(config_map["data"][path.name])) == DEFAULTS
