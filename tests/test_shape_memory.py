"""ShapeMemory: nearest-neighbour novelty of the recent shape, normalised by the memory's own spacing."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.robust import ShapeMemory, partition_median


def test_a_shape_is_remembered_only_once_it_no_longer_overlaps_the_newest() -> None:
    memory = ShapeMemory(length=4, size=10, stride=1, min_shapes=1, floor=0.1)
    first = np.array([0.0, 1.0, 0.0, -1.0])
    # Steps 0-3 overlap the shape of step 0: nothing is remembered yet, so there is no novelty.
    assert [memory.novelty_then_learn(step, first) for step in range(4)] == [None] * 4
    # At step 4 the shape of step 0 joins the memory: the same shape is then at distance 0.
    assert memory.novelty_then_learn(4, first) == 0.0


def test_a_recurring_shape_is_familiar_and_a_new_rhythm_is_novel() -> None:
    rng = np.random.default_rng(0)
    memory = ShapeMemory(length=16, size=500, stride=4, min_shapes=50, floor=0.1)
    pulse = np.zeros(16)
    pulse[::8] = 5.0  # a routine-size excursion every 8 points
    novelties = []
    for step in range(2000):
        novelty = memory.novelty_then_learn(step, pulse + rng.normal(0.0, 0.3, 16))
        if novelty is not None:
            novelties.append(novelty)
    rhythm = np.zeros(16)
    rhythm[::2] = 5.0  # the same size every other point
    new = memory.novelty_then_learn(2000, rhythm + rng.normal(0.0, 0.3, 16))
    assert new is not None
    assert new > 5.0 * max(novelties[-500:])


@pytest.mark.parametrize("length", [8, 16])
def test_novelty_does_not_shrink_as_the_memory_fills(length: int) -> None:
    # Raw nearest-neighbour distances of noise shapes shrink as more shapes are remembered; divided by
    # the memory's typical neighbour distance they stay near 1, so a calibrator of the novelty does not
    # judge today's shapes against distances measured when little was remembered.
    rng = np.random.default_rng(1)
    memory = ShapeMemory(length=length, size=2000, stride=1, min_shapes=50, floor=0.1)
    novelties = [memory.novelty_then_learn(step, rng.normal(size=length)) for step in range(3000)]
    early = partition_median(np.array([n for n in novelties[100:300] if n is not None]))
    late = partition_median(np.array([n for n in novelties[2800:] if n is not None]))
    assert 0.8 < early < 1.25
    assert 0.8 < late < 1.25


@pytest.mark.parametrize("size", [1, 2, 7, 200, 201])
def test_partition_median_is_numpy_median(size: int) -> None:
    values = np.random.default_rng(size).normal(size=size)
    assert partition_median(values) == float(np.median(values))
