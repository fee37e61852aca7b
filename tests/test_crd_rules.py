"""The CEL rules of our CRDs (``x-kubernetes-validations``), evaluated by the emulated API server.

A cluster refuses a policy that breaks one of these rules at ``kubectl apply`` time, with the rule's
message; the table below breaks each rule once, on top of an example that satisfies all of them,
and checks the message the API server would give. The devcluster's validation
(:func:`devtools.apiserver.schema_violations`) is the one the tests and the demo run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.apiserver import apply_defaults, schema_violations
from devtools.cel import cel_violations

REPO = Path(__file__).resolve().parent.parent
CRDS = {
    "ScalingPolicy": "crds/scalingpolicies.yaml",
    "CircuitBreakerPolicy": "crds/circuitbreakerpolicies.yaml",
    "RoutingPolicy": "crds/routingpolicies.yaml",
}
# name: (file, kind, metadata.name)
EXAMPLES = {
    "ScalingPolicy": ("examples/vllm-scalingpolicy.yaml", "ScalingPolicy", "vllm-llama"),
    "CircuitBreakerPolicy": ("examples/vllm-traffic-istio.yaml", "CircuitBreakerPolicy", "vllm"),
    "RoutingPolicy": ("examples/vllm-traffic-istio.yaml", "RoutingPolicy", "vllm"),
    "HTTPRoute RoutingPolicy": ("examples/vllm-traffic-gateway.yaml", "RoutingPolicy", "vllm-gateway"),
}

Document = dict[str, Any]


def schema(kind: str) -> Document:
    crd = yaml.safe_load((REPO / CRDS[kind]).read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def example(name: str) -> Document:
    path, kind, metadata_name = EXAMPLES[name]
    for doc in yaml.safe_load_all((REPO / path).read_text()):
        if doc and doc["kind"] == kind and doc["metadata"]["name"] == metadata_name:
            return dict(doc)
    raise LookupError(name)


def validations(node: Document) -> Iterator[Document]:
    """Every ``x-kubernetes-validations`` entry of a schema, at any depth."""
    yield from node.get("x-kubernetes-validations") or ()
    for child in (node.get("properties") or {}).values():
        yield from validations(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from validations(node[key])


def violations(name: str, edit: Callable[[Document], object] | None = None) -> list[str]:
    """What the API server says of the example ``name`` after ``edit`` (defaults applied first)."""
    obj = copy.deepcopy(example(name))
    if edit is not None:
        edit(obj["spec"])
    kind = obj["kind"]
    apply_defaults(obj, schema(kind))
    return schema_violations(obj, schema(kind))


@pytest.mark.parametrize("kind", CRDS)
def test_every_rule_compiles_and_the_crds_have_rules(kind: str) -> None:
    found = [validation["rule"] for validation in validations(schema(kind))]
    assert found, f"{kind} states no CEL rule"
    # Breaks loudly on a rule cel-python cannot compile (a typo, or a Kubernetes-only library).
    assert cel_violations({}, {"x-kubernetes-validations": [{"rule": f"true || ({rule})"} for rule in found]}) == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_examples_satisfy_every_rule(name: str) -> None:
    assert violations(name) == []


def set_fields(**fields: Any) -> Callable[[Document], None]:
    """An edit that sets ``fields``: paths below ``spec`` with ``__`` between the parts (list indexes
    included, ``metrics__0__preset``); a value of ``None`` deletes the field."""

    def edit(spec: Document) -> None:
        for path, value in fields.items():
            *parents, leaf = path.split("__")
            node = spec
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if value is None:
                del node[leaf]
            else:
                node[leaf] = value

    return edit


SECRET = {"name": "prometheus-ca", "key": "ca.crt"}

# (example, edit, the rule's message at its path): each rule broken once.
BROKEN: dict[str, tuple[str, Callable[[Document], None], str]] = {
    "min above max": (
        "ScalingPolicy",
        set_fields(minReplicas=9, maxReplicas=8),
        "spec: minReplicas must not exceed maxReplicas",
    ),
    "fallback above max": (
        "ScalingPolicy",
        set_fields(fallback={"replicas": 9}),
        "spec: fallback.replicas must lie within [minReplicas, maxReplicas]",
    ),
    "fallback without replicas": (
        "ScalingPolicy",
        set_fields(fallback={"onMetricsUnavailable": "Fallback"}),
        "spec.fallback: onMetricsUnavailable Fallback needs fallback.replicas",
    ),
    "modelName on a TGI preset": (
        "ScalingPolicy",
        set_fields(metrics__0__preset="tgi-queue-size"),
        "spec.metrics[0]: modelName applies to the vllm-* and triton-* presets only",
    ),
    "forecast load with preset and query": (
        "ScalingPolicy",
        set_fields(forecast={"load": {"preset": "vllm-prompt-tokens-rate", "query": "sum(up)"}}),
        "spec.forecast.load: set at most one of preset and query",
    ),
    "forecast load query with modelName": (
        "ScalingPolicy",
        set_fields(forecast={"load": {"query": "sum(up)", "modelName": "m"}}),
        "spec.forecast.load: modelName and labelSelector apply to presets only",
    ),
    "canary without its backends": (
        "RoutingPolicy",
        set_fields(strategy="Canary", canary={"stable": "h100"}),
        "spec: strategy Canary needs canary.stable and canary.canary",
    ),
    "VirtualService backend without subset": (
        "RoutingPolicy",
        set_fields(backends__1__subset=None),
        "spec: a VirtualService target needs a subset on every backend",
    ),
    "HTTPRoute backend without backendRef": (
        "HTTPRoute RoutingPolicy",
        set_fields(backends__1__backendRef=None),
        "spec: an HTTPRoute target needs a backendRef on every backend",
    ),
    "HTTPRoute kind with Istio's API group": (
        "HTTPRoute RoutingPolicy",
        set_fields(targetRef__apiVersion="networking.istio.io/v1"),
        "spec.targetRef: VirtualService is networking.istio.io/v1, HTTPRoute gateway.networking.k8s.io/v1",
    ),
}

# Rules that several kinds share, broken in each kind's example: (edit, message, kinds).
SHARED: dict[str, tuple[Callable[[Document], None], str, tuple[str, ...]]] = {
    "CA and insecure": (
        set_fields(prometheus__caSecretRef=SECRET, prometheus__insecureSkipVerify=True),
        "spec.prometheus: caSecretRef and insecureSkipVerify exclude each other",
        tuple(CRDS),
    ),
    "neither url nor endpoint": (
        set_fields(prometheus__url=None),
        "spec.prometheus: set exactly one of url and endpoint",
        tuple(CRDS),
    ),
    "both url and endpoint": (
        set_fields(prometheus__endpoint="cluster"),
        "spec.prometheus: set exactly one of url and endpoint",
        tuple(CRDS),
    ),
    "an endpoint with a Secret of the policy's": (
        set_fields(prometheus__url=None, prometheus__endpoint="cluster", prometheus__bearerTokenSecretRef=SECRET),
        "spec.prometheus: an endpoint brings its own credentials and TLS:"
        " no bearerTokenSecretRef, caSecretRef or insecureSkipVerify with endpoint",
        tuple(CRDS),
    ),
    "health band upside down": (
        set_fields(health__lowerScore=0.9, health__upperScore=0.5),
        "spec.health: lowerScore must be below upperScore",
        ("CircuitBreakerPolicy", "RoutingPolicy"),
    ),
}
BROKEN |= {
    f"{rule} ({kind})": (kind, edit, message) for rule, (edit, message, kinds) in SHARED.items() for kind in kinds
}


@pytest.mark.parametrize(("name", "edit", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_each_rule_refuses_what_it_states(name: str, edit: Callable[[Document], None], message: str) -> None:
    assert violations(name, edit) == [message]


def test_every_rule_is_broken_by_some_case() -> None:
    messages = {message.split(": ", 1)[1] for _, _, message in BROKEN.values()}
    stated = {validation["message"] for kind in CRDS for validation in validations(schema(kind))}
    assert stated <= messages, f"rules without a case: {stated - messages}"


# The legal neighbours of the broken cases: the rules refuse no more than they state.
ALLOWED: dict[str, tuple[str, Callable[[Document], None]]] = {
    "min equal to max": ("ScalingPolicy", set_fields(minReplicas=8, maxReplicas=8)),
    "fallback at the bounds": (
        "ScalingPolicy",
        set_fields(fallback={"replicas": 8, "onMetricsUnavailable": "Fallback"}),
    ),
    "a CA without insecure": ("ScalingPolicy", set_fields(prometheus__caSecretRef=SECRET)),
    **{
        f"an endpoint instead of a url ({kind})": (
            kind,
            set_fields(prometheus__url=None, prometheus__endpoint="cluster"),
        )
        for kind in CRDS
    },
    "modelName on a Triton preset": ("ScalingPolicy", set_fields(metrics__0__preset="triton-queue-duration")),
    "forecast load query alone": ("ScalingPolicy", set_fields(forecast={"load": {"query": "sum(up)"}})),
    "a canary with both backends": (
        "RoutingPolicy",
        set_fields(strategy="Canary", canary={"stable": "h100", "canary": "l4"}),
    ),
    # A number field written as an integer is a double to CEL, as in a cluster (found by
    # test_crd_parser_agreement: lowerScore 0 against the default upperScore 0.5).
    **{
        f"an integral lowerScore ({kind})": (kind, set_fields(health={"lowerScore": 0, "upperScore": 0.5}))
        for kind in ("CircuitBreakerPolicy", "RoutingPolicy")
    },
}


@pytest.mark.parametrize(("name", "edit"), ALLOWED.values(), ids=ALLOWED.keys())
def test_the_rules_accept_their_legal_neighbours(name: str, edit: Callable[[Document], None]) -> None:
    assert violations(name, edit) == []


def test_a_rule_that_cannot_be_evaluated_is_a_violation_not_a_pass() -> None:
    node = {"x-kubernetes-validations": [{"rule": "self.missing > 0", "message": "unused"}]}
    (problem,) = cel_violations({"present": 1}, node)
    assert problem.startswith("<root>: rule 'self.missing > 0' failed to evaluate")
