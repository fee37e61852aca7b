"""Bounded-memory building blocks for streaming statistics: a sliding window and a tail calibrator.

Both keep a fixed amount of state however long the stream runs, so a detector built from them can be
kept per series for thousands of series (see ``docs/detector.md``).
"""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


class SlidingWindow:
    """The last ``size`` values, readable as one contiguous array in arrival order.

    Twice the size is allocated so appends are O(1) amortised: when the buffer is full the newest
    ``size - 1`` values are copied to the front once, instead of shifting on every append.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self._buffer = np.empty(2 * size)
        self._end = 0

    def append(self, value: float) -> None:
        if self._end == len(self._buffer):
            keep = self.size - 1
            self._buffer[:keep] = self._buffer[self._end - keep : self._end]
            self._end = keep
        self._buffer[self._end] = value
        self._end += 1

    def values(self) -> np.ndarray:
        """A read-only view, oldest first; valid until the next ``append``."""
        view = self._buffer[max(0, self._end - self.size) : self._end]
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return min(self._end, self.size)


def median_and_scale(values: np.ndarray, floor: float) -> tuple[float, float]:
    """Median and MAD-based standard deviation of ``values``, the scale never below ``floor``.

    The floor keeps a constant (or quantised, mostly constant) stretch from producing a zero scale,
    which would make the first tiny change infinitely surprising.
    """
    median = float(np.median(values))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    return median, max(scale, floor)


class TailCalibrator:
    """Turns a non-negative surprise statistic into an upper-tail probability, learned from its own past.

    Why: a robust z-score of 6 is rare on a well-behaved series and routine on a spiky one, so a fixed
    cut-off cannot serve every series. Each statistic is instead compared with the distribution of its
    own past values: ``p = P(past statistic >= current)``. That distribution is kept as a histogram of
    ``log1p(statistic)`` with exponentially decaying counts (bounded memory, slowly forgets regimes that
    are gone). Beyond the largest value seen, where counting says nothing, the tail is extrapolated as
    exponential in ``log1p(statistic)`` (a Pareto tail on the statistic, the peaks-over-threshold model
    with shape zero on the log scale) with its rate fitted to the top ``tail_mass`` of the history.
    """

    def __init__(self, n_bins: int, bin_width: float, tail_mass: float, memory: float) -> None:
        self.bin_width = bin_width
        self.tail_mass = tail_mass
        self.decay = 1.0 - 1.0 / memory
        self._counts = np.zeros(n_bins)
        self._centres = (np.arange(n_bins) + 0.5) * bin_width
        self.total = 0.0

    def _bin(self, log_statistic: float) -> int:
        return min(int(log_statistic / self.bin_width), len(self._counts) - 1)

    def pvalue(self, statistic: float) -> float:
        """Upper-tail probability of ``statistic`` under the history (1.0 while the history is empty)."""
        if self.total <= 0.0:
            return 1.0
        x = math.log1p(statistic)
        b = self._bin(x)
        at_least = float(self._counts[b:].sum())
        if at_least > 0.0:
            # The conformal p-value: the current value itself counts as one of the history.
            return (at_least + 1.0) / (self.total + 1.0)
        occupied = np.flatnonzero(self._counts)
        top = int(occupied[-1])
        cumulative = np.cumsum(self._counts[::-1])[::-1]
        start = int(occupied[cumulative[occupied] >= self.tail_mass * self.total][-1])
        weights = self._counts[start:]
        mean_excess = float((weights * (self._centres[start:] - self._centres[start])).sum() / weights.sum())
        rate = 1.0 / max(mean_excess, self.bin_width)
        beyond = x - (top + 1) * self.bin_width
        return math.exp(-rate * max(beyond, 0.0)) / (self.total + 1.0)

    def add(self, statistic: float) -> None:
        self._counts *= self.decay
        self._counts[self._bin(math.log1p(statistic))] += 1.0
        self.total = self.total * self.decay + 1.0


class PeriodicProfile:
    """The last value seen at each phase of a period (time of day, time of week), as a naive forecast.

    Why "the same time one period ago" rather than a smoothed profile: it needs one value per bucket,
    reacts to a changed pattern after one period, and it is unbiased, so residuals against it can be
    centred on zero. The forecast is only offered when the stored value is between half a period and
    one and a half periods old: older values describe a pattern that may be gone, younger ones are the
    current excursion itself (several points per bucket when sampling is faster than the bucket).
    """

    def __init__(self, period_seconds: float, buckets: int) -> None:
        self.period_seconds = period_seconds
        self.buckets = buckets
        self._values = np.full(buckets, np.nan)
        self._times = np.full(buckets, -np.inf)

    def forecast_then_learn(self, seconds: float, value: float) -> float | None:
        """The value one period before ``seconds`` (None if unknown), then store ``value`` in its place."""
        bucket = int(seconds % self.period_seconds * self.buckets // self.period_seconds)
        age = seconds - self._times[bucket]
        expected = float(self._values[bucket])
        self._values[bucket] = value
        self._times[bucket] = seconds
        if not 0.5 * self.period_seconds <= age <= 1.5 * self.period_seconds:
            return None
        return expected
