"""Quantiles from past forecast errors: the one interval method shared by the cheap models.

A model that knows its ``h``-step-ahead errors on the history (``y - forecast``) forecasts level
``q`` as ``mean + quantile_q(errors_h)``. This makes no distributional assumption, so skewed load
(bursts up, never below zero) gets a skewed band. Errors are taken per horizon because they
grow with it; past the longest horizon that has errors, the last one's are widened by
``sqrt(h / h_max)``, the random-walk growth rate, rather than pretending the band stops growing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def residual_quantiles(
    mean: np.ndarray,
    errors_at: Callable[[int], np.ndarray],
    levels: Sequence[float],
    max_error_horizon: int | None = None,
) -> dict[float, np.ndarray]:
    """Quantile forecasts around ``mean`` from ``errors_at(h)``, the errors at horizon ``h``.

    ``max_error_horizon`` caps the horizons asked of ``errors_at`` (models with a fixed set of
    direct horizons). A horizon without any error sample gets a zero-width band.
    """
    horizon = len(mean)
    offsets = {level: np.zeros(horizon) for level in levels}
    if not levels:
        return {}
    for h in range(1, horizon + 1):
        known = h if max_error_horizon is None else min(h, max_error_horizon)
        errors = errors_at(known)
        if len(errors) == 0:
            continue
        widening = np.sqrt(h / known)
        for level, value in zip(levels, np.quantile(errors, list(levels)), strict=True):
            offsets[level][h - 1] = widening * value
    return {level: mean + offsets[level] for level in levels}


def lagged_errors(values: np.ndarray, lag: int) -> np.ndarray:
    """Errors of "the value ``lag`` steps earlier" as a forecast: ``y[t] - y[t - lag]``."""
    if lag >= len(values):
        return np.empty(0)
    return np.asarray(values[lag:] - values[:-lag])
