"""``failure_risk``: the probability that a metric crosses a threshold within a forecast's horizon.

The controller asks "will the error rate / latency / KV-cache usage cross this SLO in the next N
minutes?". A :class:`~forecasting.base.Forecast` answers with a few quantiles per step, so the
distribution of each step is reconstructed from them:

* between the levels present (the requested quantiles, plus the mean as the median when 0.5 was not
  requested) the CDF is linear in the value, i.e. the quantile function is interpolated linearly;
* beyond the outermost levels the tail is exponential, with the one rate that passes through the two
  outermost quantiles on that side. Exponential is the usual peaks-over-threshold tail with shape zero:
  lighter than the power laws of heavy-tailed latencies (so far tails are if anything under-stated),
  heavier than a normal's (so a threshold just beyond the last quantile is not dismissed);
* a step whose quantiles coincide is a point mass (no spread, no uncertainty).

The steps of one forecast are not independent: one level shift moves every step together. The risk
over the horizon is therefore the largest per-step probability, which is the exact probability of a
crossing when the steps' errors are perfectly dependent and a lower bound otherwise; treating the
steps as independent would make the risk grow with the horizon length merely by counting steps.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from forecasting.base import Forecast

Direction = Literal["above", "below"]


def failure_risk(forecast: Forecast, threshold: float, *, direction: Direction = "above") -> float:
    """Probability in [0, 1] that the forecast series goes beyond ``threshold`` within its horizon.

    ``direction="above"`` asks for a value greater than ``threshold`` (latency, error rate, queue);
    ``"below"`` for a value smaller than it (throughput, free cache).
    """
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    levels, values = _quantile_table(forecast)
    if direction == "below":
        # P(X < t) is P(-X > -t), and the quantile at level l of -X is minus the one at 1 - l of X.
        levels, values, threshold = 1.0 - levels[::-1], -values[::-1], -threshold
    if values.shape[1] == 0:
        return 0.0
    return max(_exceedance(levels, values[:, step], threshold) for step in range(values.shape[1]))


def _quantile_table(forecast: Forecast) -> tuple[np.ndarray, np.ndarray]:
    """Sorted levels and a (levels x steps) array of their values, the mean standing in for 0.5."""
    table = {float(level): np.asarray(values, dtype=float) for level, values in forecast.quantiles.items()}
    table.setdefault(0.5, np.asarray(forecast.mean, dtype=float))
    levels = np.array(sorted(table))
    values = np.vstack([table[level] for level in levels])
    if not np.isfinite(values).all():
        raise ValueError("the forecast has non-finite values; failure risk cannot be estimated")
    # Guard against crossing quantiles from a model that did not enforce monotonicity.
    return levels, np.maximum.accumulate(values, axis=0)


def _exceedance(levels: np.ndarray, quantiles: np.ndarray, threshold: float) -> float:
    """P(X > threshold) for one step whose quantile function passes through (levels, quantiles)."""
    if threshold < quantiles[0]:
        lower_rate = _tail_rate(
            levels[0],
            levels[1] if len(levels) > 1 else None,
            quantiles[0],
            quantiles[1] if len(levels) > 1 else None,
            upper=False,
        )
        distance = float(quantiles[0]) - float(threshold)
        below = float(levels[0]) * math.exp(-distance * float(lower_rate)) if lower_rate else 0.0
        return 1.0 - below
    if threshold >= quantiles[-1]:
        upper_rate = _tail_rate(
            levels[-1],
            levels[-2] if len(levels) > 1 else None,
            quantiles[-1],
            quantiles[-2] if len(levels) > 1 else None,
            upper=True,
        )
        if not upper_rate:
            return 0.0
        # Python floats: an astronomically far threshold gives exp(-inf) = 0, not a numpy overflow warning.
        distance = float(threshold) - float(quantiles[-1])
        return (1.0 - float(levels[-1])) * math.exp(-distance * float(upper_rate))
    # Inside the table: the CDF is linear between neighbouring quantiles. On a flat stretch (equal
    # quantiles) the highest level reached at the threshold is the CDF there.
    upper = int(np.searchsorted(quantiles, threshold, side="right"))
    lo_q, hi_q = quantiles[upper - 1], quantiles[upper]
    lo_l, hi_l = levels[upper - 1], levels[upper]
    cdf = hi_l if hi_q == lo_q else lo_l + (hi_l - lo_l) * (threshold - lo_q) / (hi_q - lo_q)
    return float(1.0 - cdf)


def _tail_rate(
    outer_level: float, inner_level: float | None, outer_q: float, inner_q: float | None, *, upper: bool
) -> float:
    """Rate of the exponential tail through the two outermost quantiles; 0 means no tail (point mass).

    On the upper side ``P(X > q) = (1 - l)``, so the rate solving both quantiles is
    ``log((1 - inner) / (1 - outer)) / (outer_q - inner_q)``; the lower side mirrors it.
    """
    if inner_level is None or inner_q is None:
        return 0.0
    ratio = (1.0 - inner_level) / (1.0 - outer_level) if upper else inner_level / outer_level
    with np.errstate(over="ignore", divide="ignore"):
        rate = float(np.log(ratio) / np.float64(abs(outer_q - inner_q)))
    # A spread too small to divide by is no spread at all.
    return rate if math.isfinite(rate) else 0.0
