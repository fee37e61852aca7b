"""Offline checks of everything a user applies: the CRDs, deploy/base/, examples/ and the image.

The kustomize overlays built on deploy/base/ are rendered and validated in tests/test_kustomize.py.

Built-in kinds are validated with kubernetes-validate's bundled OpenAPI schemas. Our own
policy objects (ScalingPolicy, CircuitBreakerPolicy, RoutingPolicy) are validated with jsonschema
against their CRD's ``openAPIV3Schema``, translated the way the API server reads it
(tests/harness/openapi.py): ``nullable``, boolean ``exclusiveMinimum``, list-type maps, and
unknown fields rejected as ``kubectl``'s strict field validation does.
The CEL rules (``x-kubernetes-validations``) are evaluated in tests/test_crd_rules.py (and by the
emulated API server); ``controller/scaling/spec.py`` checks the same cross-field rules at run time.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from controller.traffic.spec import parse_circuit_breaker_policy, parse_routing_policy
from tests.harness.openapi import JUNCTORS, KubernetesValidator, to_json_schema
from tests.harness.traffic import DESTINATION_RULES, HTTP_ROUTES, VIRTUAL_SERVICES
from tests.harness.traffic import schema_errors as schema_errors_upstream

REPO = Path(__file__).resolve().parent.parent
# The oldest Kubernetes release we claim (CEL validation rules are GA since 1.29), and the newest one bundled.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())

Document = dict[str, Any]
Schema = dict[str, Any]


def documents(*patterns: str) -> list[tuple[str, Document]]:
    """Every Kubernetes object in the YAML files matching the glob patterns, with a readable id.

    kustomize's own files (``kustomization.yaml``) are not objects and are left out.
    """
    found = []
    for pattern in patterns:
        for path in sorted(p for p in REPO.glob(pattern) if p.name != "kustomization.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    found.append((f"{path.relative_to(REPO)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def only(kind: str, docs: list[tuple[str, Document]]) -> Document:
    matches = [doc for _, doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


# Every policy kind: its CRD, its field reference, and the condition types the reference must list.
CRD_FILES = {
    "ScalingPolicy": "crds/scalingpolicies.yaml",
    "CircuitBreakerPolicy": "crds/circuitbreakerpolicies.yaml",
    "RoutingPolicy": "crds/routingpolicies.yaml",
}
REFERENCES = {
    "ScalingPolicy": "docs/scalingpolicy.md",
    "CircuitBreakerPolicy": "docs/circuitbreakerpolicy.md",
    "RoutingPolicy": "docs/routingpolicy.md",
}
CONDITIONS = {
    "ScalingPolicy": ("Ready", "MetricsAvailable", "ScalingLimited", "Conflict"),
    "CircuitBreakerPolicy": ("Ready", "MetricsAvailable", "Conflict"),
    "RoutingPolicy": ("Ready", "MetricsAvailable", "Conflict"),
}
KINDS = list(CRD_FILES)


@cache
def crd(kind: str = "ScalingPolicy") -> Document:
    return only("CustomResourceDefinition", documents(CRD_FILES[kind]))


def openapi_schema(kind: str = "ScalingPolicy") -> Schema:
    version = only_served_version(kind)
    return copy.deepcopy(version["schema"]["openAPIV3Schema"])


def only_served_version(kind: str = "ScalingPolicy") -> Document:
    versions = crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    return dict(versions[0])


def policy_validator(kind: str = "ScalingPolicy") -> Any:
    return KubernetesValidator(to_json_schema(openapi_schema(kind)))


def schema_errors(obj: Document) -> list[Any]:
    return list(policy_validator(obj["kind"]).iter_errors(obj))


def walk(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every field of the schema with its documented path, e.g. ``spec.metrics[].target.value``."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def fields(kind: str = "ScalingPolicy") -> dict[str, Schema]:
    return {
        path: node
        for path, node in walk(openapi_schema(kind), "")
        if path.startswith(("spec.", "status.")) and not path.endswith("[]")
    }


# --- Kubernetes' own schemas ----------------------------------------------------------------------------------

BUILT_IN_OBJECTS = documents("crds/*.yaml", "deploy/base/*.yaml", "examples/vllm-deployment.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("name", "obj"), BUILT_IN_OBJECTS, ids=[name for name, _ in BUILT_IN_OBJECTS])
def test_manifest_is_valid_for_kubernetes(name: str, obj: Document, version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_kubernetes_validate_rejects_a_misspelt_field() -> None:
    """The control for the test above: strict mode really sees unknown fields in our manifests."""
    deployment = copy.deepcopy(only("Deployment", documents("deploy/base/*.yaml")))
    deployment["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- The CRD itself -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("ScalingPolicy", "scalingpolicies", "sp"),
        ("CircuitBreakerPolicy", "circuitbreakerpolicies", "cbp"),
        ("RoutingPolicy", "routingpolicies", "rp"),
    ],
)
def test_crd_identity(kind: str, plural: str, short: str) -> None:
    spec = crd(kind)["spec"]
    assert crd(kind)["metadata"]["name"] == f"{plural}.infercast.io"
    assert (spec["group"], spec["scope"]) == ("infercast.io", "Namespaced")
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short],
        "categories": ["infercast"],
    }
    version = only_served_version(kind)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    # status only: a policy must not look scalable to an HPA.
    assert version["subresources"] == {"status": {}}


def _structural_violations(node: Schema, path: str, in_junctor: bool) -> Iterator[str]:
    if in_junctor:
        for key in ("type", "default", "description", "nullable", "additionalProperties"):
            if key in node:
                yield f"{path}: {key} is not allowed inside oneOf/anyOf/allOf/not"
        if any(key.startswith("x-kubernetes-") for key in node):
            yield f"{path}: x-kubernetes-* is not allowed inside oneOf/anyOf/allOf/not"
    elif "type" not in node and not node.get("x-kubernetes-int-or-string"):
        yield f"{path}: no type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties exclude each other"
    for bound in ("Minimum", "Maximum"):
        flag = node.get(f"exclusive{bound}")
        if flag is not None and (not isinstance(flag, bool) or bound.lower() not in node):
            yield f"{path}: exclusive{bound} must be a boolean next to {bound.lower()}"
    if node.get("x-kubernetes-list-type") == "map":
        item = node["items"]
        if not node.get("x-kubernetes-list-map-keys"):
            yield f"{path}: a list of type map needs x-kubernetes-list-map-keys"
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []) and "default" not in item["properties"].get(key, {}):
                yield f"{path}: list-map key {key} must be required or defaulted"
    for name, child in node.get("properties", {}).items():
        yield from _structural_violations(child, f"{path}.{name}", in_junctor)
    if "items" in node:
        yield from _structural_violations(node["items"], f"{path}[]", in_junctor)
    if "not" in node:
        yield from _structural_violations(node["not"], f"{path}(not)", True)
    for key in JUNCTORS:
        for i, child in enumerate(node.get(key, [])):
            yield from _structural_violations(child, f"{path}({key}[{i}])", True)


@pytest.mark.parametrize("kind", KINDS)
def test_crd_schema_is_structural(kind: str) -> None:
    """What the API server demands of a CRD schema beyond kubernetes-validate's shape check."""
    assert list(_structural_violations(openapi_schema(kind), "", in_junctor=False)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_default_is_valid_and_reachable(kind: str) -> None:
    """A default must pass its own schema, and must not sit under an optional object that has none.

    The API server applies a field's default only inside an object that exists, so a default under
    an optional, undefaulted object would silently never apply to policies that omit the object.
    """
    nodes = dict(walk(openapi_schema(kind), ""))
    problems = []
    for path, node in nodes.items():
        if "default" not in node:
            continue
        errors = KubernetesValidator(to_json_schema(node)).iter_errors(node["default"])
        problems += [f"{path}: default {node['default']!r}: {e.message}" for e in errors]
        # Entries of a list exist only when written, so only the objects above the first list matter.
        ancestor = path.split("[]")[0].rpartition(".")[0] if "[]" in path else path.rpartition(".")[0]
        while ancestor:
            parent, _, name = ancestor.rpartition(".")
            if "default" not in nodes[ancestor] and name not in nodes[parent].get("required", []):
                problems.append(f"{path}: {ancestor} is optional and has no default")
            ancestor = parent
    assert problems == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_spec_field_is_typed_and_bounded(kind: str) -> None:
    unbounded = []
    for path, node in fields(kind).items():
        if not path.startswith("spec"):
            continue
        node_type = node.get("type")
        if node_type == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(f"{path}: string without maxLength or enum")
        if node_type == "array" and "maxItems" not in node:
            unbounded.append(f"{path}: array without maxItems")
        if node_type in ("integer", "number") and not {"minimum", "maximum"} <= node.keys():
            unbounded.append(f"{path}: {node_type} without minimum and maximum")
    assert unbounded == []


def _field_at(json_path: str, kind: str) -> Schema:
    """The schema node a printer column's JSONPath reads; a filter such as ``[?(@.type=="Ready")]`` picks items."""
    node = openapi_schema(kind)
    for step in re.sub(r"\[[^\]]*\]", "[]", json_path).lstrip(".").split("."):
        node = node["properties"][step.removesuffix("[]")]
        if step.endswith("[]"):
            node = node["items"]
    return node


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ScalingPolicy", ["Target", "Mode", "Current", "Desired", "Reason", "Age"]),
        ("CircuitBreakerPolicy", ["Target", "Mode", "Flagged", "Reason", "Age"]),
        ("RoutingPolicy", ["Target", "Mode", "Strategy", "Weights", "Reason", "Age"]),
    ],
)
def test_printer_columns_read_existing_fields_of_their_type(kind: str, expected: list[str]) -> None:
    columns = only_served_version(kind)["additionalPrinterColumns"]
    default_columns = [c["name"] for c in columns if c.get("priority", 0) == 0]
    assert default_columns == expected
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
        else:
            assert _field_at(column["jsonPath"], kind)["type"] == column["type"], column["name"]


