"""Forecast accuracy measures, scale-free so they compare across series and models.

MASE divides the mean absolute error by the mean absolute one-step change of the training
history, so 1.0 means "as wrong as the naive forecast is on the history" whatever the units;
the pinball loss is divided by the same scale. Both are the measures the selector ranks by.
"""

from __future__ import annotations

import numpy as np


def naive_scale(history: np.ndarray) -> float:
    """Mean absolute one-step change of ``history``; 0 for a constant history."""
    return float(np.mean(np.abs(np.diff(history)))) if len(history) > 1 else 0.0


def scaled(loss: float, scale: float) -> float:
    """``loss / scale``, where a zero scale (constant history) makes any error infinitely bad and
    no error perfect, rather than dividing by zero."""
    if scale > 0:
        return loss / scale
    return 0.0 if loss == 0 else float("inf")


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - forecast)))


def pinball_loss(actual: np.ndarray, forecast: np.ndarray, level: float) -> float:
    """Mean quantile loss of ``forecast`` as the ``level`` quantile: under-forecasts cost ``level``
    per unit, over-forecasts ``1 - level``."""
    error = actual - forecast
    return float(np.mean(np.maximum(level * error, (level - 1) * error)))


def coverage(actual: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``actual`` at or below ``upper``: 0.9 for a calibrated 0.9 quantile."""
    return float(np.mean(actual <= upper))
