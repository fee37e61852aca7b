"""Gradient boosting on the same features as the linear model, with quantile loss for the bands.

One model serves every horizon (the horizon is a feature and training rows are stacked across
horizons), which keeps fitting to one mean model plus one model per upper quantile instead of one
per horizon each. It is the expensive option (about a second per fit): it runs off the hot path, and no spec of the
operator selects it (it is benchmarked against the cheap models). scikit-learn is therefore an
optional dependency (``pip install 'infercast[gbm]'``), imported by :meth:`fit` only: importing it
would cost the operator about two seconds at every start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from forecasting.base import Forecast, future_index, make_forecast
from forecasting.intervals import residual_quantiles
from forecasting.regression import DirectHorizonModel

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor


class GradientBoostingForecaster(DirectHorizonModel):
    """Histogram gradient boosting, direct multi-horizon, quantile loss at ``quantile_levels``.

    Levels asked of ``predict`` that were not trained come from the mean model's past errors, as
    in the cheap models. ``max_rows`` stacked rows are sampled (with ``random_state``) to bound
    the cost. ``n_threads`` caps the OpenMP threads of the boosting: one by default, the core the
    controller budgets per service. Left to itself, scikit-learn starts a thread per core, and on
    a machine whose cores are busy those threads wait on each other: a fit of 400 points that takes
    0.3 s on one thread took 6 to 50 s with two threads under load (measured while other work ran).
    """

    name: ClassVar[str] = "gbm"

    def __init__(
        self,
        max_horizon: int = 12,
        n_lags: int = 6,
        fourier_order: int = 3,
        quantile_levels: tuple[float, ...] = (0.9,),
        max_iter: int = 150,
        learning_rate: float = 0.1,
        max_rows: int = 20000,
        random_state: int = 0,
        n_threads: int = 1,
    ) -> None:
        self.max_horizon = max_horizon
        self.n_lags = n_lags
        self.fourier_order = fourier_order
        self.quantile_levels = quantile_levels
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_rows = max_rows
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, y: pd.Series) -> Self:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._fit(y)

    def _fit(self, y: pd.Series) -> Self:
        try:
            from sklearn.ensemble import HistGradientBoostingRegressor
        except ImportError as error:
            raise ImportError(
                "GradientBoostingForecaster needs scikit-learn, an optional dependency: pip install 'infercast[gbm]'"
            ) from error
        clean = self._learn_history(y)
        values, spec = clean.values.to_numpy(), self.spec_
        origins = np.arange(spec.warmup(self.max_horizon), len(values) - self.max_horizon)
        self.models_: dict[float | None, HistGradientBoostingRegressor] = {}
        self.errors_: list[np.ndarray] = []
        if self._falls_back(clean, origins):
            return self
        rng = np.random.default_rng(self.random_state)
        rows_per_horizon = min(len(origins), self.max_rows // self.max_horizon)
        features, targets, horizons = [], [], []
        for h in range(1, self.max_horizon + 1):
            sample = np.sort(rng.choice(origins, size=rows_per_horizon, replace=False))
            features.append(self._rows(sample, h))
            targets.append(self.values_[sample + h] - self.values_[sample])
            horizons.append(np.full(len(sample), h))
        stacked, target = np.vstack(features), np.concatenate(targets)
        for level in (None, *self.quantile_levels):
            model = HistGradientBoostingRegressor(
                loss="squared_error" if level is None else "quantile",
                quantile=level,
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                early_stopping=False,
                random_state=self.random_state,
            )
            self.models_[level] = model.fit(stacked, target)
        fitted = self.models_[None].predict(stacked)
        stacked_horizon = np.concatenate(horizons)
        self.errors_ = [self.scale_ * (target - fitted)[stacked_horizon == h] for h in range(1, self.max_horizon + 1)]
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels, fallback = self._checked_request(horizon, quantiles)
        if fallback is not None:
            return fallback
        origin = np.array([len(self.values_) - 1])
        features = np.vstack([self._rows(origin, h) for h in range(1, horizon + 1)])
        now = self.values_[-1]

        def forecast_of(level: float | None) -> np.ndarray:
            return np.asarray(self.scale_ * (now + self.models_[level].predict(features)))

        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            mean = forecast_of(None)
            trained = {level: forecast_of(level) for level in levels if level in self.models_}
        bands = residual_quantiles(mean, lambda h: self.errors_[h - 1], [q for q in levels if q not in self.models_])
        bands |= trained
        return make_forecast(future_index(self.last_, self.step_, horizon), mean, bands, self.name)

    def _rows(self, origins: np.ndarray, h: int) -> np.ndarray:
        return np.column_stack(
            [
                self.spec_.base_rows(self.values_, origins, self.slot0_),
                self.spec_.seasonal_rows(self.values_, origins, h),
                np.full(len(origins), h),
            ]
        )
