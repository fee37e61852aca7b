"""Streaming failure-pattern detector: one anomaly score in [0, 1] per new point, from the past only.

See ``docs/detector.md`` for the design and its measurements. In short, every update:

1. forecasts the point three ways, each a robust "what is normal now" estimate: the recent level
   (median of the last ``window`` points), the same time yesterday and the same time last week
   (:class:`forecasting.robust.PeriodicProfile`, each only once a full period of history exists);
2. measures the residuals at several time scales (the last point, and the mean of the last k points)
   in robust standard deviations (MAD of the recent window), so one spike, a level shift and a slow
   drift each move at least one statistic; and measures whether the recent spread grew against the
   reference spread (jitter, oscillation, flapping), which moves no mean;
3. converts each statistic into an upper-tail probability learned from that statistic's own past
   (:class:`forecasting.robust.TailCalibrator`), which makes scores comparable across series with
   very different noise, takes the smallest probability per family and corrects it with a weighted
   Bonferroni bound over the families (the four core questions weigh 1, the two auxiliary ones half:
   shape novelty, is the recent shape unlike any of the past weeks, and river's HalfSpaceTrees on
   the last four points, an ensemble member kept by leave-one-category-out on NAB), and reports its
   ``-log10`` scaled to [0, 1];
4. shapes the output for alerting: once a point reaches the alert level, every point of the next
   ``dead_time`` updates is held below it, so one incident raises one alert rather than a burst.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forecasting.robust import (
    PeriodicProfile,
    ShapeMemory,
    SlidingWindow,
    TailCalibrator,
    median_and_scale,
    partition_median,
    trailing_mean,
)
from forecasting.shingled import ShingledModel, half_space_trees

SECONDS_PER_DAY = 86_400
DAYS_PER_WEEK = 7
# Robust sigmas beyond which a deviation counts as "large" for the shape statistics: how far a point
# went is already the level family's business, so one spike must not decide the pattern.
DEVIATION_CLIP = 5.0
SHAPE_MIN_REMEMBERED = 50  # remembered shapes before a nearest-neighbour distance means anything
SHAPE_NOVELTY_FLOOR = 0.1  # robust sigmas: neighbour distances below this are "identical shapes"
# The calibrators' tail beyond the largest value seen is an exponential fitted on their top TAIL_MASS
# of values; an alert-level p-value is always such an extrapolation, so a statistic may raise the score
# only once that fit rests on MIN_TAIL_VALUES values (after 100 values it would rest on two).
TAIL_MASS = 0.02
MIN_TAIL_VALUES = 5
WARMUP = math.ceil(MIN_TAIL_VALUES / TAIL_MASS)  # 250 values


class _SeasonalResiduals:
    """Residuals of one series against one periodic profile, kept for the multi-scale statistics."""

    def __init__(self, period_seconds: float, buckets: int, scales: tuple[int, ...], window: int) -> None:
        self.profile = PeriodicProfile(period_seconds, buckets)
        self.scales = scales
        self.residuals = SlidingWindow(window + max(scales, default=1))

    def append(self, seconds: float, value: float) -> bool:
        """Learn the point; True when it had a forecast, i.e. a residual was appended."""
        expected = self.profile.forecast_then_learn(seconds, value)
        if expected is None:
            return False
        self.residuals.append(value - expected)
        return True


def make_calibrator(memory: float) -> TailCalibrator:
    """The tail calibrator of one statistic: 400 bins of 0.1 in ``log1p`` (values up to e^40), the top
    ``TAIL_MASS`` fitted beyond the largest value seen, counts decaying with ``memory`` updates."""
    return TailCalibrator(n_bins=400, bin_width=0.1, tail_mass=TAIL_MASS, memory=memory)


def combined_surprise(family_pvalues: list[tuple[float, float]]) -> float:
    """``-log10`` of the weighted Bonferroni bound over families: min over families of p x W / w (0 if none).

    Bonferroni over families, not over scales: the scales of one family are nested trailing windows of
    one series, so strongly dependent that counting each would over-correct and delay every detection;
    the families ask different questions. Weighted Bonferroni (each family tested at its weight's share
    W / w of the budget) is still a valid family-wise bound and lets a narrow auxiliary question in
    without diluting the core ones.
    """
    if not family_pvalues:
        return 0.0
    budget = sum(weight for _, weight in family_pvalues)
    corrected = min(pvalue * budget / weight for pvalue, weight in family_pvalues)
    return max(0.0, -math.log10(min(1.0, corrected)))


def alert_level_for_budget(alarms_per_day: float, updates_per_day: float, tests: int) -> float:
    """The alert level (``-log10 p``) at which ``tests`` calibrated tests, each updated ``updates_per_day``
    times a day, raise at most ``alarms_per_day`` false alarms a day on average.

    Bonferroni over tests and updates: an alarm needs at least one test beyond the level at one
    update, and a calibrated test is beyond it with probability ``10 ** -level`` on healthy data, so
    ``updates_per_day x tests x 10 ** -level`` bounds the expected alarms. It is a bound: consecutive
    updates of one series are dependent and their exceedances come in clusters that the alert
    shaping (and a policy's hysteresis) count once. The level follows from a budget a person can
    state ("one false alarm per backend a day"), where a level chosen on a benchmark follows from
    that benchmark's series (NAB's 2.60, the default of :class:`StreamingDetector`).
    """
    if not (alarms_per_day > 0 and updates_per_day > 0 and tests > 0):
        raise ValueError("need a positive budget, positive updates per day and at least one test")
    return max(0.0, math.log10(updates_per_day * tests / alarms_per_day))


class AlertShaper:
    """Maps a stream of surprises (``-log10 p``) to scores in [0, 1], one alert per incident.

    ``score = surprise / (2 * alert_level)`` clipped to 1, so an alert is a score of at least 0.5. Once
    a point reaches the alert level, every point of the next ``dead_time`` updates is halved and capped
    at a quarter: one incident raises one alert, not a burst an on-call human counts as many. Every
    point of a dead time is held, not only those above the level, or a slightly less surprising point
    of the same incident would score twice as high as a more surprising one, just under the level.
    """

    def __init__(self, alert_level: float, dead_time: int) -> None:
        self.alert_level = alert_level
        self.dead_time = dead_time
        self.since_alert_ = dead_time + 1

    def score(self, surprise: float) -> float:
        self.since_alert_ += 1
        if self.since_alert_ <= self.dead_time:
            surprise = 0.5 * min(surprise, self.alert_level)
        elif surprise >= self.alert_level:
            self.since_alert_ = 0
        return min(1.0, surprise / (2.0 * self.alert_level))


class StreamingDetector:
    """Anomaly score of each new point of one metric series, scikit-learn style.

    Parameters (one configuration for every series; the defaults are the tested one):

    window:
        points in the robust reference window (median and MAD of "normal").
    level_scales:
        lengths of the trailing means compared with the recent level (1 = the point itself).
    spread_scales:
        lengths of the trailing windows whose spread (MAD) is compared with the reference spread.
    seasonal_scales:
        the same as ``level_scales`` for the residuals against the time-of-day profile.
    weekly_scales:
        the same for the residuals against the time-of-week profile. Only sustained windows: single
        points are already judged against yesterday, and a week-old single value is a noisier forecast.
    shape_scales:
        lengths of the trailing shapes (the last k points in reference robust sigmas, clipped at
        ``DEVIATION_CLIP``) whose nearest-neighbour novelty is the auxiliary *shape* family (see
        :class:`forecasting.robust.ShapeMemory`).
    shape_memory:
        how many past shapes of each length are remembered.
    shape_stride:
        one shape in ``shape_stride`` updates is remembered (2,000 shapes every 4 updates: four weeks
        of 5-minute points).
    auxiliary_weight:
        the share of the false-alarm budget of each auxiliary family (shapes, trees) relative to a core
        family (weight 1): the shape family re-asks the level and irregularity questions of a recent
        sequence against weeks of them, and the trees of the last four points together, so each gets
        a smaller share and opening it costs the core families little (see :meth:`update`).
    tree_member:
        whether river's HalfSpaceTrees (:func:`forecasting.shingled.half_space_trees`: its defaults,
        the last four points min-max scaled) is an auxiliary family, its score ``-log(1 - s)``
        calibrated like every statistic. Kept because it raised the leave-one-category-out score on
        NAB beyond the spread across neighbouring alert levels (``docs/detector.md``); False gives the
        detector without it.
    profile_buckets:
        time-of-day buckets of the daily profile (288 = 5 minutes each); the weekly profile has
        seven times as many, of the same width.
    min_history:
        points a reference window needs before its statistic is computed at all.
    warmup:
        past values a statistic's calibrator needs before that statistic may raise the score
        (a tail probability learned from a handful of values means nothing): by default enough for
        the tail fit to rest on ``MIN_TAIL_VALUES`` values (``WARMUP``, 250).
    memory:
        effective length, in updates, of the calibrators' exponentially decaying history (2,016:
        a week of 5-minute points). Bounded so that a score means the same after a week as after a
        month: a value beyond every value in a history of n has the conformal p-value 1 / (n + 1),
        so with an unbounded history the surprise of a new record grows with log10 of the time the
        detector has run, and one alert level would alert on records in long series and not in
        short ones (see ``docs/detector.md``, fifth round).
    alert_level:
        ``-log10`` of the corrected tail probability that counts as an alert; the score is
        ``-log10(p) / (2 * alert_level)`` clipped to 1, so an alert is a score of at least 0.5.
        2.60 is the level that leave-one-category-out on NAB chooses on the pooled categories (each
        fold chose 2.50 to 2.60 on the other three); with the default memory and families it is about
        the corrected surprise of a value beyond everything the calibrators remember, log10(2,017 / 5),
        5 being the families' total weight.
    dead_time:
        updates after an alert during which the score is held below the alert level.

    The detector is the state of one series: keep one instance per series and feed it points in
    time order with :meth:`update`. Memory is bounded whatever the stream length: three sliding
    windows, the daily and weekly profiles, two memories of shapes (2,000 x (8 + 16) values) and one
    400-bin histogram per statistic, about 75,000 floats (~600 KB), and the trees' member (ten trees
    of 511 nodes counting the points of windows of 250, river's Python objects: ~1.2 MB, most of a
    detector's ~1.8 MB). One update costs O(window + shape_memory x shape length): about two medians
    over the window per statistic, one nearest-neighbour scan of each memory of shapes and one walk
    down each tree (see ``docs/detector.md`` for the measured time). NaN/inf
    values score 0 and leave the state unchanged.
    """

    def __init__(
        self,
        window: int = 200,
        level_scales: tuple[int, ...] = (1, 4, 16, 64),
        spread_scales: tuple[int, ...] = (16, 64),
        seasonal_scales: tuple[int, ...] = (1, 16, 64),
        weekly_scales: tuple[int, ...] = (16, 64),
        shape_scales: tuple[int, ...] = (8, 16),
        shape_memory: int = 2000,
        shape_stride: int = 4,
        auxiliary_weight: float = 0.5,
        tree_member: bool = True,
        profile_buckets: int = 288,
        min_history: int = 50,
        warmup: int = WARMUP,
        memory: float = 2016.0,
        alert_level: float = 2.60,
        dead_time: int = 144,
    ) -> None:
        self.window = window
        self.level_scales = level_scales
        self.spread_scales = spread_scales
        self.seasonal_scales = seasonal_scales
        self.weekly_scales = weekly_scales
        self.shape_scales = shape_scales
        self.shape_memory = shape_memory
        self.shape_stride = shape_stride
        self.auxiliary_weight = auxiliary_weight
        self.tree_member = tree_member
        self.profile_buckets = profile_buckets
        self.min_history = min_history
        self.warmup = warmup
        self.memory = memory
        self.alert_level = alert_level
        self.dead_time = dead_time
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (the series restarted or its meaning changed)."""
        self.values_ = SlidingWindow(self.window + max(self.level_scales + self.spread_scales + self.shape_scales))
        self.seasons_ = [
            _SeasonalResiduals(SECONDS_PER_DAY, self.profile_buckets, self.seasonal_scales, self.window),
            _SeasonalResiduals(
                DAYS_PER_WEEK * SECONDS_PER_DAY,
                DAYS_PER_WEEK * self.profile_buckets,
                self.weekly_scales,
                self.window,
            ),
        ]
        self.shape_memories_ = [
            ShapeMemory(k, self.shape_memory, self.shape_stride, SHAPE_MIN_REMEMBERED, SHAPE_NOVELTY_FLOOR)
            for k in self.shape_scales
        ]
        self.member_: ShingledModel | None = half_space_trees() if self.tree_member else None
        # In the order _statistics returns them: level, irregularity, daily, weekly, then the auxiliary ones.
        core_sizes = [len(self.level_scales), len(self.spread_scales)]
        core_sizes += [len(season.scales) for season in self.seasons_]
        auxiliary_sizes = [len(self.shape_memories_)]
        auxiliary_sizes += [1] if self.member_ is not None else []
        family_sizes = core_sizes + auxiliary_sizes
        self.family_weights_ = [1.0] * len(core_sizes) + [self.auxiliary_weight] * len(auxiliary_sizes)
        self.calibrators_ = [[make_calibrator(self.memory) for _ in range(size)] for size in family_sizes]
        self.n_seen_ = 0
        self.shaper_ = AlertShaper(self.alert_level, self.dead_time)

    def _statistics(self, seconds: float, value: float) -> list[list[float | None]]:
        """The surprise statistics of the newest point, by family (None: not computable yet).

        A family is one question asked at several time scales: has the level moved, has the series
        become more irregular (wider spread), is it unlike yesterday, is it unlike last week;
        and the auxiliary ones: is the recent shape unlike any remembered shape; do the last four
        points fall in a region the trees have rarely seen.
        """
        level = self.values_.values()
        floor = self._scale_floor(level)
        references = self._references(level, self.level_scales + self.spread_scales + self.shape_scales, floor)
        families = [
            self._shift_statistics(level, self.level_scales, references),
            self._spread_statistics(level, references, floor),
        ]
        for season in self.seasons_:
            if season.append(seconds, value):
                residuals = season.residuals.values()
                # The profile's value is an unbiased forecast, so residuals are centred on zero, not
                # on their recent median: a slow drift accumulates an offset against the profile
                # that a moving reference would follow.
                families.append(
                    self._shift_statistics(
                        residuals, season.scales, self._references(residuals, season.scales, floor), centre=0.0
                    )
                )
            else:
                families.append([None] * len(season.scales))
        families.append(self._shape_statistics(level, references))
        if self.member_ is not None:
            families.append([self.member_.statistic(self.member_.score_then_learn(value))])
        return families

    def _references(
        self, series: np.ndarray, scales: tuple[int, ...], floor: float
    ) -> dict[int, tuple[float, float] | None]:
        """For each k: median and robust scale of the ``window`` points before the last k.

        The reference excludes the k points it is compared with, so a level shift or a burst of
        jitter does not hide in its own reference. None while there are too few points.
        """
        return {
            k: median_and_scale(series[-self.window - k : -k], floor) if len(series) >= k + self.min_history else None
            for k in set(scales)
        }

    @staticmethod
    def _shift_statistics(
        series: np.ndarray,
        scales: tuple[int, ...],
        references: dict[int, tuple[float, float] | None],
        centre: float | None = None,
    ) -> list[float | None]:
        """For each k: how far the mean of the last k points is from the reference, in robust sigmas."""
        statistics: list[float | None] = []
        for k in scales:
            reference = references[k]
            if reference is None:
                statistics.append(None)
                continue
            median, scale = reference
            expected = median if centre is None else centre
            statistics.append(abs(trailing_mean(series, k) - expected) / scale)
        return statistics

    def _spread_statistics(
        self, series: np.ndarray, references: dict[int, tuple[float, float] | None], floor: float
    ) -> list[float | None]:
        """Irregularity: for each spread scale k, log of how much wider the last k points spread than the
        reference (0 if narrower).

        Only growth counts: a series that goes quiet is usually a service idling, and a stuck metric
        is already a level shift against the daily profile.
        """
        statistics: list[float | None] = []
        for k in self.spread_scales:
            reference = references[k]
            if reference is None:
                statistics.append(None)
                continue
            recent_scale = median_and_scale(series[-k:], floor)[1]
            statistics.append(max(0.0, math.log(recent_scale / reference[1])))
        return statistics

    def _shape_statistics(
        self, series: np.ndarray, references: dict[int, tuple[float, float] | None]
    ) -> list[float | None]:
        """For each shape scale k: novelty of the last k points, standardised against their reference.

        Standardising against the reference (not the shape's own mean and spread) keeps "a burst from
        a quiet spell" different from "a wiggle at the usual level"; clipping keeps the question about
        the pattern, not the size.
        """
        statistics: list[float | None] = []
        for k, memory in zip(self.shape_scales, self.shape_memories_, strict=True):
            reference = references[k]
            if reference is None:
                statistics.append(None)
                continue
            median, scale = reference
            shape = np.clip((series[-k:] - median) / scale, -DEVIATION_CLIP, DEVIATION_CLIP)
            statistics.append(memory.novelty_then_learn(self.n_seen_, shape))
        return statistics

    @staticmethod
    def _scale_floor(values: np.ndarray) -> float:
        """A scale below a thousandth of the level is noise-free for monitoring purposes."""
        return 1e-3 * partition_median(np.abs(values)) + 1e-9

    def update(self, timestamp: pd.Timestamp, value: float) -> float:
        """Score ``value`` observed at ``timestamp`` (after every earlier point), then learn from it."""
        if not math.isfinite(value):
            return 0.0
        return self.shaper_.score(combined_surprise(self.family_pvalues(timestamp, value)))

    def family_pvalues(self, timestamp: pd.Timestamp, value: float) -> list[tuple[float, float]]:
        """Learn the finite ``value`` and return (smallest p-value, weight) of every family that has evidence.

        The step of :meth:`update` before fusion and alert shaping, public so that a benchmark can fuse
        other evidence by the same rule (:func:`combined_surprise`) or shape it at other alert levels.
        """
        self.values_.append(value)
        self.n_seen_ += 1
        families = self._statistics(timestamp.timestamp(), value)
        family_pvalues: list[tuple[float, float]] = []
        for calibrators, statistics, weight in zip(self.calibrators_, families, self.family_weights_, strict=True):
            pvalues = []
            for calibrator, statistic in zip(calibrators, statistics, strict=True):
                if statistic is None:
                    continue
                if calibrator.total >= self.warmup:
                    pvalues.append(calibrator.pvalue(statistic))
                calibrator.add(statistic)
            if pvalues:
                family_pvalues.append((min(pvalues), weight))
        return family_pvalues

    def score_series(self, series: pd.Series) -> np.ndarray:
        """Stream a whole series through :meth:`update` (in its order) and return every score."""
        index = pd.DatetimeIndex(series.index)
        values = series.to_numpy(dtype=float)
        return np.array([self.update(t, float(v)) for t, v in zip(index, values, strict=True)])
