"""The one forecaster protocol and the value a forecast is returned as.

Every model in this package follows scikit-learn's estimator conventions so the controller,
the model selector and the benchmarks can treat them alike:

* hyperparameters are set in ``__init__`` and only stored there (no fitting, no validation
  that depends on data);
* ``fit(y)`` takes a :class:`pandas.Series` with a ``DatetimeIndex`` and returns ``self``;
* what is learned lives in attributes with a trailing underscore (``period_``, ``step_``);
* ``predict(horizon, quantiles=...)`` returns a :class:`Forecast`, and raises
  :class:`NotFittedError` before ``fit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd


class NotFittedError(RuntimeError):
    """``predict`` (or a learned attribute) was used before ``fit``."""


class ForecastInputError(ValueError):
    """The series cannot be forecast as given (too short, no finite values, no time index...)."""


@dataclass(frozen=True)
class Forecast:
    """Point and quantile forecasts for the ``horizon`` steps after the end of the history.

    ``quantiles`` maps each requested level (for example ``0.9``) to an array as long as ``mean``;
    levels are monotone: a higher level never forecasts less than a lower one.
    ``fallback`` is true when the model could not do what was asked (too little history for its
    seasonality, a failed fit) and a simpler model answered instead; ``model`` names the model
    that actually produced the numbers.
    """

    index: pd.DatetimeIndex
    mean: np.ndarray
    quantiles: Mapping[float, np.ndarray] = field(default_factory=dict)
    model: str = ""
    fallback: bool = False

    def __post_init__(self) -> None:
        n = len(self.index)
        if self.mean.shape != (n,):
            raise ValueError(f"mean has shape {self.mean.shape}, expected ({n},)")
        for level, values in self.quantiles.items():
            if not 0.0 < level < 1.0:
                raise ValueError(f"quantile level {level} is outside (0, 1)")
            if values.shape != (n,):
                raise ValueError(f"quantile {level} has shape {values.shape}, expected ({n},)")

    @property
    def horizon(self) -> int:
        return len(self.index)

    def quantile(self, level: float) -> np.ndarray:
        """The forecast at ``level``; ``0.5`` falls back to the mean when it was not requested."""
        if level in self.quantiles:
            return self.quantiles[level]
        if level == 0.5:
            return self.mean
        raise KeyError(f"quantile {level} was not requested; have {sorted(self.quantiles)}")


@runtime_checkable
class Forecaster(Protocol):
    """What every forecaster offers. See the module docstring for the conventions."""

    def fit(self, y: pd.Series) -> Self: ...

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast: ...


def clone(forecaster: Forecaster) -> Forecaster:
    """A new, unfitted forecaster with the same hyperparameters (scikit-learn's ``clone``).

    It works because hyperparameters are exactly the ``__init__`` arguments, stored under their
    own names; learned (underscore) attributes are not carried over, so a clone never shares
    state with the original.
    """
    names = [name for name in inspect.signature(type(forecaster).__init__).parameters if name != "self"]
    return type(forecaster)(**{name: getattr(forecaster, name) for name in names})


def check_request(horizon: int, quantiles: Sequence[float]) -> tuple[float, ...]:
    """Validate a ``predict`` request once for every model; returns the levels, sorted and unique."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    levels = tuple(sorted({float(q) for q in quantiles}))
    for level in levels:
        if not 0.0 < level < 1.0:
            raise ValueError(f"quantile level {level} is outside (0, 1)")
    return levels


def future_index(last: pd.Timestamp, step: pd.Timedelta, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``last``, one ``step`` apart."""
    return pd.date_range(last + step, periods=horizon, freq=step)


def make_forecast(
    index: pd.DatetimeIndex,
    mean: np.ndarray,
    quantiles: Mapping[float, np.ndarray],
    model: str,
    fallback: bool = False,
) -> Forecast:
    """Build a :class:`Forecast`, making the quantiles monotone across levels.

    Quantiles estimated separately per level (quantile regression, residual quantiles) can cross
    by a hair; a forecast whose 0.9 is below its 0.5 is nonsense to a consumer, so each level is
    raised to at least the level below it (the cumulative maximum, which leaves already ordered
    values untouched).
    """
    levels = sorted(quantiles)
    ordered: dict[float, np.ndarray] = {}
    floor = np.full(len(index), -np.inf)
    for level in levels:
        floor = np.maximum(floor, np.asarray(quantiles[level], dtype=float))
        ordered[level] = floor
    return Forecast(index=index, mean=np.asarray(mean, dtype=float), quantiles=ordered, model=model, fallback=fallback)
