"""River's multivariate anomaly models on one series: each point judged with the ``SHINGLE - 1`` before it.

Why a shingle: a point detector given a little context sees "ordinary values in an unusual order"
as well as unusual values (4 points, as in rrcf's streaming example). Why river: its models are the
published streaming detectors; wrapping them is this module's whole job, so that
:class:`forecasting.detector.StreamingDetector` can use HalfSpaceTrees as an ensemble member (kept by
leave-one-category-out on NAB, ``docs/detector.md``) and ``benchmarks/nab_rivals.py`` can run the
others as rivals through the same code. River is imported when a model is made, not with this
module: importing it costs about 0.2 s, which only a process that builds detectors should pay.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

SHINGLE = 4


def padded(shingle: deque[float]) -> list[float]:
    """The shingle's values, oldest first, padded at the front with the oldest one to ``SHINGLE`` values."""
    return [shingle[0]] * (SHINGLE - len(shingle)) + list(shingle)


class ShingledModel:
    """A river unsupervised anomaly model over the last ``SHINGLE`` values of one stream.

    ``bounded``: the model's raw score is in [0, 1] with 1 the most anomalous (HalfSpaceTrees).
    Until ``SHINGLE`` values have arrived the shingle is :func:`padded`.
    """

    def __init__(self, model: Any, bounded: bool) -> None:
        self.model = model
        self.bounded = bounded
        self._shingle: deque[float] = deque(maxlen=SHINGLE)

    def score_then_learn(self, value: float) -> float:
        """Raw anomaly score of ``value`` given the points before it, then learn it."""
        self._shingle.append(value)
        features = dict(enumerate(padded(self._shingle)))
        raw = float(self.model.score_one(features))
        self.model.learn_one(features)
        return raw

    def statistic(self, raw: float) -> float:
        """``raw`` as a non-negative statistic whose logarithm spreads its range (for a tail calibrator).

        HalfSpaceTrees scores 1 - mass / largest mass, so ``-log(1 - raw)`` is the log of how many
        times thinner the point's region is than the densest one; other models' scores are >= 0.
        """
        return -math.log(max(1.0 - raw, 1e-12)) if self.bounded else max(raw, 0.0)


def half_space_trees(seed: int = 0) -> ShingledModel:
    """River's HalfSpaceTrees with its defaults, on the shingle min-max scaled online (it needs [0, 1])."""
    from river import anomaly, preprocessing

    return ShingledModel(preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=seed), bounded=True)
