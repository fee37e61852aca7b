"""The emulated API server's faster validation gives the verdicts and messages of the full one.

fastjsonschema decides, jsonschema explains; the CEL rules are looked for only where they are.

``devtools.apiserver.compile_schema`` lets generated code (fastjsonschema) say whether an object is
valid and asks jsonschema only what is wrong with one that is not. An object the fast check
admitted while jsonschema would refuse it would pass every test here and fail in a cluster, so
every CRD's objects (drawn from its own schema, :mod:`tests.harness.schema_strategies`, then one
subtree replaced by an arbitrary JSON value) must get the same verdict from both. Likewise the
CEL rules must say the same walked along a schema cut down to its rules (``with_rules_only``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.apiserver import _nullable_as_type, compile_admits, compile_schema
from devtools.cel import cel_violations, with_rules_only
from tests.harness.properties import examples
from tests.harness.schema_strategies import from_schema

REPO = Path(__file__).resolve().parent.parent
CRD_FILES = sorted(
    [
        *(REPO / "crds").glob("*.yaml"),
        *(REPO / "tests/harness/crds").glob("*.yaml"),
        *(REPO / "tests/upstream_crds").glob("*.yaml"),
    ]
)


def openapi_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage", True)]
    return dict(version["schema"]["openAPIV3Schema"])


SCHEMAS = {path.stem: openapi_schema(path) for path in CRD_FILES}
OBJECTS = {name: from_schema(schema) for name, schema in SCHEMAS.items()}
# Built once per CRD, as the server builds them: generating the fast check's code costs more than running it.
CONVERTED = {name: _nullable_as_type(schema) for name, schema in SCHEMAS.items()}
ADMITS = {name: compile_admits(schema) for name, schema in CONVERTED.items()}
JUDGES = {
    name: (admits, jsonschema.Draft4Validator(CONVERTED[name])) for name, admits in ADMITS.items() if admits is not None
}
RULES = {name: with_rules_only(schema) or {} for name, schema in SCHEMAS.items()}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` a subtree can be replaced at (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found += [(*prefix, key), *paths(child, (*prefix, key))]
    return found


@pytest.mark.parametrize("crd", sorted(JUDGES))
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_checks_judge_as_the_full_ones(crd: str, data: st.DataObject) -> None:
    admits, explainer = JUDGES[crd]
    obj = copy.deepcopy(data.draw(OBJECTS[crd], label="object"))
    places = paths(obj)
    edit: bool = data.draw(st.booleans(), label="edit")
    if places and edit:
        *parent, key = data.draw(st.sampled_from(places), label="at")
        holder = obj
        for step in parent:
            holder = holder[step]
        holder[key] = data.draw(JSON, label="value")
    refused = list(explainer.iter_errors(obj))
    assert admits(obj) == (not refused), [e.message for e in refused]
    if not refused:  # the server judges rules only on an object of the right shape
        assert cel_violations(obj, RULES[crd]) == cel_violations(obj, SCHEMAS[crd])


def test_a_property_without_rules_is_not_judged_by_additional_properties_rules() -> None:
    rule = {"x-kubernetes-validations": [{"rule": "self > 0", "message": "positive"}]}
    schema = {"type": "object", "properties": {"plain": {"type": "integer"}}, "additionalProperties": rule}
    obj = {"plain": -1, "other": -1}
    assert cel_violations(obj, with_rules_only(schema) or {}) == cel_violations(obj, schema) == ["other: positive"]
    assert with_rules_only({"type": "object", "properties": {"plain": {"type": "integer"}}}) is None


def test_a_refused_object_is_explained_field_by_field() -> None:
    schema = SCHEMAS["scalingpolicies"]
    obj = {"apiVersion": "infercast.io/v1alpha1", "kind": "ScalingPolicy", "metadata": {}, "spec": {"mode": 7}}
    problems = compile_schema(schema)(obj)
    assert any(p.startswith("spec.mode: 7 is not of type 'string'") for p in problems), problems
    assert JUDGES["scalingpolicies"][0](obj) is False


def test_a_schema_the_fast_check_cannot_compile_is_judged_by_jsonschema_alone() -> None:
    # fastjsonschema turns the ``$`` of ``[^$]``-like classes into ``\\Z``, which Python refuses.
    route = "gateway-api-httproutes.gateway.networking.k8s.io"
    assert ADMITS[route] is None
    check = compile_schema(SCHEMAS[route])
    obj: dict[str, Any] = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {}}
    assert check({**obj, "spec": {}}) == []
    assert any(p.startswith("spec.hostnames") for p in check({**obj, "spec": {"hostnames": "x"}}))
