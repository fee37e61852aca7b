"""Streaming failure-pattern detector: one anomaly score in [0, 1] per new point, from the past only.

See ``docs/detector.md`` for the design and its measurements. In short, every update:

1. forecasts the point two ways, each a robust "what is normal now" estimate:
   the recent level (median of the last ``window`` points) and the same time yesterday
   (a time-of-day profile, only once the series has a full day of history);
2. measures the residuals at several time scales (the last point, and the mean of the last k points)
   in robust standard deviations (MAD of the recent window), so one spike, a level shift and a slow
   drift each move at least one statistic;
3. converts each statistic into an upper-tail probability learned from that statistic's own past
   (:class:`forecasting.robust.TailCalibrator`), which makes scores comparable across series with
   very different noise, takes the smallest probability (Bonferroni-corrected for the number of
   statistics) and reports its ``-log10`` scaled to [0, 1];
4. shapes the output for alerting: once a point reaches the alert level, later points stay below it
   for ``dead_time`` updates, so one incident raises one alert rather than a burst.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forecasting.robust import SlidingWindow, TailCalibrator, median_and_scale

SECONDS_PER_DAY = 86_400


class StreamingDetector:
    """Anomaly score of each new point of one metric series, scikit-learn style.

    Parameters (one configuration for every series; the defaults are the tested one):

    window:
        points in the robust reference window (median and MAD of "normal").
    level_scales:
        lengths of the trailing means compared with the recent level (1 = the point itself).
    seasonal_scales:
        the same for the residuals against the time-of-day profile.
    profile_buckets:
        time-of-day buckets of the daily profile (288 = 5 minutes each).
    min_history:
        points a reference window needs before its statistic is computed at all.
    warmup:
        past values a statistic's calibrator needs before that statistic may raise the score
        (a tail probability learned from a handful of values means nothing).
    memory:
        effective length, in updates, of the calibrators' exponentially decaying history.
    alert_level:
        ``-log10`` of the corrected tail probability that counts as an alert; the score is
        ``-log10(p) / (2 * alert_level)`` clipped to 1, so an alert is a score of at least 0.5.
    dead_time:
        updates after an alert during which the score is held below the alert level.

    The detector is the state of one series: keep one instance per series and feed it points in
    time order with :meth:`update`. Memory is bounded whatever the stream length: two sliding
    windows, the daily profile and one 400-bin histogram per statistic, about 7,000 floats (~60 KB).
    One update costs O(window): two medians over the window per statistic (~0.3 ms measured, see
    ``docs/detector.md``). NaN/inf values score 0 and leave the state unchanged.
    """

    def __init__(
        self,
        window: int = 200,
        level_scales: tuple[int, ...] = (1, 4, 16, 64),
        seasonal_scales: tuple[int, ...] = (1, 16, 64),
        profile_buckets: int = 288,
        min_history: int = 50,
        warmup: int = 100,
        memory: float = 50_000.0,
        alert_level: float = 2.5,
        dead_time: int = 144,
    ) -> None:
        self.window = window
        self.level_scales = level_scales
        self.seasonal_scales = seasonal_scales
        self.profile_buckets = profile_buckets
        self.min_history = min_history
        self.warmup = warmup
        self.memory = memory
        self.alert_level = alert_level
        self.dead_time = dead_time
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (the series restarted or its meaning changed)."""
        longest = max(self.level_scales)
        self.values_ = SlidingWindow(self.window + longest)
        self.residuals_ = SlidingWindow(self.window + max(self.seasonal_scales))
        self.profile_ = np.full(self.profile_buckets, np.nan)
        self.profile_time_ = np.full(self.profile_buckets, -np.inf)
        n_statistics = len(self.level_scales) + len(self.seasonal_scales)
        self.calibrators_ = [
            TailCalibrator(n_bins=400, bin_width=0.1, tail_mass=0.02, memory=self.memory)
            for _ in range(n_statistics)
        ]
        self.n_seen_ = 0
        self.since_alert_ = self.dead_time + 1

    def _level_statistics(self) -> list[float | None]:
        return self._scale_statistics(self.values_.values(), self.level_scales, self.values_.values())

    def _seasonal_statistics(self, seconds: float, value: float) -> list[float | None]:
        """Residuals against the value at this time of day yesterday; None until a day is known."""
        bucket = int(seconds % SECONDS_PER_DAY * self.profile_buckets // SECONDS_PER_DAY)
        age = seconds - self.profile_time_[bucket]
        expected = self.profile_[bucket]
        self.profile_[bucket] = value
        self.profile_time_[bucket] = seconds
        if not 0.5 * SECONDS_PER_DAY <= age <= 1.5 * SECONDS_PER_DAY:
            return [None] * len(self.seasonal_scales)
        self.residuals_.append(value - expected)
        # Yesterday's value is an unbiased forecast, so residuals are centred on zero, not on their
        # recent median: a slow drift accumulates an offset against yesterday that a moving
        # reference would follow.
        return self._scale_statistics(
            self.residuals_.values(), self.seasonal_scales, self.values_.values(), centre=0.0
        )

    def _scale_statistics(
        self, series: np.ndarray, scales: tuple[int, ...], level: np.ndarray, centre: float | None = None
    ) -> list[float | None]:
        """For each k: how far the mean of the last k points is from the ``window`` points before them.

        The reference excludes the k points it is compared with, so a level shift does not hide in
        its own reference; distances are in robust standard deviations (MAD).
        """
        floor = self._scale_floor(level)
        statistics: list[float | None] = []
        for k in scales:
            if len(series) < k + self.min_history:
                statistics.append(None)
                continue
            reference = series[-self.window - k : -k]
            median, scale = median_and_scale(reference, floor)
            expected = median if centre is None else centre
            statistics.append(abs(float(series[-k:].mean()) - expected) / scale)
        return statistics

    @staticmethod
    def _scale_floor(values: np.ndarray) -> float:
        """A scale below a thousandth of the level is noise-free for monitoring purposes."""
        return 1e-3 * float(np.median(np.abs(values))) + 1e-9

    def update(self, timestamp: pd.Timestamp, value: float) -> float:
        """Score ``value`` observed at ``timestamp`` (after every earlier point), then learn from it."""
        if not math.isfinite(value):
            return 0.0
        self.values_.append(value)
        self.n_seen_ += 1
        self.since_alert_ += 1
        statistics = self._level_statistics() + self._seasonal_statistics(timestamp.timestamp(), value)

        pvalues = []
        for calibrator, statistic in zip(self.calibrators_, statistics, strict=True):
            if statistic is None:
                continue
            if calibrator.total >= self.warmup:
                pvalues.append(calibrator.pvalue(statistic))
            calibrator.add(statistic)
        if not pvalues:
            return 0.0
        surprise = max(0.0, -math.log10(min(1.0, min(pvalues) * len(pvalues))))
        return self._shape(surprise)

    def _shape(self, surprise: float) -> float:
        """Map ``-log10(p)`` to [0, 1]; hold repeated alerts of one incident below the alert level."""
        if surprise >= self.alert_level:
            if self.since_alert_ > self.dead_time:
                self.since_alert_ = 0
            else:
                surprise = 0.5 * min(surprise, self.alert_level)
        return min(1.0, surprise / (2.0 * self.alert_level))

    def score_series(self, series: pd.Series) -> np.ndarray:
        """Stream a whole series through :meth:`update` (in its order) and return every score."""
        index = pd.DatetimeIndex(series.index)
        values = series.to_numpy(dtype=float)
        return np.array([self.update(t, float(v)) for t, v in zip(index, values, strict=True)])
