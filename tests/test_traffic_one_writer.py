"""One writer per traffic object: of two policies of one kind on the same target, the oldest claim wins."""

from __future__ import annotations

from typing import Any

import pytest

from controller.handlers.daemons import claim, older_claims

VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"}
KEY = ("networking.istio.io", "VirtualService", "ns", "vllm")
T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"


def spec(**extra: Any) -> dict[str, Any]:
    return {"targetRef": VS, **extra}


def test_a_policy_claims_its_target_unless_it_is_off() -> None:
    assert claim("ns", "a", spec(), {"creationTimestamp": T1}) == {KEY: (T1, "a")}
    assert claim("ns", "a", spec(mode="Off"), {"creationTimestamp": T1}) == {}
    assert claim("ns", "a", {"targetRef": {}}, {}) == {}


CASES = {
    "alone": ("b", T2, [(T2, "b")], ()),
    "an older policy wins": ("b", T2, [(T1, "a"), (T2, "b")], ("ns/a",)),
    "the older one is not in conflict": ("a", T1, [(T1, "a"), (T2, "b")], ()),
    "same creation time: the name decides": ("b", T1, [(T1, "a"), (T1, "b")], ("ns/a",)),
    "every older claim is named": ("c", T2, [(T1, "b"), (T1, "a"), (T2, "c")], ("ns/a", "ns/b")),
}


@pytest.mark.parametrize(("name", "created", "claims", "older"), CASES.values(), ids=CASES.keys())
def test_the_oldest_claim_wins(name: str, created: str, claims: list[tuple[str, str]], older: tuple[str, ...]) -> None:
    assert older_claims("ns", name, created, spec(), {KEY: claims}) == older


def test_another_target_or_namespace_is_no_conflict() -> None:
    claims = {KEY: [(T1, "a")]}
    other = spec(targetRef={**VS, "name": "other"})
    assert older_claims("ns", "b", T2, other, claims) == ()
    assert older_claims("ns2", "b", T2, spec(), claims) == ()
