"""River's HalfSpaceTrees on a shingle, and its place in the detector as one more auxiliary family."""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from forecasting.detector import WARMUP, StreamingDetector
from forecasting.shingled import SHINGLE, half_space_trees, padded


def test_a_short_shingle_is_padded_with_its_oldest_value() -> None:
    assert padded(deque([3.0], maxlen=SHINGLE)) == [3.0] * SHINGLE
    assert padded(deque([1.0, 2.0], maxlen=SHINGLE)) == [1.0, 1.0, 1.0, 2.0]
    assert padded(deque([1.0, 2.0, 3.0, 4.0, 5.0], maxlen=SHINGLE)) == [2.0, 3.0, 4.0, 5.0]


def test_the_trees_find_a_shingle_in_an_empty_region_rarer_than_the_usual_ones() -> None:
    """After 1,000 points of a sine wave, a jump inside the wave's range is still a shingle (four
    consecutive values) the trees have never seen: its region is thinner than the usual ones'."""
    model = half_space_trees()
    wave = np.sin(np.arange(1_000) * 2 * np.pi / 50)
    usual = [model.statistic(model.score_then_learn(float(v))) for v in wave]
    # Three points of the wave's peak, then its trough: both values are familiar, the step is not.
    jump = [model.statistic(model.score_then_learn(v)) for v in (1.0, 1.0, 1.0, -1.0)]
    assert all(s >= 0.0 for s in usual + jump)
    assert jump[-1] > float(np.quantile(usual[-500:], 0.99)), (jump, max(usual[-500:]))


def test_the_member_adds_one_auxiliary_family_and_changes_no_other() -> None:
    index = pd.date_range("2024-03-01", periods=WARMUP + 100, freq="5min")
    values = 50.0 + np.random.default_rng(4).normal(0.0, 1.0, len(index))
    with_trees, without = StreamingDetector(), StreamingDetector(tree_member=False)
    for timestamp, value in zip(index, values, strict=True):
        own, other = with_trees.family_pvalues(timestamp, float(value)), without.family_pvalues(timestamp, float(value))
    # The trees' family has its own calibrator, which gives p-values once it has WARMUP values.
    assert own[: len(other)] == other
    assert len(own) == len(other) + 1
    pvalue, weight = own[-1]
    assert 0.0 < pvalue <= 1.0 and weight == with_trees.auxiliary_weight
    assert with_trees.family_weights_ == [*without.family_weights_, with_trees.auxiliary_weight]
