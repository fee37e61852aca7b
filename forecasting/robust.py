"""Bounded-memory building blocks for streaming statistics: a sliding window, a tail calibrator and a
memory of recent shapes.

Both keep a fixed amount of state however long the stream runs, so a detector built from them can be
kept per series for thousands of series (see ``docs/detector.md``).
"""

from __future__ import annotations

import math
from collections import deque

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


def _median_in_place(values: np.ndarray) -> float:
    """The median of ``values``, partitioning the array itself (a scratch copy the caller owns)."""
    half = len(values) // 2
    if len(values) % 2:
        values.partition(half)
        return float(values[half])
    values.partition((half - 1, half))
    return float((values[half - 1] + values[half]) / 2.0)


def partition_median(values: np.ndarray) -> float:
    """The median of a non-empty array without NaN, as ``np.median`` computes it, at a fraction of its cost.

    Why not ``np.median``: its generic machinery (axis handling, NaN checks, a mean over the middle
    pair) costs several times the partition itself on the few hundred points a detector update
    looks at, and an update takes about thirty medians.
    """
    return _median_in_place(values.copy())


def median_and_scale(values: np.ndarray, floor: float) -> tuple[float, float]:
    """Median and MAD-based standard deviation of ``values``, the scale never below ``floor``.

    The floor keeps a constant (or quantised, mostly constant) stretch from producing a zero scale,
    which would make the first tiny change infinitely surprising. One scratch array serves both
    medians: the deviations are written over the partitioned copy.
    """
    scratch = values.copy()
    centre = _median_in_place(scratch)
    np.subtract(values, centre, out=scratch)
    np.abs(scratch, out=scratch)
    return centre, max(MAD_TO_SIGMA * _median_in_place(scratch), floor)


def trailing_mean(values: np.ndarray, k: int) -> float:
    """The mean of the last ``k`` values, bit for bit ``values[-k:].mean()`` without its generic machinery."""
    return float(np.add.reduce(values[-k:])) / k


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
        at_least = float(np.add.reduce(self._counts[b:]))
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


class ShapeMemory:
    """Past shapes (vectors of ``length`` values), to ask how far the current one is from any of them.

    Why nearest-neighbour novelty: "ordinary values in a new rhythm" (routine-size excursions that
    start recurring every few points, a burst after a long quiet spell) move no mean and no spread
    beyond what the series has already done, but the recent *sequence* of values has no close match
    in the past. The novelty is the distance (root mean square per coordinate) from the current shape
    to its nearest remembered shape, divided by the median of the same nearest-neighbour distance
    among the remembered shapes themselves: the raw distance shrinks as the memory fills (more
    candidates, closer matches), so calibrating it against its own past would judge today's shapes
    against distances measured when little was remembered; the ratio asks "farther than remembered
    shapes are from each other", which does not drift as the memory grows (the nonconformity of
    KNN-CAD's conformal detector).

    One shape in ``stride`` is remembered, and only once it no longer overlaps the newest shape
    (``length`` updates later): a shape always has a near twin in the shape one update earlier, which
    would make everything look familiar. At most ``size`` shapes are kept (the oldest is overwritten);
    a remembered shape's neighbour distance is only ever lowered by newer shapes, not raised when its
    neighbour is overwritten, which errs towards a smaller normaliser (a little more novelty) once the
    memory has wrapped around. ``min_shapes`` remembered shapes are needed before a novelty is given;
    ``floor`` bounds the normaliser below (a series that repeats itself exactly has neighbour
    distances of zero, and its first different shape should be very novel, not infinitely so).
    """

    def __init__(self, length: int, size: int, stride: int, min_shapes: int, floor: float) -> None:
        self.length = length
        self.stride = stride
        self.min_shapes = min_shapes
        self.floor = floor
        self._shapes = np.zeros((size, length))
        self._squared_norms = np.zeros(size)
        self._nearest = np.full(size, np.inf)
        self._typical_nearest = math.inf
        self._count = 0
        self._pending: deque[tuple[int, np.ndarray]] = deque()

    def novelty_then_learn(self, step: int, shape: np.ndarray) -> float | None:
        """Novelty of ``shape`` observed at update ``step`` (None while too few shapes are remembered).

        Shapes scheduled earlier that no longer overlap ``step`` join the memory first; then ``shape``
        is scheduled if ``step`` falls on the stride.
        """
        while self._pending and self._pending[0][0] + self.length <= step:
            self._remember(self._pending.popleft()[1])
        novelty = None
        remembered = min(self._count, len(self._shapes))
        if remembered >= self.min_shapes:
            nearest = math.sqrt(float(self._squared_distances(shape, remembered).min()) / self.length)
            novelty = nearest / max(self._typical_nearest, self.floor)
        if step % self.stride == 0:
            self._pending.append((step, shape.copy()))
        return novelty

    def _squared_distances(self, shape: np.ndarray, remembered: int) -> np.ndarray:
        """Squared distances from ``shape`` to the first ``remembered`` shapes.

        Expanded as |a|^2 - 2 a.b + |b|^2 with the norms kept: one matrix-vector product instead of
        a difference array per update (the scan is most of the statistic's cost).
        """
        products = self._shapes[:remembered] @ shape
        squared = self._squared_norms[:remembered] - 2.0 * products + float(shape @ shape)
        # Rounding can leave identical shapes slightly negative.
        return np.asarray(np.maximum(squared, 0.0))

    def _remember(self, shape: np.ndarray) -> None:
        slot = self._count % len(self._shapes)
        remembered = min(self._count, len(self._shapes))
        if remembered:
            distances = np.sqrt(self._squared_distances(shape, remembered) / self.length)
            if remembered == len(self._shapes):
                distances[slot] = np.inf  # the shape being overwritten is not a neighbour
            np.minimum(self._nearest[:remembered], distances, out=self._nearest[:remembered])
            self._nearest[slot] = distances.min()
        self._shapes[slot] = shape
        self._squared_norms[slot] = float(shape @ shape)
        self._count += 1
        # The normaliser only changes here, once per stride, so its median is not taken per update.
        self._typical_nearest = partition_median(self._nearest[: min(self._count, len(self._shapes))])


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
