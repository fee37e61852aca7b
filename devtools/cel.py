"""The CEL validation rules of a CRD schema (``x-kubernetes-validations``), evaluated as the API server does.

Our CRDs state cross-field constraints (``minReplicas <= maxReplicas``, a Canary needs its two
backends, ...) as CEL rules; a real API server rejects an object that breaks one with a 422 before
any controller sees it. Without them the emulated API server would accept what a cluster refuses,
and a rule with a typo would only be found in a cluster. ``cel-python`` evaluates standard CEL
(``has``, ``all``, ``exists``, string functions), which is all our rules use; Kubernetes' own CEL
libraries (``quantity``, ``url``, ...) and transition rules (``oldSelf``) are not supported, and a
rule that uses them fails to compile, loudly, rather than passing unchecked.

Each rule is evaluated with ``self`` bound to the value of the schema node that carries it, only
where that value is present, after defaulting, like the API server. A rule that raises (e.g. reads
an absent optional field without ``has``) is a violation, as it is in a cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

_ENVIRONMENT = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(rule))


def _nodes(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Any, Mapping[str, Any]]]:
    """Every (path, value, schema) pair of ``value`` under ``schema``, parents first."""
    yield path, value, schema
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            subschema = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if subschema is not None:
                yield from _nodes(item, subschema, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _nodes(item, schema["items"], f"{path}[{index}]")


def _as_declared(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with every field of ``type: number`` a float, as the API server hands it to CEL.

    Kubernetes gives CEL a ``double`` for a number field however its JSON is spelled (``0`` or
    ``0.0``); converting by Python type would give an ``int``, and CEL compares no ``int`` with a
    ``double``, so ``lowerScore: 0`` would fail a rule a cluster accepts.
    """
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {
            key: _as_declared(item, sub) if isinstance(sub := properties.get(key, extra), Mapping) else item
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(items := schema.get("items"), Mapping):
        return [_as_declared(item, items) for item in value]
    return value


def with_rules_only(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``schema`` without the branches that carry no rule (``None`` when none does), so that
    :func:`cel_violations` walks only where a rule may be: a policy's status has none, and walking
    it at every status write was about 5 % of the emulated API server's time. A node with rules
    is kept whole, since its rules see its value as declared (:func:`_as_declared`)."""
    if schema.get("x-kubernetes-validations"):
        return schema
    kept: dict[str, Any] = {}
    for key in ("additionalProperties", "items"):
        if isinstance(sub := schema.get(key), Mapping) and (pruned := with_rules_only(sub)):
            kept[key] = pruned
    properties = {key: with_rules_only(sub) for key, sub in (schema.get("properties") or {}).items()}
    # A property without rules stays (as an empty schema) when additionalProperties has some: it
    # must not be judged by them.
    properties = {key: sub or {} for key, sub in properties.items() if sub or "additionalProperties" in kept}
    if properties:
        kept["properties"] = properties
    return kept or None


def cel_violations(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The messages of the rules ``obj`` breaks, each prefixed with the path of the node that carries it.

    ``schema`` may be cut down by :func:`with_rules_only` first: the messages are the same."""
    problems = []
    for path, value, node in _nodes(obj, schema, ""):
        for validation in node.get("x-kubernetes-validations") or ():
            rule = validation["rule"]
            try:
                allowed = _program(rule).evaluate({"self": json_to_cel(_as_declared(value, node))})
            except CELEvalError as exc:
                problems.append(f"{path or '<root>'}: rule {rule!r} failed to evaluate: {exc.args[0]}")
                continue
            if not allowed:
                problems.append(f"{path or '<root>'}: {validation.get('message') or f'failed rule: {rule}'}")
    return problems
