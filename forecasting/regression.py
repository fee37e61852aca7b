"""Direct multi-horizon ridge regression on lag, rolling-mean, seasonal and Fourier features.

The default model: one small least-squares problem per horizon (direct forecasting, so errors
do not compound through a recursion) solved in closed form, which keeps fit + predict for a
week of one-minute data within a few tens of milliseconds. On the load series of the benchmark
gradient boosting buys little over it at many times the cost (see docs/forecasting.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, NotFittedError, check_request, future_index, make_forecast
from forecasting.features import LagFeatures
from forecasting.hygiene import RegularSeries, regularize
from forecasting.intervals import residual_quantiles
from forecasting.level import DampedTrend
from forecasting.seasonality import detect_period, supported_periods

#: Fewer training rows than this per horizon and the regression is not trusted; the damped trend
#: answers instead.
MIN_TRAINING_ROWS = 30


def feature_spec(clean: RegularSeries, n_lags: int, fourier_order: int) -> LagFeatures:
    """Features this history supports: a seasonal lag when a period is detected, and Fourier terms
    for every cycle the history covers twice."""
    values = clean.values.to_numpy()
    period = detect_period(values, clean.step)
    fourier = tuple(round(p / clean.step) for p in supported_periods(clean.span) if p % clean.step == pd.Timedelta(0))
    n = len(values)
    windows = tuple(w for w in (6, 30, 120) if w < n // 4) or (1,)
    return LagFeatures(
        n_lags=min(n_lags, max(1, n // 4)),
        windows=windows,
        period=period,
        fourier_periods=fourier if fourier_order else (),
        fourier_order=fourier_order,
    )


def slot_of(clean: RegularSeries) -> int:
    """The first value's position on the absolute grid of ``clean.step``."""
    return int(clean.values.index[0].value // clean.step.value)


class DirectHorizonModel:
    """What the direct multi-horizon models (linear, boosted) share around their own learning.

    Both learn on the history divided by the spread of its steps, so one regularisation suits
    every series, and both hand a history too short to train on to a damped trend: they differ
    only in how the change at each horizon is learnt from the features.
    """

    name: ClassVar[str]
    max_horizon: int
    n_lags: int
    fourier_order: int

    def _learn_history(self, y: pd.Series) -> RegularSeries:
        """Learn the feature spec, grid and scale of ``y``; the regular series, for the caller to train on."""
        clean = regularize(y, min_points=2)
        values = clean.values.to_numpy()
        self.spec_ = feature_spec(clean, self.n_lags, self.fourier_order)
        self.step_ = clean.step
        self.last_ = clean.values.index[-1]
        self.slot0_ = slot_of(clean)
        scale = float(np.std(np.diff(values))) if len(values) > 2 else 0.0
        self.scale_ = scale if scale > 0 else 1.0
        self.values_ = values / self.scale_
        return clean

    def _falls_back(self, clean: RegularSeries, origins: np.ndarray) -> bool:
        """Whether too few training ``origins`` leave the forecasts to a damped trend (then fitted)."""
        self.fallback_model_ = DampedTrend().fit(clean.values) if len(origins) < MIN_TRAINING_ROWS else None
        return self.fallback_model_ is not None

    def _checked_request(self, horizon: int, quantiles: Sequence[float]) -> tuple[tuple[float, ...], Forecast | None]:
        """The quantile levels asked for, and the whole forecast when the damped trend stood in."""
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "errors_"):
            raise NotFittedError(f"{type(self).__name__}.predict called before fit")
        if horizon > self.max_horizon:
            raise ValueError(f"horizon {horizon} exceeds max_horizon={self.max_horizon} set at construction")
        if self.fallback_model_ is None:
            return levels, None
        forecast = self.fallback_model_.predict(horizon, levels)
        return levels, make_forecast(forecast.index, forecast.mean, forecast.quantiles, forecast.model, True)


