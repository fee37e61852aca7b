"""Kubernetes structural OpenAPI v3 schemas as JSON Schema, to validate objects offline with jsonschema.

The API server reads a CRD's ``openAPIV3Schema`` in its own dialect: ``nullable``, boolean
``exclusiveMinimum``, list-type maps and sets, and unknown fields pruned (which ``kubectl``'s strict
field validation reports as errors). :func:`validator` translates a schema that way, for our CRDs
and for the upstream ones in ``tests/upstream_crds`` alike. CEL rules (``x-kubernetes-validations``)
need a CEL engine and are not evaluated.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import jsonschema
import yaml

Schema = dict[str, Any]

JUNCTORS = ("oneOf", "anyOf", "allOf")


def to_json_schema(node: Schema) -> Schema:
    """Translate one structural-schema node and its children."""
    out: Schema = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    for bound in ("Minimum", "Maximum"):
        if node.get(f"exclusive{bound}") is True:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
    if node.get("x-kubernetes-list-type") in ("map", "set"):
        out["listType"] = node["x-kubernetes-list-type"]
        out["listMapKeys"] = node.get("x-kubernetes-list-map-keys", [])
    if "properties" in node:
        out["properties"] = {name: to_json_schema(child) for name, child in node["properties"].items()}
        # Outside a junctor an unknown field is a typo the API server would prune, and kubectl rejects.
        if not node.get("x-kubernetes-preserve-unknown-fields") and "type" in node:
            out["additionalProperties"] = False
    for key in ("items", "not"):
        if key in node:
            out[key] = to_json_schema(node[key])
    for key in JUNCTORS:
        if key in node:
            out[key] = [to_json_schema(child) for child in node[key]]
    return out


def _unique_list_entries(validator: Any, list_type: str, instance: Any, schema: Schema) -> Iterator[Any]:
    """``x-kubernetes-list-type``: a set holds no duplicate, a map no two entries with the same keys."""
    if not isinstance(instance, list):
        return
    keys = schema.get("listMapKeys", [])
    seen: list[Any] = []
    for entry in instance:
        identity = tuple(entry.get(k) for k in keys) if list_type == "map" else entry
        if identity in seen:
            yield jsonschema.ValidationError(f"duplicate entry {identity!r} in a list of type {list_type}")
        seen.append(identity)


KubernetesValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"listType": _unique_list_entries})


def validator(schema: Schema) -> Any:
    return KubernetesValidator(to_json_schema(schema))


def crd_version_schema(path: pathlib.Path, version: str) -> Schema:
    """The ``openAPIV3Schema`` of one version of the CRD in ``path``."""
    crd = yaml.safe_load(path.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return dict(served["schema"]["openAPIV3Schema"])
