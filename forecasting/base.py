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
