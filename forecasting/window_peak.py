"""WindowPeak: the peak of the whole coming window, from the recent level and past windows' rises.

A replica count must cover the highest load of the time it takes a new replica to serve (the
lead time), so what is needed is one number per window, not one per step. Taking the highest of
per-step quantiles stacks one quantile per step and over-provisions a smooth load; and a
per-step model cannot learn that a load which was silent a minute ago bursts to many replicas.
The distribution of how far a window's peak rose above the level before it carries both: it is
narrow on a smooth load and wide on a bursty one, whatever the load is doing at the moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, NotFittedError, check_request, future_index, make_forecast
from forecasting.hygiene import needs_no_repair, regularize
from forecasting.level import DampedTrend


class WindowPeak:
    """The recent level plus a recency-weighted quantile of past windows' excess over their level.

    At every past origin ``t`` (every ``stride`` steps back from the newest one that has a full
    window after it) the *excess* is the peak of the ``horizon`` values from ``t`` minus the mean
    of the ``level`` values before ``t``. The forecast at level ``q`` is the mean of the last
    ``level`` values plus the weighted ``q``-quantile of the excesses, an excess ``half_life``
    steps older than the newest weighing half as much: bursts recur, so recent ones tell most,
    and a burst an hour ago still widens the band now that the load is quiet. ``mean`` is the
    level plus the weighted mean excess (the expected window peak, not the expected load).

    Every step of the returned arrays carries the same value, the whole window's: the forecast
    is of the peak of the ``horizon`` steps after the history, so it depends on ``horizon``.

    Hyperparameters are in steps of the fitted series (the defaults suit a 1-s series: a 2-min
    level, origins 15 s apart, a 30-min half-life, 4 h of memory). ``memory`` bounds how far
    before the newest origin origins are taken (8 half-lives: older weights are below 1/256),
    which also bounds the cost. With fewer than ``min_origins`` origins (a history shorter than
    ``level + horizon`` and a few strides) there is no excess distribution to speak of: the
    damped trend answers, per step, with ``fallback`` set.
    """

    name: ClassVar[str] = "window_peak"

    def __init__(
        self,
        level: int = 120,
        stride: int = 15,
        half_life: float = 1800.0,
        memory: int = 14_400,
        min_origins: int = 4,
    ) -> None:
        self.level = level
        self.stride = stride
        self.half_life = half_life
        self.memory = memory
        self.min_origins = min_origins

    def fit(self, y: pd.Series) -> Self:
        """Keep the regularised history: the excesses depend on the horizon, known at ``predict``."""
        if self.level < 1 or self.stride < 1 or self.memory < 0 or not self.half_life > 0:
            raise ValueError("level and stride must be >= 1, memory >= 0 and half_life > 0")
        clean = regularize(y, min_points=2)
        self.history_ = clean.values
        self.step_ = clean.step
        self.last_ = clean.values.index[-1]
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "history_"):
            raise NotFittedError("WindowPeak.predict called before fit")
        excesses = self.excesses(self.history_.to_numpy(), horizon)
        if excesses is None:
            stand_in = DampedTrend().fit(self.history_).predict(horizon, levels)
            return make_forecast(stand_in.index, stand_in.mean, stand_in.quantiles, stand_in.model, fallback=True)
        now_level, excess, weights = excesses
        mean = np.full(horizon, now_level + np.average(excess, weights=weights))
        bands = {q: np.full(horizon, now_level + weighted_quantile(excess, weights, q)) for q in levels}
        return make_forecast(future_index(self.last_, self.step_, horizon), mean, bands, self.name)

    def peak_quantile(self, values: np.ndarray, step: pd.Timedelta, horizon: int, level: float) -> float | None:
        """The ``level`` quantile of the peak of the ``horizon`` steps after ``values`` (samples
        ``step`` apart, oldest first): what :meth:`fit` on that series then :meth:`predict` give,
        ``None`` where ``predict`` falls back (too few origins). A caller that forecasts every few
        seconds (the load forecaster) skips pandas when the samples are finite and on their own grid,
        where :func:`regularize` changes nothing; otherwise this goes through :meth:`fit`."""
        check_request(horizon, (level,))
        if len(values) < 2 or not needs_no_repair(values, step):
            index = pd.date_range(end=pd.Timestamp(0), periods=len(values), freq=step)
            forecast = self.fit(pd.Series(values, index=index, dtype=float)).predict(horizon, (level,))
            return None if forecast.fallback else float(forecast.quantile(level)[0])
        excesses = self.excesses(np.asarray(values, dtype=float), horizon)
        if excesses is None:
            return None
        now_level, excess, weights = excesses
        return float(now_level + weighted_quantile(excess, weights, level))

    def excesses(self, values: np.ndarray, horizon: int) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The level now, each origin's excess and its weight, for ``horizon``; ``None`` with fewer
        than ``min_origins`` origins. ``values`` are the history, oldest first."""
        if self.level < 1 or self.stride < 1 or self.memory < 0 or not self.half_life > 0:
            raise ValueError("level and stride must be >= 1, memory >= 0 and half_life > 0")
        values = values[len(values) - min(len(values), self.memory + horizon + self.level) :]
        # Origins with a full level window before them and a full window after, newest first.
        origins = np.arange(len(values) - horizon, self.level - 1, -self.stride)[::-1]
        if len(origins) < self.min_origins:
            return None
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        peaks = window_max(values, horizon, int(origins[0]), self.stride, len(origins))
        excess = peaks - (cumulative[origins] - cumulative[origins - self.level]) / self.level
        weights = 0.5 ** ((len(values) - horizon - origins) / self.half_life)
        now_level = (cumulative[-1] - cumulative[-1 - self.level]) / self.level
        return float(now_level), excess, weights