# --- ScalingPolicy objects against the CRD schema -------------------------------------------------------------

EXAMPLE_POLICIES = [(name, doc) for name, doc in documents("examples/*.yaml") if doc["kind"] in CRD_FILES]


@pytest.mark.parametrize("kind", KINDS)
def test_there_are_example_policies(kind: str) -> None:
    assert [doc for _, doc in EXAMPLE_POLICIES if doc["kind"] == kind]


@pytest.mark.parametrize(("name", "policy"), EXAMPLE_POLICIES, ids=[name for name, _ in EXAMPLE_POLICIES])
def test_example_policy_is_valid(name: str, policy: Document) -> None:
    kind = policy["kind"]
    assert policy["apiVersion"] == f"{crd(kind)['spec']['group']}/{only_served_version(kind)['name']}"
    assert [e.message for e in schema_errors(policy)] == []


def test_example_policy_targets_the_example_deployment() -> None:
    policy = only("ScalingPolicy", documents("examples/vllm-scalingpolicy.yaml"))
    deployment = only("Deployment", documents("examples/vllm-deployment.yaml"))
    ref = policy["spec"]["targetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    served = {arg.split("=", 1)[1] for arg in server["args"] if arg.startswith("--served-model-name=")}
    assert {m["modelName"] for m in policy["spec"]["metrics"] if "modelName" in m} == served


def test_example_deployment_runs_vllm_on_a_gpu() -> None:
    deployment = only("Deployment", documents("examples/vllm-deployment.yaml"))
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["image"].startswith("vllm/vllm-openai:")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    # The policy owns the count: a replicas field here would undo its decisions on every apply.
    assert "replicas" not in deployment["spec"]


UPSTREAM_SCHEMAS = {
    "DestinationRule": DESTINATION_RULES,
    "VirtualService": VIRTUAL_SERVICES,
    "HTTPRoute": HTTP_ROUTES,
}
TRAFFIC_EXAMPLES = [(name, doc) for name, doc in documents("examples/*.yaml") if doc["kind"] in UPSTREAM_SCHEMAS]


@pytest.mark.parametrize(("name", "obj"), TRAFFIC_EXAMPLES, ids=[name for name, _ in TRAFFIC_EXAMPLES])
def test_example_traffic_object_is_valid_upstream(name: str, obj: Document) -> None:
    assert schema_errors_upstream(UPSTREAM_SCHEMAS[obj["kind"]], obj) == []


@pytest.mark.parametrize(
    ("name", "policy"),
    [(n, d) for n, d in EXAMPLE_POLICIES if d["kind"] != "ScalingPolicy"],
    ids=[n for n, d in EXAMPLE_POLICIES if d["kind"] != "ScalingPolicy"],
)
def test_example_traffic_policy_parses_and_targets_an_example(name: str, policy: Document) -> None:
    parse = parse_circuit_breaker_policy if policy["kind"] == "CircuitBreakerPolicy" else parse_routing_policy
    spec = parse(policy["spec"])
    targets = {(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for _, d in TRAFFIC_EXAMPLES}
    assert (spec.target.kind, spec.target.name, policy["metadata"]["namespace"]) in targets


def minimal_policy() -> Document:
    return {
        "apiVersion": "infercast.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
            "maxReplicas": 4,
            "prometheus": {"url": "http://prometheus:9090"},
            "metrics": [
                {"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 4}}
            ],
        },
    }


DELETE = object()
Changes = dict[str, Any]


def edited_policy(changes: Changes) -> Document:
    """The minimal policy with spec changes applied: ``{"metrics.0.query": "up"}`` sets, ``DELETE`` removes."""
    policy = minimal_policy()
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = policy["spec"]
        for step in parents:
            node = node[int(step)] if step.isdigit() else node.setdefault(step, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return policy


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "target": {"type": "Value", "value": 1}, **fields}


def scaling_rule(**fields: Any) -> dict[str, Any]:
    return {"type": "Pods", "value": 1, "periodSeconds": 15, **fields}


ACCEPTED: dict[str, Changes] = {
    "the minimal policy": {},
    "a raw query": {"metrics": [metric(query='sum(vllm:num_requests_waiting{namespace="a"})')]},
    "a preset with model and selector": {
        "metrics": [
            metric(
                preset="vllm-kv-cache-usage",
                modelName="meta-llama/Llama-3.1-8B-Instruct",
                labelSelector='namespace="prod", pod=~"vllm-.*",app!="canary"',
            )
        ]
    },
    "the lowest minReplicas": {"minReplicas": 1},
    "fractional target and timeout": {"metrics.0.target.value": 0.75, "prometheus.timeout": 0.5},
    "an admin's endpoint": {"prometheus": {"endpoint": "cluster", "timeout": 2}},
    "a url with a path": {"prometheus.url": "https://thanos.monitoring.svc:9091/prometheus"},
    "every option": {
        "mode": "Recommend",
        "interval": 3600,
        "prometheus": {
            "url": "https://prometheus.example:9091",
            "timeout": 60,
            "maxStaleness": 5,
            "bearerTokenSecretRef": {"name": "prom", "key": "token"},
            "caSecretRef": {"name": "prom-ca", "key": "ca.crt"},
        },
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 3600,
                "selectPolicy": "Disabled",
                "policies": [scaling_rule(periodSeconds=1800)],
            },
            "scaleDown": {"selectPolicy": "Min"},
        },
        "fallback": {"replicas": 2, "onMetricsUnavailable": "Fallback"},
    },
}


