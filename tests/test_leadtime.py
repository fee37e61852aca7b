"""Lead time learned from pods: creation to Ready, a high quantile of recent start-ups, never a pod twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.scaling.leadtime import MAX_SAMPLES, LeadTime, estimate, learn, startup_seconds

T0 = 1_800_000_000.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(created: float, ready_after: float | None, *, restarts: int = 0, name: str = "p") -> dict[str, Any]:
    conditions = (
        []
        if ready_after is None
        else [{"type": "Ready", "status": "True", "lastTransitionTime": stamp(created + ready_after)}]
    )
    return {
        "metadata": {"name": name, "creationTimestamp": stamp(created)},
        "status": {"conditions": conditions, "containerStatuses": [{"restartCount": restarts}]},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(pod(T0, 95), (T0, 95.0), id="ready-after-95s"),
        pytest.param(pod(T0, None), None, id="not-ready-yet"),
        pytest.param(pod(T0, 95, restarts=1), None, id="restarted-is-a-recovery"),
        pytest.param({"metadata": {}, "status": {}}, None, id="no-timestamps"),
        pytest.param(
            {
                "metadata": {"creationTimestamp": stamp(T0)},
                "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": stamp(T0)}]},
            },
            None,
            id="ready-false",
        ),
    ],
)
def test_startup_of_one_pod(body: dict[str, Any], expected: tuple[float, float] | None) -> None:
    assert startup_seconds(body) == expected


def test_default_until_measured_then_a_high_quantile() -> None:
    lead = LeadTime.from_status(None, default_s=120)
    assert (lead.seconds, lead.source) == (120, "default")
    lead = learn(lead, [pod(T0 + i, s, name=f"p{i}") for i, s in enumerate([60, 62, 61, 90, 63])], default_s=120)
    assert lead.source == "measured"
    assert lead.seconds == 90, "with five start-ups the p90 is the slowest: late costs more than early"
    many = estimate([60.0] * 18 + [200.0, 61.0], default_s=120)
    assert many.seconds == 60, "one outlier among twenty does not set the lead time (nearest-rank p90)"


def test_each_pod_counts_once_and_history_is_bounded() -> None:
    lead = learn(LeadTime.from_status(None, 120), [pod(T0, 80)], default_s=120)
    again = learn(lead, [pod(T0, 80)], default_s=120)
    assert again.samples == (80.0,)
    for i in range(1, 40):
        lead = learn(lead, [pod(T0 + i, 70)], default_s=120)
    assert len(lead.samples) == MAX_SAMPLES


def test_status_round_trip_and_garbage() -> None:
    lead = learn(LeadTime.from_status(None, 120), [pod(T0, 80), pod(T0 + 1, 85)], default_s=120)
    restored = LeadTime.from_status(lead.to_status(), default_s=120)
    assert restored == lead
    assert LeadTime.from_status({"samples": ["x"]}, default_s=30).seconds == 30
