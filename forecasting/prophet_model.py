"""Prophet behind the common interface: trend plus daily/weekly seasonality, fitted by Stan.

Prophet fits once per object, so every ``fit`` builds a new one. Seasonalities are switched on
only when the history covers them twice (:mod:`forecasting.seasonality`); Prophet's own "auto"
turns daily seasonality on from two days of data but weekly from two weeks only by coincidence of
its defaults, and would fit a yearly term to a week of data. Stan and Prophet log every fit at
INFO (and Prophet complains at import that plotly is missing); with a thousand services that
drowns the operator's log, so their loggers are disabled for the duration of the call and
restored after, leaving the caller's logging alone. Disabling, not a level: cmdstanpy resets its
logger's level to DEBUG the first time it logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, NotFittedError, check_request, future_index, make_forecast
from forecasting.hygiene import regularize
from forecasting.level import DampedTrend
from forecasting.seasonality import DAILY, WEEKLY, supported_periods

NOISY_LOGGERS = ("cmdstanpy", "prophet", "prophet.models", "prophet.plot")


class ProphetForecaster:
    """A fresh Prophet per fit; quantiles from its posterior predictive samples.

    ``max_points`` keeps only the most recent points (Stan's cost grows with them); ``seed`` fixes
    both Stan's optimiser and the predictive sampling. If Stan fails, the damped trend answers and
    the forecast says ``fallback``.
    """

    name: ClassVar[str] = "prophet"

    def __init__(
        self,
        changepoint_prior_scale: float = 0.05,
        uncertainty_samples: int = 300,
        max_points: int = 10080,
        seed: int = 0,
    ) -> None:
        self.changepoint_prior_scale = changepoint_prior_scale
        self.uncertainty_samples = uncertainty_samples
        self.max_points = max_points
        self.seed = seed

    def fit(self, y: pd.Series) -> Self:
        with _quiet():
            try:
                from prophet import Prophet  # imported here: it takes a second and only this model needs it
            except ImportError as error:
                raise ImportError(
                    "ProphetForecaster needs Prophet, an optional dependency: pip install 'infercast[prophet]'"
                ) from error

        clean = regularize(y, min_points=2)
        history = clean.values.iloc[-self.max_points :]
        seasons = supported_periods(clean.step * len(history))
        self.step_ = clean.step
        self.last_ = history.index[-1]
        self.model_: Any = Prophet(
            daily_seasonality=DAILY in seasons,
            weekly_seasonality=WEEKLY in seasons,
            yearly_seasonality=False,
            changepoint_prior_scale=self.changepoint_prior_scale,
            uncertainty_samples=self.uncertainty_samples,
        )
        self.fallback_model_: DampedTrend | None = None
        frame = pd.DataFrame({"ds": pd.DatetimeIndex(history.index).tz_localize(None), "y": history.to_numpy()})
        with _quiet():
            try:
                self.model_.fit(frame, seed=self.seed)
            except (RuntimeError, ValueError):
                self.fallback_model_ = DampedTrend().fit(clean.values)
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "model_"):
            raise NotFittedError("ProphetForecaster.predict called before fit")
        if self.fallback_model_ is not None:
            forecast = self.fallback_model_.predict(horizon, levels)
            return make_forecast(forecast.index, forecast.mean, forecast.quantiles, forecast.model, True)
        index = future_index(self.last_, self.step_, horizon)
        future = pd.DataFrame({"ds": index.tz_localize(None)})
        with _seeded_global_numpy(self.seed):
            samples = self.model_.predictive_samples(future)["yhat"]
        mean = samples.mean(axis=1)
        bands = dict(zip(levels, np.quantile(samples, levels, axis=1), strict=True)) if levels else {}
        return make_forecast(index, mean, bands, self.name)


@contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    previous = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, previous, strict=True):
            logger.disabled = disabled


@contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """Prophet samples from numpy's global generator; seed it for the call, then give it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