@pytest.mark.parametrize("changes", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_schema_accepts(changes: Changes) -> None:
    assert [e.message for e in schema_errors(edited_policy(changes))] == []


# what is wrong: (the changes, where the schema must report it)
REJECTED: dict[str, tuple[Changes, str]] = {
    "mode Sometimes": ({"mode": "Sometimes"}, "spec.mode"),
    "maxReplicas 0": ({"maxReplicas": 0}, "spec.maxReplicas"),
    "maxReplicas above 10000": ({"maxReplicas": 10001}, "spec.maxReplicas"),
    "no maxReplicas": ({"maxReplicas": DELETE}, "spec"),
    "minReplicas 0 (no scale-to-zero)": ({"minReplicas": 0}, "spec.minReplicas"),
    "fractional minReplicas": ({"minReplicas": 1.5}, "spec.minReplicas"),
    "interval 1": ({"interval": 1}, "spec.interval"),
    "interval above an hour": ({"interval": 3601}, "spec.interval"),
    "a misspelt field": ({"minReplica": 1}, "spec"),
    "targetRef without name": ({"targetRef.name": DELETE}, "spec.targetRef"),
    "targetRef name not a DNS name": ({"targetRef.name": "Vllm_Llama"}, "spec.targetRef.name"),
    "no prometheus": ({"prometheus": DELETE}, "spec"),
    "prometheus url without scheme": ({"prometheus.url": "prometheus:9090"}, "spec.prometheus.url"),
    "prometheus url not http": ({"prometheus.url": "ftp://prometheus:9090"}, "spec.prometheus.url"),
    "prometheus url with a fragment": ({"prometheus.url": "http://p.monitoring.svc:9090/#"}, "spec.prometheus.url"),
    "prometheus url with a query": ({"prometheus.url": "http://p.monitoring.svc:9090/?a=b"}, "spec.prometheus.url"),
    "prometheus url with a user": ({"prometheus.url": "http://u:p@p.monitoring.svc:9090"}, "spec.prometheus.url"),
    "an endpoint name with capitals": ({"prometheus": {"endpoint": "Cluster"}}, "spec.prometheus.endpoint"),
    "timeout below 0.5 s": ({"prometheus.timeout": 0.1}, "spec.prometheus.timeout"),
    "maxStaleness below 5 s": ({"prometheus.maxStaleness": 4}, "spec.prometheus.maxStaleness"),
    "secret ref without key": ({"prometheus.caSecretRef": {"name": "ca"}}, "spec.prometheus.caSecretRef"),
    "no metrics": ({"metrics": []}, "spec.metrics"),
    "eleven metrics": ({"metrics": [metric(name=f"m{i}", preset="tgi-queue-size") for i in range(11)]}, "spec.metrics"),
    "two metrics with one name": ({"metrics": [metric(preset="tgi-queue-size"), metric(query="up")]}, "spec.metrics"),
    "both preset and query": ({"metrics": [metric(preset="tgi-queue-size", query="up")]}, "spec.metrics.0"),
    "neither preset nor query": ({"metrics": [metric()]}, "spec.metrics.0"),
    "modelName with a query": ({"metrics": [metric(query="up", modelName="m")]}, "spec.metrics.0"),
    "labelSelector with a query": ({"metrics": [metric(query="up", labelSelector='a="b"')]}, "spec.metrics.0"),
    "an unknown preset": ({"metrics.0.preset": "vllm-magic"}, "spec.metrics.0.preset"),
    "an empty query": ({"metrics": [metric(query="")]}, "spec.metrics.0.query"),
    "a query over 4096 characters": ({"metrics": [metric(query="x" * 4097)]}, "spec.metrics.0.query"),
    "a metric name with capitals": ({"metrics.0.name": "Waiting"}, "spec.metrics.0.name"),
    "a metric name over 63 characters": ({"metrics.0.name": "w" * 64}, "spec.metrics.0.name"),
    "a metric without target": ({"metrics.0.target": DELETE}, "spec.metrics.0"),
    "target value 0": ({"metrics.0.target.value": 0}, "spec.metrics.0.target.value"),
    "target type Total": ({"metrics.0.target.type": "Total"}, "spec.metrics.0.target.type"),
    "a label selector that closes the selector": (
        {"metrics.0.labelSelector": 'a="b"} or vector(1) #'},
        "spec.metrics.0.labelSelector",
    ),
    "a label selector without quotes": ({"metrics.0.labelSelector": "namespace=prod"}, "spec.metrics.0.labelSelector"),
    "a model name with a quote": ({"metrics.0.modelName": 'm"}'}, "spec.metrics.0.modelName"),
    "selectPolicy Sometimes": ({"behavior.scaleUp.selectPolicy": "Sometimes"}, "spec.behavior.scaleUp.selectPolicy"),
    "a stabilization window over an hour": (
        {"behavior.scaleDown.stabilizationWindowSeconds": 3601},
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
    ),
    "an empty policy list": ({"behavior.scaleDown.policies": []}, "spec.behavior.scaleDown.policies"),
    "a policy of type Replicas": (
        {"behavior.scaleUp.policies": [scaling_rule(type="Replicas")]},
        "spec.behavior.scaleUp.policies.0.type",
    ),
    "a policy value 0": (
        {"behavior.scaleUp.policies": [scaling_rule(value=0)]},
        "spec.behavior.scaleUp.policies.0.value",
    ),
    "a period over 30 minutes": (
        {"behavior.scaleDown.policies": [scaling_rule(periodSeconds=1801)]},
        "spec.behavior.scaleDown.policies.0.periodSeconds",
    ),
    "onMetricsUnavailable Panic": ({"fallback.onMetricsUnavailable": "Panic"}, "spec.fallback.onMetricsUnavailable"),
    "negative fallback replicas": ({"fallback.replicas": -1}, "spec.fallback.replicas"),
}


@pytest.mark.parametrize(("changes", "where"), REJECTED.values(), ids=REJECTED.keys())
def test_schema_rejects(changes: Changes, where: str) -> None:
    errors = schema_errors(edited_policy(changes))
    assert where in {".".join(str(step) for step in e.absolute_path) for e in errors}


# --- Defaults and the field reference -------------------------------------------------------------------------

# The defaults the issue specifies: HPA v2 behaviour unless said otherwise.
SPECIFIED_DEFAULTS = {
    "spec.minReplicas": 1,
    "spec.mode": "Auto",
    "spec.interval": 15,
    "spec.prometheus.insecureSkipVerify": False,
    "spec.prometheus.timeout": 5,
    "spec.prometheus.maxStaleness": 60,
    "spec.behavior.scaleUp.stabilizationWindowSeconds": 0,
    "spec.behavior.scaleUp.selectPolicy": "Max",
    "spec.behavior.scaleUp.policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
    "spec.behavior.scaleDown.stabilizationWindowSeconds": 300,
    "spec.behavior.scaleDown.selectPolicy": "Max",
    "spec.behavior.scaleDown.policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    "spec.fallback.onMetricsUnavailable": "Hold",
}


def test_schema_defaults_are_the_specified_ones() -> None:
    # An empty-object default only makes the API server descend and apply the defaults inside it.
    defaults = {path: node["default"] for path, node in fields().items() if node.get("default", {}) != {}}
    assert defaults == SPECIFIED_DEFAULTS


def documented_fields(kind: str = "ScalingPolicy") -> dict[str, str]:
    """The reference's field tables (e.g. ``docs/scalingpolicy.md``): path -> the text of its Default column."""
    rows = re.findall(
        r"^\| `((?:spec|status)[^`]*)` \|[^|]*\| ([^|]*) \|",
        (REPO / REFERENCES[kind]).read_text(),
        flags=re.MULTILINE,
    )
    return {path: default.strip() for path, default in rows}


@pytest.mark.parametrize("kind", KINDS)
def test_reference_documents_every_field(kind: str) -> None:
    assert sorted(documented_fields(kind)) == sorted(fields(kind))


DEFAULTED = [(kind, path) for kind in KINDS for path, node in sorted(fields(kind).items()) if "default" in node]


@pytest.mark.parametrize(("kind", "path"), DEFAULTED, ids=[f"{k}:{p}" for k, p in DEFAULTED])
def test_reference_states_the_schema_default(kind: str, path: str) -> None:
    documented = documented_fields(kind)[path]
    assert documented.startswith("`") and documented.endswith("`"), f"{path}: default column {documented!r}"
    assert yaml.safe_load(documented.strip("`")) == fields(kind)[path]["default"]


@pytest.mark.parametrize("kind", KINDS)
def test_reference_states_no_default_the_schema_lacks(kind: str) -> None:
    claimed = {path for path, default in documented_fields(kind).items() if default.startswith("`")}
    assert claimed == {path for path, node in fields(kind).items() if "default" in node}


@pytest.mark.parametrize("kind", KINDS)
def test_reference_lists_the_condition_types(kind: str) -> None:
    text = (REPO / REFERENCES[kind]).read_text()
    for condition in CONDITIONS[kind]:
        assert re.search(rf"^\| `{condition}` \|", text, flags=re.MULTILINE), condition


# --- deploy/base/: RBAC, the operator Deployment, the Service ------------------------------------------------------

DEPLOY = documents("deploy/base/*.yaml")
NAMESPACE = only("Namespace", DEPLOY)["metadata"]["name"]
SERVICE_ACCOUNT = only("ServiceAccount", DEPLOY)

# What the operator is granted is compared with what it calls in tests/test_rbac_evidence.py.


def operator_deployment() -> Document:
    return only("Deployment", DEPLOY)


def operator_container() -> Document:
    (container,) = operator_deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_namespaced_objects_live_in_the_operator_namespace() -> None:
    for name, doc in DEPLOY:
        if doc["kind"] in ("ServiceAccount", "Deployment", "Service", "Role", "RoleBinding"):
            assert doc["metadata"].get("namespace") == NAMESPACE, name


def test_operator_runs_two_replicas_under_leader_election_with_the_service_account() -> None:
    spec = operator_deployment()["spec"]
    # One writer among them: the Lease decides (docs/reliability.md), in the pod's own namespace.
    assert spec["replicas"] == 2
    assert "--standalone" not in operator_container()["args"]
    (env,) = [e for e in operator_container()["env"] if e["name"] == "POD_NAMESPACE"]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT["metadata"]["name"]
    assert operator_container()["image"] == "ghcr.io/infercast/infercast:0.1.0"


def test_operator_is_locked_down() -> None:
    pod = operator_deployment()["spec"]["template"]["spec"]["securityContext"]
    container = operator_container()["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= operator_container()["resources"]["requests"].keys()


@pytest.mark.parametrize("probe_kind", ["livenessProbe", "readinessProbe"])
def test_probe_asks_the_endpoint_kopf_is_told_to_serve(probe_kind: str) -> None:
    container = operator_container()
    args = container["args"]
    url = urlsplit(args[args.index("--liveness") + 1])
    probe = container[probe_kind]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (probe["path"], ports[probe["port"]]) == (url.path, url.port)


def test_metrics_service_reaches_the_metrics_port() -> None:
    service = only("Service", DEPLOY)
    pod_labels = operator_deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http-metrics", 8080)
    assert {"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"} in operator_container()["ports"]
    assert port["targetPort"] == "http-metrics"


# --- The image ------------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> str:
    values = [args for instr, args in dockerfile() if instr == name]
    assert values, f"no {name} in the Dockerfile"
    return values[-1]


def test_image_entrypoint_is_the_console_script_the_deployment_runs() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = yaml.safe_load(instruction("ENTRYPOINT"))
    assert len(entrypoint) == 1 and entrypoint[0] in scripts
    assert entrypoint == operator_container()["command"]
    assert yaml.safe_load(instruction("CMD")) == ["run"] == operator_container()["args"][:1]


def test_image_runs_as_the_user_the_deployment_expects() -> None:
    assert instruction("FROM").startswith("python:3.11-slim")
    user = instruction("USER").split(":")[0]
    assert (
        user.isdigit()
        and int(user) == operator_deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )


def test_image_installs_the_package_without_dev_extras() -> None:
    installs = [args for instr, args in dockerfile() if instr == "RUN" and "pip install" in args]
    assert installs and all("[dev]" not in args for args in installs)
    assert any(re.search(r"pip install\b.*\s\.(\s|$)", args) for args in installs)


def test_image_installs_with_the_pinned_runtime_constraints() -> None:
    installs = [args for instr, args in dockerfile() if instr == "RUN" and "pip install" in args]
    assert any("--constraint constraints.txt ." in args for args in installs)
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    pins = {canonicalize_name(req.name): req for req in map(Requirement, lines)}
    assert all(str(req.specifier).startswith("==") and len(req.specifier) == 1 for req in pins.values())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run make constraints"
        (pin,) = pins[name].specifier
        assert requirement.specifier.contains(pin.version), f"{pins[name]} violates {requirement}"
    # Runtime only: nothing the dev extra asks for.
    dev = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    assert not dev & pins.keys()


def test_image_copies_only_files_that_exist_and_are_not_ignored() -> None:
    allowed = {
        line[1:].strip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for args in (args for instr, args in dockerfile() if instr == "COPY" and "--from" not in args):
        *sources, _ = args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.strip("/") in allowed, f"{source} is excluded by .dockerignore"
