"""Traffic policy specs: what the CRD schema cannot say, checked when parsing."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import SpecError
from controller.traffic.spec import parse_routing_policy, window_seconds


def routing(**spec: Any) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "vllm"},
        "prometheus": {"url": "http://prometheus:9090"},
        "backends": [
            {"name": n, "subset": n, "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": n}}
            for n in ("v1", "v2")
        ],
        **spec,
    }


@pytest.mark.parametrize(("window", "seconds"), [("30s", 30), ("1m", 60), ("2h", 7200), ("9999s", 9999)])
def test_rate_window_in_seconds(window: str, seconds: int) -> None:
    assert window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["1d", "0m", "1m30s", "m", ""])
def test_a_rate_window_the_crd_would_refuse_is_a_spec_error(window: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_routing_policy(routing(health={"rateWindow": window}))
    assert caught.value.reason == "InvalidHealth"


@pytest.mark.parametrize(("given", "expected"), [({}, 100), ({"minRequests": 0}, 0), ({"minRequests": 500}, 500)])
def test_canary_min_requests(given: dict[str, int], expected: int) -> None:
    spec = parse_routing_policy(routing(strategy="Canary", canary={"stable": "v1", "canary": "v2", **given}))
    assert spec.canary is not None and spec.canary.min_requests == expected
