"""Every kustomize overlay in deploy/overlays/ renders, with `kubectl kustomize`, to objects a cluster accepts.

Built-in kinds are validated with kubernetes-validate (strict: unknown fields fail) for the oldest and
the newest Kubernetes release we claim; the Prometheus Operator's kinds, which kubernetes-validate
does not know, with the JSON schemas of tests/harness/monitoring.py. Then what each install promises:
which namespaces the operator watches (read back with the operator's own argument parser), where
its objects go, and which rights it holds. Knobs a user changes (namespace, image, watched
namespaces) are exercised through overlays of our overlays, written as a user would.
"""

from __future__ import annotations

import os
import pathlib
import re
import textwrap

import jsonschema
import kubernetes_validate
import pytest

from controller.cli import build_parser
from tests.harness.kustomize import OVERLAYS, REPO, Object, render
from tests.harness.monitoring import PROMETHEUS_RULE_SUBSET, SERVICE_MONITOR_SUBSET
from tests.test_manifests import KUBERNETES_VERSIONS, documents

OVERLAY_NAMES = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
MONITORING_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SUBSET, "PrometheusRule": PROMETHEUS_RULE_SUBSET}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
# Resources only a ClusterRole can grant; the namespaced install does without them (see its rbac.yaml).
CLUSTER_RESOURCES = {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}

Grant = tuple[str, str, str]


def overlay_of(tmp_path: pathlib.Path, base: str, body: str) -> list[Object]:
    """Render a user's overlay over ``deploy/overlays/<base>`` with the extra kustomization ``body``."""
    relative = os.path.relpath(OVERLAYS / base, tmp_path)
    kustomization = f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {relative}\n"
    (tmp_path / "kustomization.yaml").write_text(kustomization + textwrap.dedent(body))
    return render(tmp_path)


def one(kind: str, objects: list[Object]) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def operator_args(objects: list[Object]) -> list[str]:
    """The operator's arguments as the kubelet passes them: ``$(NAME)`` expanded from the container's env.

    Only the env the manifests use is resolved: plain values and the pod's namespace (downward API).
    """
    deployment = one("Deployment", objects)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, var
            env[var["name"]] = deployment["metadata"]["namespace"]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]


def watched_namespaces(objects: list[Object]) -> list[str] | None:
    """The namespaces ``infercast run`` watches with these arguments; None for all of them."""
    namespaces = build_parser().parse_args(operator_args(objects)).namespace
    return None if namespaces is None else list(namespaces)


def grants(objects: list[Object], role_kind: str) -> set[Grant]:
    return {
        (group, resource, verb)
        for role in objects
        if role["kind"] == role_kind
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture(scope="module", params=OVERLAY_NAMES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Object]]:
    return request.param, render(OVERLAYS / request.param)


def test_the_common_installs_have_overlays() -> None:
    assert OVERLAY_NAMES == ["cluster-wide", "monitoring", "namespaced"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid(rendered: tuple[str, list[Object]], version: str) -> None:
    name, objects = rendered
    assert objects, name
    for obj in objects:
        if obj["kind"] in MONITORING_SCHEMAS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            jsonschema.validate(obj, MONITORING_SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_monitoring_schemas_reject_a_misspelt_field() -> None:
    """The control for the test above, for the kinds kubernetes-validate does not know."""
    rule = one("PrometheusRule", render(OVERLAYS / "monitoring"))
    rule["spec"]["groups"][0]["rules"][0]["exprr"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, PROMETHEUS_RULE_SUBSET)


def test_no_overlay_carries_the_crds(rendered: tuple[str, list[Object]]) -> None:
    # Deleting an install must never delete the CRDs, and with them every policy.
    assert not [o for o in rendered[1] if o["kind"] == "CustomResourceDefinition"]


def test_the_cluster_wide_install_is_the_base_watching_every_namespace() -> None:
    objects = render(OVERLAYS / "cluster-wide")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (o["kind"], o["metadata"]["name"]) for _, o in documents("deploy/base/*.yaml")
    )
    assert watched_namespaces(objects) is None
    # Namespaced grants only where the operator runs: its Lease, and the Secrets of its own namespace.
    namespace = one("ServiceAccount", objects)["metadata"]["namespace"]
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] in ("Role", "RoleBinding")} == {namespace}


