"""Damped-trend exponential smoothing: the model for short histories and the last fallback.

With minutes of history there is no season to learn and too little data for regression; what
is left is a level and a trend. The trend is damped (``phi < 1``) because an extrapolated ramp
that never flattens is what turns a brief surge into a scale-up to the replica limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, NotFittedError, check_request, future_index, make_forecast
from forecasting.hygiene import regularize
from forecasting.intervals import residual_quantiles

#: Smoothing weights searched at fit. A small grid chosen by one-step error is as good as a
#: numerical optimiser for this model and costs a fixed, predictable time.
ALPHAS = (0.1, 0.3, 0.6, 0.9)
BETAS = (0.0, 0.05, 0.2)


class DampedTrend:
    """Holt's linear method with a damped trend, smoothing weights chosen by one-step error.

    Only the last ``history`` points are used: the level forgets older data anyway, and the cost
    of the recursion stays fixed however long the input is.
    """

    name: ClassVar[str] = "damped_trend"

    def __init__(self, phi: float = 0.9, history: int = 1440) -> None:
        self.phi = phi
        self.history = history

    def fit(self, y: pd.Series) -> Self:
        clean = regularize(y, min_points=2)
        values = clean.values.to_numpy()[-self.history :]
        best: tuple[float, np.ndarray, np.ndarray, float, float] | None = None
        for alpha in ALPHAS:
            for beta in BETAS:
                level, trend = _smooth(values, alpha, beta, self.phi)
                sse = float(np.sum((values[1:] - (level[:-1] + self.phi * trend[:-1])) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, level, trend, alpha, beta)
        assert best is not None
        _, self.level_, self.trend_, self.alpha_, self.beta_ = best
        self.values_ = values
        self.step_ = clean.step
        self.last_ = clean.values.index[-1]
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "level_"):
            raise NotFittedError("DampedTrend.predict called before fit")
        mean = self.level_[-1] + self.trend_[-1] * self._damping(horizon)
        bands = residual_quantiles(mean, self._errors, levels)
        return make_forecast(future_index(self.last_, self.step_, horizon), mean, bands, self.name)

    def _damping(self, horizon: int) -> np.ndarray:
        """``phi + phi^2 + ... + phi^h`` for h = 1..horizon: how much of the trend each step adds."""
        return np.cumsum(self.phi ** np.arange(1, horizon + 1))

    def _errors(self, h: int) -> np.ndarray:
        """Errors of the ``h``-step forecasts made from every past state."""
        if h >= len(self.values_):
            return np.empty(0)
        forecasts = self.level_[:-h] + self.trend_[:-h] * self._damping(h)[-1]
        return np.asarray(self.values_[h:] - forecasts)


def _smooth(values: np.ndarray, alpha: float, beta: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Level and trend after each value: Holt's recursion, run as two linear filters.

    The recursion is linear in the values: with the state ``x = (level, trend)``,
    ``x[t] = A x[t-1] + B y[t]`` from ``x[0] = (y[0], 0)``. By Cayley-Hamilton each component then
    follows ``x[t] - tr(A) x[t-1] + det(A) x[t-2] = B y[t] + (A - tr(A) I) B y[t-1]``, a second-order
    filter that :func:`scipy.signal.lfilter` runs in C: the same numbers as the Python loop (to
    rounding) at a tenth of its cost, which is most of what a model selection costs.

    ``scipy.signal`` is imported here, at the first fit, not with the module: importing it takes
    about a second (it loads scipy.stats), which every ``infercast`` command and every operator
    start would pay, most of them never fitting a model in that process.
    """
    from scipy.signal import lfilter

    a11, a12 = 1 - alpha, (1 - alpha) * phi
    a21, a22 = -alpha * beta, phi * (1 - alpha * beta)
    b1, b2 = alpha, alpha * beta
    trace, det = a11 + a22, a11 * a22 - a12 * a21
    level = np.empty(len(values))
    trend = np.empty(len(values))
    level[0], trend[0] = values[0], 0.0
    if len(values) > 1:
        level[1] = a11 * values[0] + b1 * values[1]
        trend[1] = a21 * values[0] + b2 * values[1]
    if len(values) > 2:
        denominator = [1.0, -trace, det]
        for state, b, c in (
            (level, b1, (a11 - trace) * b1 + a12 * b2),
            (trend, b2, a21 * b1 + (a22 - trace) * b2),
        ):
            initial = _initial_state(c, -trace, det, state[1], state[0], values[1])
            state[2:] = lfilter([b, c], denominator, values[2:], zi=initial)[0]
    return level, trend


def _initial_state(c: float, a1: float, a2: float, y1: float, y2: float, x1: float) -> np.ndarray:
    """What ``scipy.signal.lfiltic([b, c], [1, a1, a2], y=[y1, y2], x=[x1])`` returns, bit for bit.

    The filter state that continues from outputs ``y1, y2`` (newest first) and input ``x1``: the
    same operations in the same order as scipy's sums (each starts from 0.0, which also fixes the
    sign of a zero), without the cost of its general array handling, which was a fifth of a model
    selection (24 calls per damped-trend fit).
    """
    return np.array([(0.0 + c * x1) - ((0.0 + a1 * y1) + a2 * y2), 0.0 - (0.0 + a2 * y1)])
