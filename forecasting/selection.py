"""Automatic model selection by rolling-origin backtest, and conformal calibration of quantiles.

How a series is forecast is decided by how the candidates would have done on its own recent past:

1. **Fallback chain by history length.** Fewer than ``min_selection_points`` points (minutes of
   history) leave nothing to backtest: the damped trend answers and says ``fallback``. Past that,
   seasonality is allowed only when the history covers two cycles (hours: none; two days:
   daily; two weeks: weekly), a rule every model applies through
   :func:`forecasting.seasonality.supported_periods`.
2. **Rolling-origin backtest.** Each candidate is refitted at ``n_origins`` origins spread over
   the recent half of the history and forecasts ``horizon`` steps from each. A candidate's score is the mean
   of its MASE and its 0.9 pinball loss, each relative to seasonal naive's, so 1.0 is "as good as
   the baseline". Candidates are listed simplest first and a later one must beat the best so far
   by ``min_improvement``: a complex model that only ties the baseline in backtest is the one that
   loses to it out of sample.
3. **Adaptive conformal calibration of the selection.** The backtest errors fix how far the
   chosen model's quantiles must be stretched so that, on the recent past, the 0.9 quantile was
   exceeded 10% of the time; the level of that conformal quantile is itself adapted (adaptive
   conformal inference, Gibbs & Candès 2021) by replaying the backtest in time order, so a band
   that kept being exceeded lately is widened beyond what the pooled errors say. The errors are
   not the winner's own: the winner is the candidate that looked best on exactly these origins,
   so its errors there understate what follows (the winner's curse), and calibrating on them
   under-covers. Each origin contributes instead the error of the candidate the rule picks from
   the *other* origins (:func:`held_out_choices`), i.e. of "select, then forecast" judged out of
   sample, origin by origin, at no extra fit.

Selection costs ``n_origins`` fits per candidate; :meth:`AutoForecaster.reusable` hands back the
chosen model and its calibration as one cheap forecaster, to refit every cycle between
selections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from forecasting.base import Forecast, Forecaster, NotFittedError, check_request, clone, make_forecast
from forecasting.hygiene import regularize
from forecasting.level import DampedTrend
from forecasting.metrics import mae, naive_scale, pinball_loss, scaled
from forecasting.regression import LinearForecaster
from forecasting.seasonal import SeasonalNaive

#: Quantile levels calibrated by default: the controller's (0.5, 0.9) and their neighbours.
CALIBRATED_LEVELS = (0.1, 0.5, 0.9, 0.95)
#: The level whose pinball loss enters the selection score.
SCORED_LEVEL = 0.9
#: Levels this close to the median are shifted, not stretched: the model's band there is a hair
#: wide and dividing errors by it gives wild factors (a median is corrected for bias instead).
MIN_STRETCHED_DISTANCE = 0.25
#: Backtests with fewer origins than this are too noisy to choose by.
MIN_ORIGINS = 3


def default_candidates() -> tuple[Forecaster, ...]:
    """The cheap candidates, simplest first; the baseline (seasonal naive) must come first."""
    return (SeasonalNaive(), DampedTrend(), LinearForecaster())


@dataclass(frozen=True)
class Backtest:
    """Forecasts of one model from several origins, with what actually happened.

    Arrays are (origins, horizon), origins in time order; ``origins`` holds each one's training
    length, ``scales`` its naive scale (see :mod:`forecasting.metrics`), so every measure is
    averaged over scale-free origins.
    """

    model: str
    origins: np.ndarray
    actual: np.ndarray
    mean: np.ndarray
    quantiles: Mapping[float, np.ndarray]
    scales: np.ndarray

    def mase_by_origin(self) -> np.ndarray:
        return np.array([scaled(mae(a, m), s) for a, m, s in zip(self.actual, self.mean, self.scales, strict=True)])

    def pinball_by_origin(self, level: float) -> np.ndarray:
        forecasts = self.quantiles[level]
        return np.array(
            [scaled(pinball_loss(a, q, level), s) for a, q, s in zip(self.actual, forecasts, self.scales, strict=True)]
        )

    def mase(self) -> float:
        return float(np.mean(self.mase_by_origin()))

    def pinball(self, level: float) -> float:
        return float(np.mean(self.pinball_by_origin(level)))

    def losses(self, baseline: Backtest) -> np.ndarray:
        """Per-origin selection loss: the mean of MASE and 0.9 pinball loss, each divided by the
        baseline's average, so the baseline's losses average 1.0."""
        mase = _ratio(self.mase_by_origin(), baseline.mase())
        pinball = _ratio(self.pinball_by_origin(SCORED_LEVEL), baseline.pinball(SCORED_LEVEL))
        return np.asarray(0.5 * (mase + pinball))


def rolling_origins(n: int, horizon: int, n_origins: int) -> np.ndarray:
    """Training lengths for a backtest: ``n_origins`` origins spread evenly over the recent half of
    ``n`` points, the last one leaving ``horizon`` points to forecast.

    Spread, not packed at the end: ten origins six steps apart see one hour of a daily series,
    and the model that wins a quiet hour is not the one that wins the day."""
    last = n - horizon
    room = last - n // 2
    if room < 0:
        return np.empty(0, dtype=int)
    stride = max(1, room // max(1, n_origins - 1))
    count = min(n_origins, room // stride + 1)
    return np.asarray(last - stride * np.arange(count)[::-1], dtype=int)


def backtest(
    candidate: Forecaster, y: pd.Series, origins: np.ndarray, horizon: int, levels: Sequence[float]
) -> Backtest:
    """Refit a clone of ``candidate`` on ``y[:origin]`` for each origin and forecast ``horizon``."""
    values = y.to_numpy()
    forecasts = [clone(candidate).fit(y.iloc[:origin]).predict(horizon, levels) for origin in origins]
    return Backtest(
        model=forecasts[-1].model,
        origins=np.asarray(origins),
        actual=np.array([values[origin : origin + horizon] for origin in origins]),
        mean=np.array([forecast.mean for forecast in forecasts]),
        quantiles={level: np.array([forecast.quantile(level) for forecast in forecasts]) for level in levels},
        scales=np.array([naive_scale(values[:origin]) for origin in origins]),
    )


@dataclass(frozen=True)
class Calibration:
    """Per-level affine correction: ``q' = mean + factor * (q - mean) + offset``.

    Normally ``offset`` is 0 and ``factor`` stretches the model's own band (split conformal with a
    normalised score ``(y - mean) / (q - mean)``), which keeps the band's shape across horizons
    and times of day. When the model's band has zero width somewhere (a constant history), or for
    levels near the median (see ``MIN_STRETCHED_DISTANCE``), stretching cannot work and the band is
    replaced by a fixed offset from the mean (``factor`` 0).

    ``conformal_levels`` records, per nominal level, the level of the conformal quantile actually
    taken: the nominal one (with the finite-sample rank) for plain split conformal, or where the
    adaptive replay (:func:`adaptive_level`) left it.
    """

    factors: Mapping[float, float] = field(default_factory=dict)
    offsets: Mapping[float, float] = field(default_factory=dict)
    conformal_levels: Mapping[float, float] = field(default_factory=dict)

    @classmethod
    def from_backtest(
        cls, result: Backtest, levels: Sequence[float], adaptation_rate: float | None = None
    ) -> Calibration:
        """Calibrate ``levels`` on ``result``; ``adaptation_rate`` is the step of adaptive conformal
        inference (``None``: plain split conformal, which assumes the errors exchangeable)."""
        factors: dict[float, float] = {}
        offsets: dict[float, float] = {}
        conformal_levels: dict[float, float] = {}
        errors = result.actual - result.mean
        for level in levels:
            width = result.quantiles[level] - result.mean
            upper = level > 0.5
            in_tail = abs(level - 0.5) >= MIN_STRETCHED_DISTANCE
            stretched = in_tail and bool(np.all(width > 0) if upper else np.all(width < 0))
            # Normalised scores; for a lower quantile the band points down, so its order flips.
            scores, target = (errors / width, level if upper else 1 - level) if stretched else (errors, level)
            adapted = (
                target
                if adaptation_rate is None
                else adaptive_level(scores, result.origins, target, adaptation_rate, result.actual.shape[1])
            )
            quantile = _conformal_quantile(scores.ravel(), adapted)
            factors[level] = quantile if stretched else 0.0
            offsets[level] = 0.0 if stretched else quantile
            conformal_levels[level] = adapted
        return cls(factors=factors, offsets=offsets, conformal_levels=conformal_levels)

    def apply(self, forecast: Forecast) -> Forecast:
        corrected = {
            level: forecast.mean + self.factors[level] * (values - forecast.mean) + self.offsets[level]
            if level in self.factors
            else values
            for level, values in forecast.quantiles.items()
        }
        return make_forecast(forecast.index, forecast.mean, corrected, forecast.model, forecast.fallback)


def adaptive_level(scores: np.ndarray, origins: np.ndarray, level: float, rate: float, horizon: int) -> float:
    """The conformal level to use now, by adaptive conformal inference replayed over a backtest.

    ACI (Gibbs & Candès 2021) keeps a working level ``l`` and, after each forecast, moves it by
    ``rate * (missed - (1 - level))``, where ``missed`` is the share of outcomes above the
    conformal quantile at ``l``. Whatever the drift, the long-run share of misses then converges
    to ``1 - level``: a band exceeded more often than it should be widens until it is not. ACI is
    an online method; an estimator refitted from scratch has no state to carry, so ``fit`` replays
    it: ``scores`` (origins x steps, time order) are visited in order, each origin judged by the
    quantile of the scores of the earlier origins whose outcomes were all known by then
    (``origin + horizon`` at most its own), and the level reached after the last origin is the one
    to calibrate the next forecast with. A working level of 1 or more is the whole line (never
    missed), 0 or less is empty (always missed), as in the paper; the quantile taken of it
    afterwards stays within the observed scores.

    The step is large by ACI's standards (0.005 in the paper, for thousands of steps) because a
    backtest has about twenty origins: a smaller step could not move the level at all.
    """
    working = level
    for i in range(len(scores)):
        known = scores[origins + horizon <= origins[i]]
        if len(known) == 0:
            continue
        if working >= 1:
            missed = 0.0
        elif working <= 0:
            missed = 1.0
        else:
            missed = float(np.mean(scores[i] > _conformal_quantile(known.ravel(), working)))
        working += rate * (missed - (1 - level))
    return working


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``n`` scores: split conformal's finite-sample
    rank, which guarantees ``level`` coverage on exchangeable data. A level that asks past the
    largest score (small ``n``, or an adapted level of 1 or more) gets the largest; one of 0 or
    less the smallest."""
    rank = math.ceil((len(scores) + 1) * level)
    return float(np.sort(scores)[min(max(rank, 1), len(scores)) - 1])