def test_the_namespaced_install_holds_only_a_role_in_the_namespace_it_watches() -> None:
    objects = render(OVERLAYS / "namespaced")
    namespace = one("ServiceAccount", objects)["metadata"]["namespace"]
    assert not [o for o in objects if o["kind"] in CLUSTER_SCOPED]
    assert {o["metadata"]["namespace"] for o in objects} == {namespace}
    assert watched_namespaces(objects) == [namespace]
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "infercast", "namespace": namespace}]
    # The same rights as the cluster-wide install, less what only a ClusterRole can grant.
    cluster_wide = render(OVERLAYS / "cluster-wide")
    expected = {g for g in grants(cluster_wide, "ClusterRole") | grants(cluster_wide, "Role")}
    assert grants(objects, "Role") == {g for g in expected if g[1] not in CLUSTER_RESOURCES}


def test_a_namespaced_install_elsewhere_follows_its_namespace(tmp_path: pathlib.Path) -> None:
    objects = overlay_of(tmp_path, "namespaced", "namespace: team-a\n")
    assert {o["metadata"]["namespace"] for o in objects} == {"team-a"}
    assert watched_namespaces(objects) == ["team-a"]
    assert {b["subjects"][0]["namespace"] for b in objects if b["kind"] == "RoleBinding"} == {"team-a"}


def test_namespace_and_image_are_overridable(tmp_path: pathlib.Path) -> None:
    objects = overlay_of(
        tmp_path,
        "cluster-wide",
        """
        namespace: ops
        images:
          - name: ghcr.io/infercast/infercast
            newName: registry.example.com/mirror/infercast
            newTag: 0.1.1
        """,
    )
    assert one("Namespace", objects)["metadata"]["name"] == "ops"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] not in CLUSTER_SCOPED} == {"ops"}
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "infercast", "namespace": "ops"}]
    (container,) = one("Deployment", objects)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/mirror/infercast:0.1.1"


def test_watched_namespaces_are_overridable(tmp_path: pathlib.Path) -> None:
    """The patch docs/install.md gives for a cluster-wide install that watches some namespaces only."""
    objects = overlay_of(
        tmp_path,
        "cluster-wide",
        """
        patches:
          - target: {kind: Deployment, name: infercast-operator}
            patch: |
              - {op: add, path: /spec/template/spec/containers/0/args/-, value: --namespace=inference}
              - {op: add, path: /spec/template/spec/containers/0/args/-, value: --namespace=batch}
        """,
    )
    assert watched_namespaces(objects) == ["inference", "batch"]


def test_the_monitoring_install_scrapes_and_alerts_on_the_operator() -> None:
    objects = render(OVERLAYS / "monitoring")
    assert {o["kind"] for o in objects} >= {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    namespace = one("ServiceAccount", objects)["metadata"]["namespace"]
    monitor, service = one("ServiceMonitor", objects), one("Service", objects)
    assert monitor["metadata"]["namespace"] == namespace
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert one("PrometheusRule", objects)["metadata"]["namespace"] == namespace
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == len(list((REPO / "dashboards").glob("*.json")))
    assert all(o["metadata"]["labels"]["grafana_dashboard"] == "1" for o in dashboards)


def test_monitoring_follows_a_namespaced_install(tmp_path: pathlib.Path) -> None:
    relative = os.path.relpath(REPO / "deploy" / "monitoring", tmp_path)
    objects = overlay_of(tmp_path, "namespaced", f"components:\n  - {relative}\n")
    namespace = one("ServiceAccount", objects)["metadata"]["namespace"]
    assert {o["metadata"]["namespace"] for o in objects} == {namespace}
    assert one("ServiceMonitor", objects)["spec"]["namespaceSelector"]["matchNames"] == [namespace]


def install_doc_overlays() -> list[str]:
    """The kustomizations docs/install.md shows, as written there (they name this repository ``../infercast``)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "install.md").read_text(), re.DOTALL)
    return [block for block in blocks if "../infercast/" in block]


@pytest.mark.parametrize("body", install_doc_overlays())
def test_the_overlays_docs_install_shows_render_to_valid_objects(body: str, tmp_path: pathlib.Path) -> None:
    relative = os.path.relpath(REPO, tmp_path)
    header = (
        "" if "kind: Kustomization" in body else "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    )
    (tmp_path / "kustomization.yaml").write_text(header + body.replace("../infercast/", f"{relative}/"))
    objects = render(tmp_path)
    assert one("Deployment", objects)
    for obj in objects:
        if obj["kind"] in MONITORING_SCHEMAS:
            jsonschema.validate(obj, MONITORING_SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def test_docs_install_shows_the_overlays() -> None:
    assert len(install_doc_overlays()) == 3
