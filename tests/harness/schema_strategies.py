"""Hypothesis strategies that generate objects from a CRD's OpenAPI v3 schema.

Written for the subset our CRDs use: objects (properties, required, additionalProperties), arrays
(items, minItems, maxItems), strings (enum, pattern, minLength, maxLength), integers and numbers
(minimum, maximum, exclusive bounds), booleans. Numbers are drawn with a bias towards their bounds,
where parsers and policies disagree most. A ``oneOf`` of presence rules is honoured (one branch
drawn); other combinators and the CEL rules (``x-kubernetes-validations``) are not generated for:
optional fields are present or absent at random, and the API server's own validation
(``devtools.apiserver.schema_violations``) then says whether the CRD admits the object.

Strings of a ``pattern`` come from :func:`regex_strings`, a small generator over the parsed
regular expression: hypothesis' own ``from_regex`` costs ~13 ms a draw, and an object has a dozen
patterns. Strings are kept short (what a pattern needs, at most ``max_text`` otherwise) so that
examples stay fast; a bound on length beyond that is not what these tests are after.
"""

from __future__ import annotations

import math
import re._parser as regex_parser
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

MAX_ITEMS = 3


def from_schema(schema: Mapping[str, Any], max_text: int = 24) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (see the module docstring for what is and is not honoured)."""
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, max_text)
    if kind == "array":
        items = from_schema(schema.get("items") or {}, max_text)
        low = int(schema.get("minItems", 0))
        high = min(int(schema.get("maxItems", MAX_ITEMS)), max(low, MAX_ITEMS))
        return st.lists(items, min_size=low, max_size=high)
    if kind == "string":
        return _string(schema, max_text)
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return st.booleans()
    return st.just({})  # x-kubernetes-preserve-unknown-fields and the like: an empty object


def _object(schema: Mapping[str, Any], max_text: int) -> st.SearchStrategy[dict[str, Any]]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    # Built once: a strategy per property (a pattern's is costly to build), drawn from per example.
    children = {name: from_schema(subschema, max_text) for name, subschema in properties.items()}
    extra = schema.get("additionalProperties")
    keys = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
    entries = (
        st.dictionaries(keys, from_schema(extra, max_text), max_size=MAX_ITEMS)
        if isinstance(extra, Mapping) and not properties
        else st.just({})
    )

    # A oneOf of presence rules (``required`` / ``not: required``): one branch is drawn and honoured,
    # or most objects would break it and the CRD would refuse nearly everything generated.
    branches = [(set(b.get("required") or ()), _forbidden(b)) for b in schema.get("oneOf") or ()] or [(set(), set())]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        needed, forbidden = draw(st.sampled_from(branches))
        value: dict[str, Any] = {}
        for name, child in children.items():
            if name in forbidden:
                continue
            if name in required or name in needed or draw(st.booleans()):
                value[name] = draw(child)
        value.update(draw(entries))
        return value

    return build()


def _forbidden(branch: Mapping[str, Any]) -> set[str]:
    """The properties a oneOf branch's ``not`` forbids (``required`` directly or in an ``anyOf``)."""
    negated = branch.get("not") or {}
    fields = set(negated.get("required") or ())
    for alternative in negated.get("anyOf") or ():
        fields |= set(alternative.get("required") or ())
    return fields


def _string(schema: Mapping[str, Any], max_text: int) -> st.SearchStrategy[str]:
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max_text))
    if "pattern" in schema:
        return regex_strings(str(schema["pattern"])).filter(lambda s: low <= len(s) <= high)
    return st.text(st.characters(codec="utf-8"), min_size=low, max_size=max(low, min(high, max_text)))


