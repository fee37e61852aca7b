"""Published streaming anomaly detectors (river, rrcf) as rivals of the infercast detector on NAB.

Each rival sees one value at a time, exactly as the infercast detector does, and gives a raw anomaly
score (higher = more anomalous) from the points before it: ``score_then_learn``. The multivariate ones
see the last ``SHINGLE`` values (the usual way to give a point detector a little context; 4 as in
rrcf's streaming example), min-max scaled online where the model expects features in [0, 1]. Every
rival runs with its library's defaults (rrcf: tree size 256 as in its example, ``RRCF_TREES`` trees
instead of its example's 40, for run time); nothing is tuned on NAB.

The river models are shingled by :mod:`forecasting.shingled`, the code through which the detector
uses HalfSpaceTrees as a member (river is a dependency of the package for that). rrcf is the
``bench`` extra (``pip install -e '.[bench]'``), never a dependency of the operator; this module must
not be imported by the package.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

from forecasting.shingled import SHINGLE, ShingledModel, half_space_trees, padded

RRCF_TREES = 10
RRCF_TREE_SIZE = 256


class Rival(Protocol):
    def score_then_learn(self, value: float) -> float:
        """Raw anomaly score of ``value`` given the points before it, then learn it."""
        ...

    def statistic(self, raw: float) -> float:
        """``raw`` as a non-negative statistic whose logarithm spreads its range (for a tail calibrator)."""
        ...


class RiverUnivariate:
    """A river "supervised" anomaly model that judges the value itself (``score_one(None, y)``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def score_then_learn(self, value: float) -> float:
        raw = float(self.model.score_one(None, value))
        self.model.learn_one(None, value)
        return raw

    def statistic(self, raw: float) -> float:
        return max(raw, 0.0)


class RobustRandomCutForest:
    """rrcf's streaming recipe: shingled points in ``RRCF_TREES`` trees of at most ``RRCF_TREE_SIZE`` points,
    the score being the mean collusive displacement (CoDisp) of the newest point."""

    def __init__(self, seed: int = 0) -> None:
        import numpy as np
        import rrcf

        np.random.seed(seed)  # rrcf draws its cuts from numpy's global generator
        self._trees = [rrcf.RCTree() for _ in range(RRCF_TREES)]
        self._shingle: deque[float] = deque(maxlen=SHINGLE)
        self._index = 0

    def score_then_learn(self, value: float) -> float:
        import numpy as np

        self._shingle.append(value)
        point = np.array(padded(self._shingle))
        total = 0.0
        for tree in self._trees:
            if len(tree.leaves) >= RRCF_TREE_SIZE:
                tree.forget_point(self._index - RRCF_TREE_SIZE)
            tree.insert_point(point, index=self._index)
            total += float(tree.codisp(self._index))
        self._index += 1
        return total / len(self._trees)

    def statistic(self, raw: float) -> float:
        return max(raw, 0.0)


def make_rival(name: str) -> Rival:
    """A fresh rival by name (see ``RIVALS``)."""
    from river import anomaly as river_anomaly
    from river import preprocessing

    anomaly: Any = river_anomaly  # river is partly unannotated (GaussianScorer)

    if name == "river-hst":
        return half_space_trees(seed=0)
    if name == "river-loda":
        return ShingledModel(anomaly.LODA(seed=0), bounded=False)
    if name == "river-ocsvm":
        return ShingledModel(preprocessing.StandardScaler() | anomaly.OneClassSVM(), bounded=False)
    if name == "river-lof":
        return ShingledModel(anomaly.LocalOutlierFactor(), bounded=False)
    if name == "river-sad":
        return RiverUnivariate(anomaly.StandardAbsoluteDeviation())
    if name == "river-gaussian":
        return RiverUnivariate(anomaly.GaussianScorer())
    if name == "rrcf":
        return RobustRandomCutForest()
    raise ValueError(f"unknown rival {name!r}; known: {', '.join(RIVALS)}")


RIVALS = ("river-hst", "river-loda", "river-ocsvm", "river-lof", "river-sad", "river-gaussian", "rrcf")


def unit_interval(raw: float) -> float:
    """A monotone map of any raw score into [0, 1] (NAB's results format); the judge's thresholds only
    depend on the order of scores, which this keeps."""
    if not math.isfinite(raw):
        return 1.0 if raw > 0 else 0.0
    return 0.5 + 0.5 * raw / (1.0 + abs(raw))
