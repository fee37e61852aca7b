"""Seasonal naive: tomorrow at 10:00 looks like today at 10:00 (or, with no season, like now).

It is the baseline every other model must beat, and often a hard one on load series. The period
is detected from the data (daily, weekly or none, see :mod:`forecasting.seasonality`); with none,
the model is the plain naive forecast (the last value), which is optimal for a random walk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, NotFittedError, check_request, future_index, make_forecast
from forecasting.hygiene import regularize
from forecasting.intervals import lagged_errors, residual_quantiles
from forecasting.seasonality import detect_period


class SeasonalNaive:
    """Repeat the last seasonal cycle; quantiles from the same rule's past errors.

    ``period`` is ``"auto"`` (detect), ``None`` (no season: the last value) or a number of steps.
    A fixed period longer than half the history cannot be trusted and falls back to the last
    value, with ``fallback_`` set. ``error_window`` bounds how far back errors are read, so the
    band follows the recent noise level.
    """

    name: ClassVar[str] = "seasonal_naive"

    def __init__(self, period: int | Literal["auto"] | None = "auto", error_window: int = 4032) -> None:
        self.period = period
        self.error_window = error_window

    def fit(self, y: pd.Series) -> Self:
        clean = regularize(y, min_points=2)
        values = clean.values.to_numpy()
        if self.period == "auto":
            period, fallback = detect_period(values, clean.step), False
        elif self.period is not None and 2 * self.period > len(values):
            period, fallback = None, True
        else:
            period, fallback = self.period, False
        self.period_: int | None = period
        self.fallback_ = fallback
        self.step_ = clean.step
        self.last_ = clean.values.index[-1]
        self.recent_ = values[-(self.error_window + (period or 0)) :]
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "recent_"):
            raise NotFittedError("SeasonalNaive.predict called before fit")
        steps = np.arange(1, horizon + 1)
        if self.period_ is None:
            mean = np.full(horizon, self.recent_[-1])
        else:
            mean = self.recent_[len(self.recent_) - self.period_ + (steps - 1) % self.period_]
        bands = residual_quantiles(mean, lambda h: lagged_errors(self.recent_, self._lag(h)), levels)
        model = self.name if self.period_ is None else f"{self.name}(period={self.period_})"
        return make_forecast(future_index(self.last_, self.step_, horizon), mean, bands, model, self.fallback_)

    def _lag(self, h: int) -> int:
        """How far back the value used for horizon ``h`` lies."""
        return h if self.period_ is None else self.period_ * math.ceil(h / self.period_)