def weighted_quantile(values: np.ndarray, weights: np.ndarray, level: float) -> float:
    """The smallest value whose share of the total weight at or below it reaches ``level``.

    No interpolation between values: the answer is always an excess that was seen.
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, level * cumulative[-1])])


def window_max(values: np.ndarray, width: int, first: int, stride: int, count: int) -> np.ndarray:
    """``values[i : i + width].max()`` for the ``count`` windows starting at ``first``, ``first +
    stride``, ... (each inside ``values``), without reading a window element by element.

    A window is ``width // stride`` whole blocks of ``stride`` values, the blocks starting at the
    windows' starts, and the first ``width % stride`` values of the block after them: the maximum
    of each block, then of each run of blocks (by doubling), then with each tail. Numpy reduces a
    short axis slowly, so blocks are reduced column by column. Exact: maxima, never sums.
    """
    span = values[first : first + stride * (count - 1) + width]
    blocks_each, tail = divmod(width, stride)
    result = np.full(count, -np.inf)
    if blocks_each:
        blocks = _column_max(span[: (count - 1 + blocks_each) * stride].reshape(-1, stride), stride)
        result = _run_max(blocks, blocks_each)
    if tail:
        rest = np.full(count * stride, -np.inf)
        after = span[blocks_each * stride :]
        rest[: len(after)] = after
        result = np.maximum(result, _column_max(rest.reshape(count, stride), tail))
    return result


def _column_max(grid: np.ndarray, columns: int) -> np.ndarray:
    """The maximum of the first ``columns`` columns of each row of ``grid``."""
    result = grid[:, 0].copy()
    for column in range(1, columns):
        np.maximum(result, grid[:, column], out=result)
    return result


def _run_max(values: np.ndarray, length: int) -> np.ndarray:
    """``values[i : i + length].max()`` for every ``i``: runs of doubling length, then two that overlap."""
    result, run = values, 1
    while 2 * run <= length:
        result = np.maximum(result[:-run], result[run:])  # result[i]: the maximum of values[i : i + 2 run]
        run *= 2
    if run < length:
        result = np.maximum(result[: len(result) - (length - run)], result[length - run :])
    return result