class CalibratedForecaster:
    """A model plus a fixed calibration: what the controller refits every cycle between selections."""

    name: ClassVar[str] = "calibrated"

    def __init__(self, base: Forecaster, calibration: Calibration | None = None) -> None:
        self.base = base
        self.calibration = calibration

    def fit(self, y: pd.Series) -> Self:
        self.model_ = clone(self.base).fit(y)
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "model_"):
            raise NotFittedError("CalibratedForecaster.predict called before fit")
        forecast = self.model_.predict(horizon, levels)
        return forecast if self.calibration is None else self.calibration.apply(forecast)


def choose(losses: Sequence[np.ndarray], min_improvement: float, significance: float) -> int:
    """Position of the winner among per-origin ``losses`` listed simplest first: a later candidate
    replaces the best so far only if it :func:`beats` it."""
    best = 0
    for position in range(1, len(losses)):
        if beats(losses[position], losses[best], min_improvement, significance):
            best = position
    return best


def held_out_choices(losses: Sequence[np.ndarray], min_improvement: float, significance: float) -> np.ndarray:
    """For each origin, the candidate :func:`choose` picks from the other origins' losses alone.

    Calibrating on the winner's own backtest errors is optimistic: among candidates that trade
    places from origin to origin, the one chosen is the one whose errors happened to be small on
    these very origins. Leaving each origin out of the choice that judges it (as leave-one-out
    cross-validation does for a fitted model) makes its error an out-of-sample error of the whole
    procedure: where the choice is clear this is the winner's error anyway; where a single origin
    tipped it, that origin gets the runner-up's (typically larger) error, which is what the
    procedure risks there. The choice itself still uses every origin.
    """
    n_origins = len(losses[0])
    return np.array(
        [
            choose([loss[np.arange(n_origins) != held_out] for loss in losses], min_improvement, significance)
            for held_out in range(n_origins)
        ],
        dtype=int,
    )


