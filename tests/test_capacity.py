"""Per-replica capacity learned online: healthy cycles confirm it, saturation lowers it, missing data never moves it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.scaling.capacity import (
    CONFIRMATIONS,
    SHORT_QUEUE_PER_REPLICA,
    Capacity,
    CapacityObservation,
    learn,
)

SLO = 2.0


def healthy(per_replica: float, replicas: int = 2) -> CapacityObservation:
    return CapacityObservation(per_replica * replicas, replicas, latency_s=SLO / 2, queue=0.0)


def saturated(per_replica: float, replicas: int = 2) -> CapacityObservation:
    return CapacityObservation(per_replica * replicas, replicas, latency_s=SLO * 3, queue=10.0 * replicas)


def run(observations: list[CapacityObservation], start: Capacity | None = None) -> Capacity:
    capacity = start or Capacity.from_samples(())
    for seen in observations:
        capacity = learn(capacity, seen, SLO)
    return capacity


def test_unknown_until_confirmed_then_the_lowest_confirmed_load() -> None:
    assert run([healthy(100), healthy(300)]).per_replica is None
    learned = run([healthy(100), healthy(300), healthy(200)])
    assert (learned.per_replica, learned.source) == (100, "learned")
    assert run([healthy(100), healthy(300), healthy(200), healthy(250)]).per_replica == 200


def test_one_spike_cannot_raise_the_estimate() -> None:
    before = run([healthy(100)] * CONFIRMATIONS)
    after = run([healthy(10_000)], before)
    assert after.per_replica == before.per_replica == 100


def test_saturation_lowers_the_estimate_to_the_failing_load() -> None:
    learned = run([healthy(300)] * CONFIRMATIONS)
    assert run([saturated(200)], learned).per_replica == 200
    assert run([saturated(400)], learned).per_replica == 300, "failing above the estimate says nothing new"


@pytest.mark.parametrize(
    "seen",
    [
        pytest.param(CapacityObservation(None, 2, 0.5, 0.0), id="load-missing"),
        pytest.param(CapacityObservation(900.0, 2, None, 0.0), id="latency-missing"),
        pytest.param(CapacityObservation(900.0, 2, 0.5, math.nan), id="queue-nan"),
        pytest.param(CapacityObservation(900.0, 0, 0.5, 0.0), id="no-ready-replica"),
        pytest.param(CapacityObservation(0.0, 2, 0.5, 0.0), id="idle"),
        pytest.param(CapacityObservation(900.0, 2, SLO * 2, 0.0), id="slow-without-queue-a-burst"),
        pytest.param(CapacityObservation(900.0, 2, 0.5, 2 * SHORT_QUEUE_PER_REPLICA + 1), id="queue-within-slo"),
    ],
)
def test_cycles_that_show_nothing_change_nothing(seen: CapacityObservation) -> None:
    learned = run([healthy(300)] * CONFIRMATIONS)
    assert learn(learned, seen, SLO) == learned


def test_a_spec_capacity_is_never_learned_over() -> None:
    fixed = Capacity.from_spec(50.0)
    assert run([healthy(500)] * 5 + [saturated(10)], fixed) == fixed


def test_status_round_trip_and_garbage() -> None:
    learned = run([healthy(123.4567), healthy(200), healthy(300)])
    assert Capacity.from_status(learned.to_status()) == run([healthy(123.457), healthy(200), healthy(300)])
    for garbage in (None, {}, {"samples": "x"}, {"samples": [None]}, {"samples": [-1, math.inf, "a"]}):
        assert Capacity.from_status(garbage).per_replica is None  # type: ignore[arg-type]


signals = st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.floats(min_value=-10, max_value=1e6))
observations = st.builds(
    CapacityObservation, load=signals, ready_replicas=st.integers(0, 20), latency_s=signals, queue=signals
)


@given(st.lists(observations, max_size=40))
def test_never_above_what_enough_healthy_cycles_showed(seen: list[CapacityObservation]) -> None:
    """Whatever happens, the estimate was reached by at least CONFIRMATIONS healthy cycles."""
    capacity = run(seen)
    if capacity.per_replica is None:
        return
    shown = [
        o.load_per_replica
        for o in seen
        if o.complete and o.latency_s <= SLO and o.queue <= SHORT_QUEUE_PER_REPLICA * o.ready_replicas  # type: ignore[operator]
    ]
    assert sum(v >= capacity.per_replica for v in shown) >= CONFIRMATIONS


@given(st.lists(observations, max_size=40), observations)
def test_missing_data_never_grows_it_and_saturation_never_grows_it(
    history: list[CapacityObservation], seen: CapacityObservation
) -> None:
    before = run(history)
    after = learn(before, seen, SLO)
    grew = (after.per_replica or 0) > (before.per_replica or 0)
    if grew:
        assert seen.complete and seen.latency_s is not None and seen.latency_s <= SLO
    if not seen.complete:
        assert after == before
