"""Lead time learned from pods: start-ups (scheduled to Ready) and, while GPU nodes are short, the wait for a node."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.scaling.leadtime import (
    MAX_LEAD_TIME_S,
    MAX_SAMPLES,
    LeadTime,
    PodTimes,
    Supply,
    learn,
    observe_supply,
    pod_times,
    pods_may_tell_more,
)

T0 = 1_800_000_000.0
DEFAULT_S = 120.0


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    created: float,
    ready_after: float | None,
    *,
    scheduled_after: float | None = None,
    pending: bool = False,
    restarts: int = 0,
    deleting: bool = False,
    name: str = "p",
) -> dict[str, Any]:
    """A pod as the API returns it; ``scheduled_after`` None and not ``pending``: no PodScheduled condition."""
    conditions: list[dict[str, Any]] = []
    if pending:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": stamp(created)}
        )
    elif scheduled_after is not None:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(created + scheduled_after)}
        )
    if ready_after is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": stamp(created + ready_after)})
    meta: dict[str, Any] = {"name": name, "creationTimestamp": stamp(created)}
    if deleting:
        meta["deletionTimestamp"] = stamp(created + 1)
    return {"metadata": meta, "status": {"conditions": conditions, "containerStatuses": [{"restartCount": restarts}]}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(pod(T0, 95), PodTimes(T0, T0, T0 + 95), id="ready-without-podscheduled"),
        pytest.param(pod(T0, 95, scheduled_after=1), PodTimes(T0, T0 + 1, T0 + 95), id="scheduled-promptly"),
        pytest.param(pod(T0, 95, scheduled_after=60), PodTimes(T0, T0 + 60, T0 + 95), id="waited-for-a-node"),
        pytest.param(pod(T0, None, pending=True), PodTimes(T0, None, None, True), id="unschedulable-now"),
        pytest.param(pod(T0, None, scheduled_after=30), PodTimes(T0, T0 + 30, None), id="scheduled-not-ready"),
        pytest.param(pod(T0, None), PodTimes(T0, None, None), id="no-conditions-yet"),
        pytest.param(pod(T0, 95, restarts=1), PodTimes(T0, None, None), id="restarted-is-a-recovery"),
        pytest.param(pod(T0, None, pending=True, deleting=True), None, id="being-deleted"),
        pytest.param({"metadata": {}, "status": {}}, None, id="no-timestamps"),
    ],
)
def test_times_of_one_pod(body: dict[str, Any], expected: PodTimes | None) -> None:
    assert pod_times(body) == expected


@pytest.mark.parametrize(
    ("times", "wait", "startup"),
    [
        pytest.param(PodTimes(T0, T0 + 1, T0 + 95), 0.0, 95.0, id="prompt-scheduling-is-part-of-the-start-up"),
        pytest.param(PodTimes(T0, T0 + 5, T0 + 95), 0.0, 95.0, id="5s-is-still-the-scheduler's-own-latency"),
        pytest.param(PodTimes(T0, T0 + 6, T0 + 95), 6.0, 89.0, id="longer-is-a-wait-for-a-node"),
        pytest.param(PodTimes(T0, T0 + 240, T0 + 330), 240.0, 90.0, id="node-provisioning"),
        pytest.param(PodTimes(T0, None, None, True), None, None, id="pending"),
        pytest.param(PodTimes(T0, T0 + 60, T0 + 30), 60.0, None, id="ready-before-scheduled-is-garbage"),
    ],
)
def test_a_pod_splits_into_wait_and_start_up(times: PodTimes, wait: float | None, startup: float | None) -> None:
    assert (times.wait, times.startup) == (wait, startup)


NOW = T0 + 1000


@pytest.mark.parametrize(
    ("pods", "counted_until", "expected"),
    [
        pytest.param([], 0.0, Supply(), id="no-pods"),
        pytest.param(
            [PodTimes(T0, T0 + 1, T0 + 90), PodTimes(T0 + 10, T0 + 11, None)],
            0.0,
            Supply(),
            id="all-scheduled-promptly",
        ),
        pytest.param(
            [PodTimes(T0, T0 + 1, T0 + 90), PodTimes(NOW - 40, None, None, True), PodTimes(NOW - 10, None, None, True)],
            0.0,
            Supply(pending=2, short=True, waited_s=40.0),
            id="pending-now-waited-as-long-as-the-oldest",
        ),
        pytest.param(
            [PodTimes(T0, T0 + 1, T0 + 90), PodTimes(T0 + 100, T0 + 160, T0 + 250)],
            T0 + 100,
            Supply(short=True),
            id="the-pod-scheduled-last-waited",
        ),
        pytest.param(
            [PodTimes(T0 + 100, T0 + 160, None)],
            T0,
            Supply(short=True, waited_s=60.0),
            id="a-wait-not-counted-yet-is-evidence",
        ),
        pytest.param(
            [PodTimes(T0, T0 + 160, T0 + 250), PodTimes(T0 + 500, T0 + 501, T0 + 590)],
            T0 + 500,
            Supply(),
            id="scheduled-promptly-since-nodes-are-free-again",
        ),
    ],
)
def test_supply_seen_in_the_pods(pods: list[PodTimes], counted_until: float, expected: Supply) -> None:
    assert observe_supply(pods, counted_until, NOW) == expected


def test_default_until_measured_then_a_high_quantile() -> None:
    lead = LeadTime.from_status(None, DEFAULT_S)
    assert (lead.seconds, lead.source) == (DEFAULT_S, "default")
    pods = [pod(T0 + i, s, name=f"p{i}") for i, s in enumerate([60, 62, 61, 90, 63])]
    lead = learn(lead, pods, DEFAULT_S, NOW)
    assert lead.source == "measured"
    assert lead.seconds == 90, "with five start-ups the p90 is the slowest: late costs more than early"
    many = LeadTime(DEFAULT_S, startups=(60.0,) * 18 + (200.0, 61.0))
    assert many.seconds == 60, "one outlier among twenty does not set the lead time (nearest-rank p90)"


def test_each_pod_counts_once_and_history_is_bounded() -> None:
    lead = learn(LeadTime.from_status(None, DEFAULT_S), [pod(T0, 80)], DEFAULT_S, NOW)
    again = learn(lead, [pod(T0, 80)], DEFAULT_S, NOW)
    assert again.startups == (80.0,)
    for i in range(1, 40):
        lead = learn(lead, [pod(T0 + i, 130, scheduled_after=60)], DEFAULT_S, NOW)
    assert len(lead.startups) == len(lead.waits) == MAX_SAMPLES


def test_pending_replicas_extend_the_lead_time_by_the_wait_for_a_node() -> None:
    started = learn(LeadTime(DEFAULT_S), [pod(T0, 30, scheduled_after=1)], DEFAULT_S, T0 + 100)
    assert (started.seconds, started.scheduling_delay_s, started.supply.short) == (30, 0, False)

    # Two replicas added at T0 + 100 find no free node: while they pend, their wait so far counts.
    added = [pod(T0 + 100, None, pending=True, name=f"new{i}") for i in range(2)]
    pending = learn(started, [pod(T0, 30, scheduled_after=1), *added], DEFAULT_S, T0 + 145)
    assert (pending.supply.pending, pending.scheduling_delay_s, pending.seconds) == (2, 45, 75)

    # A node came after 90 s; once they are Ready their waits are samples and the lead time keeps them.
    served = [pod(T0 + 100, 120, scheduled_after=90, name=f"new{i}") for i in range(2)]
    short = learn(pending, [pod(T0, 30, scheduled_after=1), *served], DEFAULT_S, T0 + 300)
    assert short.waits == (90.0, 90.0) and short.startups == (30.0, 30.0, 30.0)
    assert (short.supply.pending, short.supply.short, short.seconds) == (0, True, 120)

    # A later replica scheduled at once: nodes are free again, the lead time is the start-up alone.
    later = pod(T0 + 400, 31, scheduled_after=0, name="later")
    free = learn(short, [pod(T0, 30, scheduled_after=1), *served, later], DEFAULT_S, T0 + 500)
    assert (free.supply.short, free.scheduling_delay_s, free.seconds) == (False, 0, 31)
    assert free.waits == (90.0, 90.0), "the waits are remembered for the next shortage"


def test_a_pod_that_never_gets_a_node_cannot_stretch_the_lead_time_without_end() -> None:
    lead = learn(LeadTime(DEFAULT_S), [pod(T0, None, pending=True)], DEFAULT_S, T0 + 10 * MAX_LEAD_TIME_S)
    assert lead.seconds == MAX_LEAD_TIME_S


def test_status_round_trip_and_garbage() -> None:
    pods = [pod(T0, 80), pod(T0 + 1, 150, scheduled_after=70), pod(NOW - 30, None, pending=True)]
    lead = learn(LeadTime.from_status(None, DEFAULT_S), pods, DEFAULT_S, NOW)
    status = lead.to_status()
    assert status["supply"] == "Short" and status["pendingReplicas"] == 1
    assert status["schedulingDelaySeconds"] == 70 and status["schedulingSamples"] == [70]
    assert LeadTime.from_status(status, DEFAULT_S).to_status() == status, "a cycle that cannot list pods keeps it"
    assert LeadTime.from_status({"samples": ["x"]}, default_s=30).seconds == 30
    assert LeadTime.from_status({"pendingReplicas": "many", "supply": "Short"}, default_s=30).seconds == 30


@pytest.mark.parametrize(
    ("spec", "ready", "previous", "expected"),
    [
        pytest.param(3, 3, {"currentReplicas": 3, "readyReplicas": 3}, False, id="settled-now-and-before"),
        pytest.param(3, 3, {}, True, id="first-cycle"),
        pytest.param(3, 2, {"currentReplicas": 3, "readyReplicas": 3}, True, id="a-replica-starting-or-pending"),
        pytest.param(3, 3, {"currentReplicas": 3, "readyReplicas": 2}, True, id="a-start-up-just-finished"),
        pytest.param(3, 3, {"currentReplicas": 4, "readyReplicas": 3}, True, id="scaled-at-the-previous-cycle"),
        pytest.param(2, 2, {"currentReplicas": 3, "readyReplicas": 3}, True, id="scaled-down-since"),
    ],
)
def test_pods_are_listed_only_while_the_workload_is_not_settled(
    spec: int, ready: int, previous: dict[str, Any], expected: bool
) -> None:
    assert pods_may_tell_more(spec, ready, previous) is expected
