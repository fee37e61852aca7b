"""The CRDs and the operator's parsers agree on every bound (issue 12, finding 5), as hypothesis properties.

Objects are generated from each CRD's own ``openAPIV3Schema`` (:mod:`tests.harness.schema_strategies`),
defaulted as the API server defaults them, and judged by the API server's validation (OpenAPI and
CEL rules, :func:`devtools.apiserver.schema_violations`). Then:

* what the CRD admits, the parser parses or refuses with a :class:`SpecError` (a condition and an
  Event), never with another exception; and what it parses, the policy can decide on (``minReplicas:
  0`` was admitted, parsed, and raised in every cycle);
* what the parser accepts, the CRD admits: the operator never acts on a spec a cluster would refuse.

The default profile runs a few hundred examples per kind; ``make chaos`` runs 10,000.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.actuators import ScaleObservation
from controller.clients.refs import ObjectRef
from controller.errors import SpecError
from controller.reconcile.spec import LABEL_SELECTOR, MODEL_NAME
from controller.scaling.observe import MetricReading
from controller.scaling.plan import plan_reactive
from controller.scaling.settings import forecast_settings, predictive_settings
from controller.scaling.spec import ScalingPolicySpec, parse_scaling_policy
from controller.traffic.spec import CircuitBreakerPolicySpec, parse_circuit_breaker_policy, parse_routing_policy
from devtools.apiserver import apply_defaults, schema_violations
from policies import BreakerInputs, ScalingState, decide_breakers
from tests.harness.properties import examples
from tests.harness.schema_strategies import from_schema, regex_strings

REPO = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000.0
CRDS = {
    "ScalingPolicy": "crds/scalingpolicies.yaml",
    "CircuitBreakerPolicy": "crds/circuitbreakerpolicies.yaml",
    "RoutingPolicy": "crds/routingpolicies.yaml",
}


def schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO / CRDS[kind]).read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def decide_scaling(spec: ScalingPolicySpec) -> None:
    """One reactive decision, and the predictive settings: what a cycle builds from a parsed spec."""
    target = ObjectRef(spec.target.api_version, spec.target.kind, "ns", spec.target.name, None)
    observed = ScaleObservation(target, spec.min_replicas, spec.min_replicas, "app=x")
    readings = [MetricReading(m, "q", 1.0, None) for m in spec.metrics]
    plan_reactive(spec, observed, readings, ScalingState(), NOW)
    if spec.forecast is not None:
        forecast_settings(spec.forecast)
        predictive_settings(spec, capacity_per_replica=1.0, lead_time_s=60.0)


def decide_breakers_on(spec: CircuitBreakerPolicySpec) -> None:
    decide_breakers(BreakerInputs(backends=(), current={}, bounds=spec.bounds, limits=spec.health.limits), {}, NOW)


# Built once per kind: building a strategy from a schema (its patterns) costs more than drawing from it.
SPECS = {kind: from_schema(schema(kind)["properties"]["spec"]) for kind in CRDS}

PARSERS: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Callable[[Any], None]]] = {
    "ScalingPolicy": (parse_scaling_policy, decide_scaling),
    "CircuitBreakerPolicy": (parse_circuit_breaker_policy, decide_breakers_on),
    "RoutingPolicy": (parse_routing_policy, lambda _: None),
}


@pytest.mark.parametrize("kind", CRDS)
@settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(data=st.data())
def test_crd_and_parser_agree(kind: str, data: st.DataObject) -> None:
    crd_schema = schema(kind)
    spec = data.draw(SPECS[kind], label="spec")
    obj = {"apiVersion": "infercast.io/v1alpha1", "kind": kind, "metadata": {"name": "p"}, "spec": copy.deepcopy(spec)}
    apply_defaults(obj, crd_schema)
    problems = schema_violations(obj, crd_schema)
    parse, decide = PARSERS[kind]
    try:
        parsed = parse(obj["spec"])
    except SpecError:
        parsed = None
    if parsed is not None:
        assert not problems, f"the parser accepted what the CRD refuses: {problems}"
        decide(parsed)


def fields_named(node: Any, names: set[str]) -> list[tuple[str, Mapping[str, Any]]]:
    found: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(node, Mapping):
        for key, child in node.items():
            if key in names and isinstance(child, Mapping) and child.get("type") == "string":
                found.append((key, child))
            found += fields_named(child, names)
    elif isinstance(node, list):
        for child in node:
            found += fields_named(child, names)
    return found


@pytest.mark.parametrize("kind", CRDS)
def test_promql_fields_have_the_parsers_patterns(kind: str) -> None:
    """A model name or label selector goes into PromQL: the CRD and the parser refuse the same ones."""
    expected = {"modelName": MODEL_NAME.pattern, "labelSelector": LABEL_SELECTOR.pattern}
    found = fields_named(schema(kind), set(expected))
    assert found, "every kind has a model name"
    for name, field in found:
        assert field.get("pattern") == expected[name], f"{kind} {name}"
        re.compile(field["pattern"])


def patterns(node: Any) -> set[str]:
    if isinstance(node, Mapping):
        own = {str(node["pattern"])} if isinstance(node.get("pattern"), str) else set()
        return own.union(*(patterns(child) for child in node.values()))
    if isinstance(node, list):
        return set().union(*(patterns(child) for child in node))
    return set()


ALL_PATTERNS = sorted(set().union(*(patterns(schema(kind)) for kind in CRDS)))


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
@settings(max_examples=examples(50), deadline=None)
@given(data=st.data())
def test_generated_strings_match_their_pattern(pattern: str, data: st.DataObject) -> None:
    """The generator's strings are the CRD's: ``^$|^[a-z]...$`` once drew '{a0a{' and blamed the parser."""
    text = data.draw(regex_strings(pattern))
    assert re.search(pattern, text), text
