"""One-step-ahead load predictors of the kind NVIDIA Dynamo's planner uses: constant, ARIMA, Kalman, Prophet.

Each takes one value per planning interval (a request count, a mean prompt or output length) and
predicts the next. They follow the public description of Dynamo's planner predictors (its design
doc and ``planner/core/load/predictors.py``), written here from that description:

* ``constant``: the next value is the last one;
* ``arima``: an autoregressive model on the series or its first difference, order and
  differencing chosen by AIC (p <= 5, d <= 1), fitted by least squares. Dynamo runs pmdarima's
  ``auto_arima``, which also searches moving-average terms; pmdarima is not a dependency here,
  so this is the AR part of that search;
* ``kalman``: a local linear trend Kalman filter (level and trend, process noise 1 and 0.1,
  measurement noise 10, forecasting after 5 points: Dynamo's defaults);
* ``prophet``: Prophet fitted on the last 50 values (Dynamo's window), one step ahead; needs the
  ``prophet`` extra.

Like Dynamo's, every predictor skips the leading zeros of an idle start and, before it has enough
points, repeats the last value. These are baselines of the backtest only; the operator's
forecasting lives in :mod:`forecasting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

PredictorName = Literal["constant", "arima", "kalman", "prophet"]
PREDICTORS: tuple[PredictorName, ...] = ("constant", "arima", "kalman", "prophet")

#: Points before the ARIMA and Prophet predictors fit (fewer: the last value).
MIN_POINTS = 5
#: The ARIMA search: AR orders up to this, on the series (d = 0) or its difference (d = 1).
MAX_AR_ORDER = 5
#: Prophet's window of values.
PROPHET_WINDOW = 50


class LoadPredictor(Protocol):
    def add(self, value: float) -> None: ...

    def predict_next(self) -> float: ...


@dataclass
class _History:
    """The values seen, without the idle start (the leading zeros)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> bool:
        value = value if math.isfinite(value) else 0.0
        if value == 0 and not any(self.values):
            return False
        self.values.append(value)
        return True

    @property
    def last(self) -> float:
        return self.values[-1] if self.values else 0.0


@dataclass
class ConstantPredictor:
    history: _History = field(default_factory=_History)

    def add(self, value: float) -> None:
        self.history.add(value)

    def predict_next(self) -> float:
        return self.history.last


@dataclass
class ArimaPredictor:
    """AR(p) on the series or its first difference, chosen by AIC (see the module docstring)."""

    history: _History = field(default_factory=_History)

    def add(self, value: float) -> None:
        self.history.add(value)

    def predict_next(self) -> float:
        values = np.asarray(self.history.values, dtype=float)
        if len(values) < MIN_POINTS or np.ptp(values) == 0:
            return self.history.last
        best: tuple[float, float] | None = None  # (AIC, prediction)
        for differences in (0, 1):
            series = np.diff(values, differences)
            for order in range(0, MAX_AR_ORDER + 1):
                fitted = _fit_ar(series, order)
                if fitted is None:
                    continue
                aic, step = fitted
                prediction = step + (values[-1] if differences else 0.0)
                if best is None or aic < best[0]:
                    best = (aic, prediction)
        return max(0.0, best[1]) if best is not None else self.history.last


def _fit_ar(series: np.ndarray, order: int) -> tuple[float, float] | None:
    """(AIC, next value) of an AR(``order``) with intercept fitted by least squares; ``None`` when too short."""
    rows = len(series) - order
    if rows < order + 2:
        return None
    design = np.column_stack([np.ones(rows), *(series[order - lag : len(series) - lag] for lag in range(1, order + 1))])
    target = series[order:]
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coefficients
    variance = max(float(residual @ residual) / rows, 1e-12)
    aic = rows * math.log(variance) + 2 * (order + 1)
    latest = np.concatenate(([1.0], series[::-1][:order]))
    return aic, float(latest @ coefficients)


@dataclass
class KalmanPredictor:
    """Local linear trend: level += trend + noise, trend += noise; the level is observed with noise."""

    q_level: float = 1.0
    q_trend: float = 0.1
    r: float = 10.0
    min_points: int = 5
    history: _History = field(default_factory=_History)
    state: np.ndarray = field(default_factory=lambda: np.zeros(2))
    covariance: np.ndarray = field(default_factory=lambda: np.eye(2) * 1000.0)

    def add(self, value: float) -> None:
        if not self.history.add(value):
            return
        z = self.history.last
        if len(self.history.values) == 1:
            self.state = np.array([z, 0.0])
            return
        transition = np.array([[1.0, 1.0], [0.0, 1.0]])
        state = transition @ self.state
        covariance = transition @ self.covariance @ transition.T + np.diag([self.q_level, self.q_trend])
        gain = covariance[:, 0] / (covariance[0, 0] + self.r)
        self.state = state + gain * (z - state[0])
        self.covariance = covariance - np.outer(gain, covariance[0, :])

    def predict_next(self) -> float:
        if len(self.history.values) < self.min_points:
            return self.history.last
        return max(0.0, float(self.state[0] + self.state[1]))


@dataclass
class ProphetPredictor:
    """Prophet on the last :data:`PROPHET_WINDOW` values, spaced ``step_s`` apart."""

    step_s: float
    history: _History = field(default_factory=_History)

    def add(self, value: float) -> None:
        self.history.add(value)

    def predict_next(self) -> float:
        import logging

        import pandas as pd
        from prophet import Prophet

        values = self.history.values[-PROPHET_WINDOW:]
        if len(values) < MIN_POINTS:
            return self.history.last
        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        start = pd.Timestamp("2024-01-01")
        stamps = pd.date_range(start, periods=len(values) + 1, freq=pd.Timedelta(seconds=self.step_s))
        model = Prophet().fit(pd.DataFrame({"ds": stamps[:-1], "y": values}))
        return max(0.0, float(model.predict(pd.DataFrame({"ds": stamps[-1:]}))["yhat"].iloc[0]))


def make_predictor(name: PredictorName, step_s: float) -> LoadPredictor:
    if name == "constant":
        return ConstantPredictor()
    if name == "arima":
        return ArimaPredictor()
    if name == "kalman":
        return KalmanPredictor()
    return ProphetPredictor(step_s)