def _integer(schema: Mapping[str, Any]) -> st.SearchStrategy[int]:
    low = schema.get("minimum", -(2**31))
    high = schema.get("maximum", 2**31 - 1)
    low = int(low) + (1 if schema.get("exclusiveMinimum") is True else 0)
    high = int(high) - (1 if schema.get("exclusiveMaximum") is True else 0)
    edges = sorted({low, high, min(low + 1, high), max(high - 1, low)})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _number(schema: Mapping[str, Any]) -> st.SearchStrategy[float | int]:
    low = float(schema.get("minimum", -1e9))
    high = float(schema.get("maximum", 1e9))
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum") is True, schema.get("exclusiveMaximum") is True
    floats = st.floats(
        low, high, allow_nan=False, allow_infinity=False, exclude_min=exclusive_low, exclude_max=exclusive_high
    )
    edges = [x for x, open_ in ((low, exclusive_low), (high, exclusive_high)) if not open_ and math.isfinite(x)]
    # Kubernetes stores a whole number as an integer: a parser must take both.
    whole = [int(x) for x in edges if float(x).is_integer()]
    return st.one_of(st.sampled_from([*edges, *whole]), floats) if edges else floats


# A few characters of each class \\s, \\d, \\w and "anything", enough to hit the edges of our patterns.
_CATEGORIES = {
    regex_parser.CATEGORY_SPACE: " \t",
    regex_parser.CATEGORY_DIGIT: "0123456789",
    regex_parser.CATEGORY_WORD: "abcXYZ019_",
}
_ANY = 'a0-_.:/"\\ ,=~!{}é'
_MAX_REPEAT = 4


def regex_strings(pattern: str) -> st.SearchStrategy[str]:
    """Strings that ``pattern`` matches when searched (text around the match where it is not anchored)."""
    parsed = list(regex_parser.parse(pattern).data)
    anchored = _anchored(parsed, 0, regex_parser.AT_BEGINNING)
    ends = _anchored(parsed, -1, regex_parser.AT_END)
    around = st.text(st.sampled_from(_ANY), max_size=6)
    return st.tuples(st.just("") if anchored else around, _sequence(parsed), st.just("") if ends else around).map(
        "".join
    )


def _anchored(items: list[tuple[Any, Any]], at: int, anchor: Any) -> bool:
    """Whether the pattern is anchored at that end: ``^$|^x$`` parses as ``^(?:$|x$)``, a branch each of
    whose alternatives ends in ``$``."""
    if not items:
        return False
    op, arg = items[at]
    if op == regex_parser.BRANCH:
        return all(_anchored(list(branch), at, anchor) for branch in arg[1])
    return bool(op == regex_parser.AT and arg == anchor)


def _sequence(items: list[tuple[Any, Any]]) -> st.SearchStrategy[str]:
    parts = [_node(op, arg) for op, arg in items]
    return st.tuples(*parts).map("".join) if parts else st.just("")


def _node(op: Any, arg: Any) -> st.SearchStrategy[str]:
    if op == regex_parser.LITERAL:
        return st.just(chr(arg))
    if op == regex_parser.ANY:
        return st.sampled_from(_ANY)
    if op == regex_parser.IN:
        return st.sampled_from(_class(arg))
    if op in (regex_parser.MAX_REPEAT, regex_parser.MIN_REPEAT):
        low, high, items = arg
        return st.lists(_sequence(list(items)), min_size=low, max_size=min(high, low + _MAX_REPEAT)).map("".join)
    if op == regex_parser.SUBPATTERN:
        return _sequence(list(arg[-1]))
    if op == regex_parser.BRANCH:
        return st.one_of(*(_sequence(list(branch)) for branch in arg[1]))
    return st.just("")  # anchors


def _class(items: list[tuple[Any, Any]]) -> list[str]:
    """The characters a class (``[...]``) offers: its literals, the ends and middle of its ranges."""
    candidates: list[str] = []
    negate = False
    for op, value in items:
        if op == regex_parser.NEGATE:
            negate = True
        elif op == regex_parser.LITERAL:
            candidates.append(chr(value))
        elif op == regex_parser.RANGE:
            low, high = value
            candidates += sorted({chr(low), chr(high), chr((low + high) // 2)})
        elif op == regex_parser.CATEGORY:
            candidates += list(_CATEGORIES.get(value, ""))
    return [c for c in _ANY if c not in candidates] if negate else candidates
