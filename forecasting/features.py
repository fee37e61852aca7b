"""Features for direct multi-horizon regression: what the recent past says about ``y[t + h]``.

Every feature is expressed relative to the current value ``y[t]`` and the target is the change
``y[t + h] - y[t]``. A model that learns nothing then forecasts "no change" (the naive forecast,
hard to beat at short horizons) instead of the series mean, and the same coefficients serve a
series at 10 req/s and at 10,000 once divided by the series' scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LagFeatures:
    """Which features to build. Periods are in steps; ``fourier_periods`` may be empty."""

    n_lags: int = 6
    windows: tuple[int, ...] = (6, 30, 120)
    period: int | None = None
    fourier_periods: tuple[int, ...] = ()
    fourier_order: int = 3

    def seasonal_lag(self, h: int) -> int:
        """How far back the same phase of the cycle as ``t + h`` was last observed, seen from ``t + h``."""
        assert self.period is not None
        return self.period * math.ceil(h / self.period)

    def warmup(self, h: int) -> int:
        """The first origin ``t`` at which every feature for horizon ``h`` is defined."""
        needed = max(self.n_lags, *self.windows) - 1
        if self.period is not None:
            needed = max(needed, self.seasonal_lag(h))
        return needed

    def base_rows(self, values: np.ndarray, origins: np.ndarray, slot0: int) -> np.ndarray:
        """Features of the state at each origin ``t``, the same for every horizon.

        ``slot0`` is the first value's position on the absolute grid (its time divided by the
        step), so Fourier terms follow the wall clock, not the start of the history. They give
        the phase of the cycle at ``t``, from which each horizon's model learns the usual change.
        """
        now = values[origins]
        columns = [values[origins - lag] - now for lag in range(1, self.n_lags)]
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        columns += [(cumulative[origins + 1] - cumulative[origins + 1 - w]) / w - now for w in self.windows]
        slots = slot0 + origins
        for period in self.fourier_periods:
            phase = 2 * np.pi * (slots % period) / period
            for order in range(1, self.fourier_order + 1):
                columns += [np.sin(order * phase), np.cos(order * phase)]
        return np.column_stack(columns) if columns else np.empty((len(origins), 0))

    def seasonal_rows(self, values: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        """What the last cycle says about ``t + h``: its value there, and its change from ``t``'s phase."""
        if self.period is None:
            return np.empty((len(origins), 0))
        back = self.seasonal_lag(h)
        same_phase = values[origins + h - back]
        return np.column_stack([same_phase - values[origins], same_phase - values[origins - back]])