def selection_backtest(results: Sequence[Backtest], choices: np.ndarray) -> Backtest:
    """The backtest of "select, then forecast": at each origin, the forecast of the candidate
    ``choices`` names for it (results share their origins, outcomes and scales)."""
    rows = np.arange(len(choices))

    def picked(per_candidate: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(np.stack(per_candidate)[choices, rows])

    first = results[0]
    return Backtest(
        model="selection",
        origins=first.origins,
        actual=first.actual,
        mean=picked([result.mean for result in results]),
        quantiles={level: picked([result.quantiles[level] for result in results]) for level in first.quantiles},
        scales=first.scales,
    )


class AutoForecaster:
    """Chooses among ``candidates`` per series by backtest and calibrates the winner's quantiles.

    ``candidates`` default to :func:`default_candidates`; the first is the baseline the others are
    scored against. ``adaptation_rate`` is the step of the adaptive conformal calibration
    (:func:`adaptive_level`; ``None`` for plain split conformal). Learned: ``scores_``
    (``position:model`` -> score relative to the first), ``backtests_``, ``chosen_`` (the winning
    prototype, unfitted), ``held_out_choices_`` (per backtest origin, the position of the candidate
    chosen without that origin: whose errors calibrate the winner; see :func:`held_out_choices`),
    ``calibration_`` and ``model_`` (the winner refitted on the whole history).
    """

    name: ClassVar[str] = "auto"

    def __init__(
        self,
        candidates: Sequence[Forecaster] | None = None,
        horizon: int = 6,
        n_origins: int = 20,
        calibrated_levels: tuple[float, ...] = CALIBRATED_LEVELS,
        min_selection_points: int = 40,
        min_improvement: float = 0.02,
        significance: float = 0.1,
        adaptation_rate: float | None = 0.1,
    ) -> None:
        self.candidates = candidates
        self.horizon = horizon
        self.n_origins = n_origins
        self.calibrated_levels = calibrated_levels
        self.min_selection_points = min_selection_points
        self.min_improvement = min_improvement
        self.significance = significance
        self.adaptation_rate = adaptation_rate

    def fit(self, y: pd.Series) -> Self:
        clean = regularize(y, min_points=2).values
        candidates = tuple(self.candidates) if self.candidates else default_candidates()
        levels = tuple(sorted({*self.calibrated_levels, SCORED_LEVEL}))
        origins = rolling_origins(len(clean), self.horizon, self.n_origins)
        self.scores_: dict[str, float] = {}
        self.backtests_: dict[str, Backtest] = {}
        self.held_out_choices_ = np.empty(0, dtype=int)
        if len(clean) < self.min_selection_points or len(origins) < MIN_ORIGINS:
            self.fallback_ = True
            self.chosen_: Forecaster = DampedTrend()
            self.calibration_: Calibration | None = None
        else:
            self.fallback_ = False
            self.chosen_, self.calibration_ = self._select(candidates, clean, origins, levels)
        self.model_ = CalibratedForecaster(self.chosen_, self.calibration_).fit(clean)
        return self

    def _select(
        self, candidates: tuple[Forecaster, ...], y: pd.Series, origins: np.ndarray, levels: tuple[float, ...]
    ) -> tuple[Forecaster, Calibration]:
        results = [backtest(candidate, y, origins, self.horizon, levels) for candidate in candidates]
        # keys unique even when two candidates share a model
        self.backtests_ = {f"{position}:{result.model}": result for position, result in enumerate(results)}
        losses = [result.losses(results[0]) for result in results]
        self.scores_ = {key: float(np.mean(loss)) for key, loss in zip(self.backtests_, losses, strict=True)}
        chosen = choose(losses, self.min_improvement, self.significance)
        self.held_out_choices_ = held_out_choices(losses, self.min_improvement, self.significance)
        calibration_backtest = selection_backtest(results, self.held_out_choices_)
        return candidates[chosen], Calibration.from_backtest(
            calibration_backtest, self.calibrated_levels, self.adaptation_rate
        )

    def predict(self, horizon: int, quantiles: Sequence[float] = (0.9,)) -> Forecast:
        levels = check_request(horizon, quantiles)
        if not hasattr(self, "model_"):
            raise NotFittedError("AutoForecaster.predict called before fit")
        forecast = self.model_.predict(horizon, levels)
        return make_forecast(forecast.index, forecast.mean, forecast.quantiles, forecast.model, self.fallback_)

    def reusable(self) -> CalibratedForecaster:
        """The chosen model with its calibration, unfitted: cheap to refit until the next selection."""
        if not hasattr(self, "chosen_"):
            raise NotFittedError("AutoForecaster.reusable called before fit")
        return CalibratedForecaster(self.chosen_, self.calibration_)


def beats(challenger: np.ndarray, incumbent: np.ndarray, min_improvement: float, significance: float) -> bool:
    """Whether per-origin ``challenger`` losses are lower than ``incumbent``'s by more than backtest noise.

    A paired one-sided t-test on the per-origin differences (the Diebold-Mariano test with
    origins far enough apart to be treated as independent): the mean difference must be below
    ``-min_improvement`` times the incumbent's mean loss, and its upper confidence bound at
    ``1 - significance`` below zero. A bare "lower mean" picks, on a bursty series, whichever
    model was lucky on the few bursts the backtest saw; out of sample that model loses to the
    simpler one it replaced.
    """
    difference = challenger - incumbent
    if not np.all(np.isfinite(difference)):
        return False
    mean = float(np.mean(difference))
    if mean >= -min_improvement * float(np.mean(incumbent)):
        return False
    if len(difference) < 2:
        return True
    spread = float(np.std(difference, ddof=1)) / math.sqrt(len(difference))
    # The Student t quantile, imported at the first test rather than with the module (0.3 s that
    # processes never selecting a model would pay; scipy.stats would cost seconds).
    from scipy.special import stdtrit

    return mean + float(stdtrit(len(difference) - 1, 1 - significance)) * spread < 0


def _ratio(values: np.ndarray, baseline: float) -> np.ndarray:
    if baseline > 0 and math.isfinite(baseline):
        return values / baseline
    return np.where(values == baseline, 1.0, np.inf)