class LinearForecaster(DirectHorizonModel):
    """Ridge regression per horizon on :class:`LagFeatures`, quantiles from its own past errors.

    ``max_horizon`` is fixed at fit: each horizon is its own model. ``max_rows`` bounds the
    training rows (the most recent are kept) so the cost is fixed for long histories.
    """

    name: ClassVar[str] = "linear"

    def __init__(
        self,
        max_horizon: int = 30,
        n_lags: int = 6,
        fourier_order: int = 3,
        alpha: float = 1e-3,
        max_rows: int = 10080,
    ) -> None:
        self.max_horizon = max_horizon
        self.n_lags = n_lags
        self.fourier_order = fourier_order
        self.alpha = alpha
        self.max_rows = max_rows

    def fit(self, y: pd.Series) -> Self:
        clean = self._learn_history(y)
        values, spec = clean.values.to_numpy(), self.spec_
        # One set of origins for every horizon, so the horizon-independent block of the normal
        # equations is computed once; it costs the last ``max_horizon`` rows of the shortest ones.
        first = max(spec.warmup(self.max_horizon), len(values) - self.max_horizon - self.max_rows)
        self.origins_ = np.arange(first, len(values) - self.max_horizon)
        self.coefficients_: list[np.ndarray] = []
        self.errors_: list[np.ndarray] = []
        self.feature_ranges_: list[tuple[np.ndarray, np.ndarray]] = []
        self._falls_back(clean, self.origins_)
        return self

    def _learn_horizons(self, horizon: int) -> None:
        """Solve the models of horizons up to ``horizon`` not solved yet.

        Each horizon's model depends on the history and ``max_horizon`` only (through the shared
        origins), never on which horizons were asked for first: a forecast a few steps ahead, as
        the controller and the selection's backtest ask for every cycle, solves those few and not
        all ``max_horizon`` of them, with the same numbers.
        """
        if len(self.coefficients_) >= horizon:
            return
        origins, spec = self.origins_, self.spec_
        base = _with_intercept(spec.base_rows(self.values_, origins, self.slot0_))
        base_gram = base.T @ base
        base_low, base_high = base.min(axis=0), base.max(axis=0)
        for h in range(len(self.coefficients_) + 1, horizon + 1):
            seasonal = spec.seasonal_rows(self.values_, origins, h)
            target = self.values_[origins + h] - self.values_[origins]
            cross = base.T @ seasonal
            gram = np.block([[base_gram, cross], [cross.T, seasonal.T @ seasonal]])
            penalty = self.alpha * len(origins) * np.eye(len(gram))
            penalty[0, 0] = 0.0  # the intercept is not shrunk
            moment = np.concatenate([base.T @ target, seasonal.T @ target])
            coefficients = np.linalg.solve(gram + penalty, moment)
            fitted = base @ coefficients[: base.shape[1]] + seasonal @ coefficients[base.shape[1] :]
            self.coefficients_.append(coefficients)
            self.errors_.append(self.scale_ * (target - fitted))
            self.feature_ranges_.append(
                (np.concatenate([base_low, seasonal.min(axis=0)]), np.concatenate([base_high, seasonal.max(axis=0)]))
            )

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels, fallback = self._checked_request(horizon, quantiles)
        if fallback is not None:
            return fallback
        self._learn_horizons(horizon)
        origin = np.array([len(self.values_) - 1])
        base = _with_intercept(self.spec_.base_rows(self.values_, origin, self.slot0_))[0]
        # A state outside those the model was fitted on (the level just shifted, so every lag and
        # rolling mean is far from now) gets the features of the most extreme state seen: a
        # linear model extrapolates without bound, and after a level shift from 6 to 15 it
        # forecast a return to 7 (rds_cpu_utilization_cc0c53, MASE 7.9 over the next origins).
        changes = np.array(
            [
                np.clip(np.concatenate([base, self.spec_.seasonal_rows(self.values_, origin, h)[0]]), low, high)
                @ coefficients
                for h, (coefficients, (low, high)) in enumerate(
                    zip(self.coefficients_[:horizon], self.feature_ranges_, strict=False), start=1
                )
            ]
        )
        mean = self.scale_ * (self.values_[-1] + changes)
        bands = residual_quantiles(mean, lambda h: self.errors_[h - 1], levels)
        return make_forecast(future_index(self.last_, self.step_, horizon), mean, bands, self.name)


def _with_intercept(features: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(features)), features])
