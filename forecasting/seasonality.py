"""Which seasonal periods a history can support, and which one the data actually shows.

The fallback chain of the issue lives here, in one place, so every model applies the same rule:
a seasonality is only considered when the history covers at least ``MIN_CYCLES`` full cycles
(two days for the daily one, two weeks for the weekly one). With one cycle, "the same time
yesterday" is a single observation and a seasonal model just copies its noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAILY = pd.Timedelta(days=1)
WEEKLY = pd.Timedelta(days=7)
MIN_CYCLES = 2

#: Autocorrelation a candidate period must reach before it is believed. Load series with a real
#: daily cycle sit well above 0.5 at the daily lag; noise and random walks after differencing
#: sit near zero.
MIN_AUTOCORRELATION = 0.3


def supported_periods(
    span: pd.Timedelta, candidates: tuple[pd.Timedelta, ...] = (DAILY, WEEKLY)
) -> tuple[pd.Timedelta, ...]:
    """The candidate periods that ``span`` of history covers ``MIN_CYCLES`` times."""
    return tuple(period for period in candidates if span >= MIN_CYCLES * period)


def detect_period(
    values: np.ndarray,
    step: pd.Timedelta,
    candidates: tuple[pd.Timedelta, ...] = (DAILY, WEEKLY),
    min_autocorrelation: float = MIN_AUTOCORRELATION,
) -> int | None:
    """The seasonal period in steps that best explains ``values``, or ``None`` when none does.

    A candidate must be supported by the history, be a whole number of steps, and its lag must
    have an autocorrelation of at least ``min_autocorrelation`` on the series with its slow level
    removed (a trending series is autocorrelated at every lag, which is not seasonality). Among
    those, the one whose seasonal-naive error is smallest wins: a weekly period only beats the
    daily one when weekends really differ.
    """
    span = step * len(values)
    detrended = values - _moving_average(values, _steps(WEEKLY, step) or len(values))
    best: tuple[float, int] | None = None
    for period in supported_periods(span, candidates):
        lag = _steps(period, step)
        if lag is None or lag < 2:
            continue
        if _autocorrelation(detrended, lag) < min_autocorrelation:
            continue
        error = float(np.mean(np.abs(values[lag:] - values[:-lag])))
        if best is None or error < best[0]:
            best = (error, lag)
    return None if best is None else best[1]


def _steps(period: pd.Timedelta, step: pd.Timedelta) -> int | None:
    """``period`` in whole steps, or ``None`` when the step does not divide it."""
    ratio = period / step
    return round(ratio) if abs(ratio - round(ratio)) < 1e-9 else None


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with the window shrunk at the edges (no padding artefacts)."""
    window = max(1, min(window, len(values)))
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    half = window // 2
    lo = np.clip(np.arange(len(values)) - half, 0, len(values))
    hi = np.clip(np.arange(len(values)) + window - half, 0, len(values))
    return np.asarray((cumulative[hi] - cumulative[lo]) / (hi - lo))


def _autocorrelation(values: np.ndarray, lag: int) -> float:
    if lag >= len(values) - 1:
        return 0.0
    head, tail = values[:-lag] - values.mean(), values[lag:] - values.mean()
    denominator = float(np.sqrt(np.sum(head**2) * np.sum(tail**2)))
    return 0.0 if denominator == 0.0 else float(np.sum(head * tail) / denominator)
