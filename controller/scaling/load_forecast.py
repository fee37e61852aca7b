"""History of load samples -> :class:`policies.predictive.LoadForecast`, with no I/O.

The predictive policy is pure: it wants the chosen quantile of load per future step as plain
numbers. This module makes those numbers from whatever history the caller has (the per-second
prompt tokens of a backtest, or a Prometheus range query of prefill tokens/s in the operator):

1. the samples are turned into the burst-aware load of :mod:`forecasting.burst`, since
   a burst of prompt tokens, not the average rate, is what breaks the TTFT SLO;
2. ``WindowPeak`` (:class:`forecasting.WindowPeak`) forecasts the peak of that load over the
   whole window from it directly; every other model forecasts the peak of that load per step
   (``step_s``), and is selected (rolling-origin backtest + conformal calibration,
   :class:`forecasting.AutoForecaster`, or the fixed model the spec names) every
   ``refit_interval_s`` and refitted on the latest history at every forecast.

It keeps the history it was given (trimmed to ``history_s`` plus the longest burst window),
so a caller may feed it incrementally (the backtest, one second at a time) or re-send an
overlapping range every cycle (the operator): samples not newer than the last one are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from controller.scaling.forecast_spec import ForecastModel
from forecasting import (
    BURST_WINDOWS_S,
    AutoForecaster,
    CalibratedForecaster,
    DampedTrend,
    Forecaster,
    ForecastInputError,
    LinearForecaster,
    SeasonalNaive,
    WindowPeak,
    burst_load,
)
from policies.predictive import LoadForecast

#: Fewer steps than this leave nothing to fit: the policy then runs on its reactive path.
MIN_HISTORY_STEPS = 4
#: WindowPeak, in seconds (the model counts in samples): the "recent level" is the mean
#: burst-aware load over this long.
LEVEL_WINDOW_S = 120.0
#: WindowPeak: past forecast origins are taken this often; a decision interval is 15 s by default.
ORIGIN_STRIDE_S = 15.0
#: WindowPeak: an excess seen this long ago weighs half as much as one seen now.
EXCESS_HALF_LIFE_S = 1800.0
#: WindowPeak: excesses older than this many half-lives (weight < 1/256) are not looked at.
EXCESS_MEMORY_HALF_LIVES = 8


@dataclass(frozen=True)
class LoadForecastSettings:
    """``spec.forecast`` resolved to numbers, as far as forecasting the load is concerned.

    ``sample_s`` is the spacing of the samples given to :meth:`LoadForecaster.observe` (1 s in
    the backtest, the range query's step in the operator); each sample is the load rate (e.g.
    prompt tokens/s) averaged over the ``sample_s`` seconds it ends.
    """

    quantile: float = 0.9
    step_s: int = 60
    history_s: float = 172_800.0
    refit_interval_s: float = 600.0
    model: ForecastModel = "Auto"
    ttft_slo_s: float = 2.0
    sample_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if not (self.sample_s > 0 and self.step_s >= self.sample_s and self.step_s % self.sample_s == 0):
            raise ValueError("step_s must be a whole multiple of sample_s > 0")


class LoadForecaster:
    """Forecasts the burst-aware load's per-step peak, at the configured quantile.

    ``observe`` feeds samples, ``forecast(now, window_s)`` returns a forecast covering at least
    ``window_s`` seconds past ``now`` (``None`` while the history is too short or unusable).
    ``refit_due``/``refit`` let the caller run the costly model selection on its own cadence
    (e.g. in a worker process); ``forecast`` refits by itself when one is due.
    """

    def __init__(self, settings: LoadForecastSettings) -> None:
        self.settings = settings
        self._rates: np.ndarray = np.zeros(0)
        self._end_s: float | None = None
        self._model: Forecaster | None = None
        self._selected_at = -math.inf
        # Per horizon, the forecast of the model and history held now: a decision comes every
        # interval (15 s), a sample every ``sample_s`` (20 s at two days' history), so a cycle
        # that brought no new sample forecasts what the last one did. Cleared when either changes.
        self._forecasts: dict[int, LoadForecast | None] = {}

    @property
    def chosen_model(self) -> str | None:
        """The model that forecasts now, named as ``spec.forecast.model`` names models.

        A fixed setting is its own name; ``Auto`` is the model its latest selection chose
        (``None`` until one finished), so that status, the decision log and the refit metric
        say which model the numbers came from, not only that one was to be selected.
        """
        if self.settings.model in ("WindowPeak", *_FIXED_MODELS):
            return self.settings.model
        if self._model is None:
            return None
        chosen = self._model.base if isinstance(self._model, CalibratedForecaster) else self._model
        return next((name for name, kind in _FIXED_MODELS.items() if type(chosen) is kind), type(chosen).__name__)

    @property
    def end_s(self) -> float | None:
        """The end time of the newest sample seen."""
        return self._end_s

    def observe(self, end_s: float, rates: Sequence[float] | np.ndarray) -> None:
        """Add consecutive samples, the last of which ends at ``end_s``.

        Samples not newer than those already held are skipped; a gap longer than one sample
        drops the older history (interpolating an outage would invent load).
        """
        values = np.asarray(rates, dtype=float)
        sample = self.settings.sample_s
        if self._end_s is not None:
            new = round((end_s - self._end_s) / sample)
            if new <= 0:
                return
            if new > len(values):
                self._rates = np.zeros(0)
            values = values[len(values) - min(new, len(values)) :]
        self._rates = np.concatenate((self._rates, np.where(np.isfinite(values), values, 0.0)))
        self._end_s = float(end_s)
        self._forecasts = {}
        keep = int((self.settings.history_s + max(BURST_WINDOWS_S)) // sample)
        if len(self._rates) > 2 * keep:  # trim in chunks: copying every second would be quadratic
            self._rates = self._rates[-keep:]

    def burst_load(self, samples: int | None = None) -> np.ndarray:
        """The burst-aware load (see :mod:`forecasting.burst`) of the newest ``samples``
        samples held (all when ``None``), oldest first, in the samples' unit."""
        sample = self.settings.sample_s
        held = self._rates if samples is None else self._rates[len(self._rates) - min(samples, len(self._rates)) :]
        windows = tuple(sorted({max(1, round(w / sample)) for w in BURST_WINDOWS_S}))
        # burst_load counts windows in samples, so the SLO slack is converted to samples too.
        return burst_load(held * sample, self.settings.ttft_slo_s / sample, windows) / sample

    def latest_load(self) -> float | None:
        """The burst-aware load of the newest sample: the policy's observed load. ``None`` before any."""
        if not len(self._rates):
            return None
        return float(self.burst_load(math.ceil(max(BURST_WINDOWS_S) / self.settings.sample_s))[-1])

    def recent_peak(self, seconds: float) -> float | None:
        """The highest burst-aware load of the samples of the last ``seconds`` (at least one sample):
        what a capacity window is judged against, as the policy divides a forecast peak by the
        capacity. ``None`` before any sample."""
        if not len(self._rates):
            return None
        count = max(1, round(seconds / self.settings.sample_s))
        reach = math.ceil(max(BURST_WINDOWS_S) / self.settings.sample_s)
        return float(np.max(self.burst_load(count + reach)[-count:]))

    def recent_mean(self, seconds: float) -> float | None:
        """The mean rate of the samples of the last ``seconds`` (at least one); ``None`` before any."""
        if not len(self._rates):
            return None
        count = max(1, round(seconds / self.settings.sample_s))
        return float(np.mean(self._rates[-count:]))

    def step_peaks(self) -> np.ndarray:
        """The burst-aware load's peak per whole step of history, the newest ending at :attr:`end_s`."""
        per_step = round(self.settings.step_s / self.settings.sample_s)
        steps = int(self.settings.history_s // self.settings.step_s)
        # The burst windows reach back before the oldest step: compute them over that too.
        reach = math.ceil(max(BURST_WINDOWS_S) / self.settings.sample_s)
        load = self.burst_load(steps * per_step + reach)[-steps * per_step :]
        whole = len(load) // per_step * per_step
        peaks: np.ndarray = load[len(load) - whole :].reshape(-1, per_step).max(axis=1)
        return peaks

    def refit_due(self, now: float) -> bool:
        if self.settings.model == "WindowPeak":
            return False  # nothing to select: its statistics are recomputed at every forecast
        return self._model is None or now - self._selected_at >= self.settings.refit_interval_s

    def refit(self, now: float, window_s: float) -> None:
        """Select the model to refit at every forecast until the next selection (none for WindowPeak)."""
        if self.settings.model == "WindowPeak":
            return
        series = self._series()
        if series is None:
            return
        try:
            self._model = self._select(series, self._horizon(now, window_s))
        except ForecastInputError:
            return
        self._selected_at = now
        self._forecasts = {}

    @property
    def ready(self) -> bool:
        """Whether :meth:`forecast` has a model to forecast with without selecting one first."""
        return self.settings.model == "WindowPeak" or self._model is not None

    def forecast(self, now: float, window_s: float, *, select_when_due: bool = True) -> LoadForecast | None:
        """The quantile of the load per step from the newest sample until ``now + window_s``.

        With ``select_when_due`` false, a due selection is left to the caller's :meth:`refit`
        (run elsewhere) and the model chosen last forecasts.
        """
        if self.settings.model == "WindowPeak":
            return self._window_peak(now, window_s)
        if select_when_due and self.refit_due(now):
            self.refit(now, window_s)  # without a usable history it leaves everything as it was
        if self._model is None:
            return None
        # Depends on ``now`` only through the horizon: the same history, model and horizon give the
        # same forecast, issued at the newest sample.
        horizon = self._horizon(now, window_s)
        if horizon not in self._forecasts:
            self._forecasts[horizon] = self._model_forecast(horizon)
        return self._forecasts[horizon]

    def has_forecast(self, now: float, window_s: float) -> bool:
        """Whether :meth:`forecast` would answer from what it made before (with no new sample nor model since)."""
        return self.settings.model != "WindowPeak" and self._horizon(now, window_s) in self._forecasts

    def remember(self, now: float, window_s: float, forecast: LoadForecast | None) -> None:
        """Keep ``forecast``, made elsewhere from a copy of this forecaster as it is now, as what
        :meth:`forecast` answers until a new sample or model comes."""
        if self.settings.model != "WindowPeak":
            self._forecasts[self._horizon(now, window_s)] = forecast

    def _model_forecast(self, horizon: int) -> LoadForecast | None:
        series = self._series()
        if series is None or self._end_s is None or self._model is None:
            return None
        try:
            predicted = self._model.fit(series).predict(horizon, (self.settings.quantile,))
        except ForecastInputError:
            return None
        upper = np.maximum(predicted.quantile(self.settings.quantile), 0.0)
        return LoadForecast(
            self._end_s, float(self.settings.step_s), tuple(float(v) for v in upper), self.settings.quantile
        )

    def _window_peak(self, now: float, window_s: float) -> LoadForecast | None:
        """:class:`forecasting.WindowPeak`'s one value for the whole window, from the burst-aware load."""
        if self._end_s is None:
            return None
        sample = self.settings.sample_s
        ahead = math.ceil(window_s / sample)
        model = _window_peak_model(self.settings)
        # Only the samples the model reads (memory, window and level): the burst load is computed
        # afresh at every decision, and the history held may be days long.
        load = self.burst_load(model.memory + ahead + model.level)
        try:
            peak = model.peak_quantile(load, pd.Timedelta(seconds=sample), ahead, self.settings.quantile)
        except ForecastInputError:
            return None
        if peak is None:
            return None  # too few past windows to learn the excess from: the policy's reactive path
        upper = max(0.0, peak)
        span = max(now + window_s - self._end_s, sample)
        return LoadForecast(self._end_s, float(span), (upper,), self.settings.quantile)

    def _horizon(self, now: float, window_s: float) -> int:
        issued_at = self._end_s if self._end_s is not None else now
        return max(1, math.ceil((now + window_s - issued_at) / self.settings.step_s))

    def _series(self) -> pd.Series | None:
        peaks = self.step_peaks()
        if len(peaks) < MIN_HISTORY_STEPS:
            return None
        return pd.Series(peaks, index=self._times(len(peaks), self.settings.step_s))

    def _times(self, count: int, spacing: float) -> pd.DatetimeIndex:
        """The end times of ``count`` values ``spacing`` seconds apart, the newest ending at :attr:`end_s`.

        Real times, so that a model with a daily or weekly season sees the time of day.
        """
        end = pd.Timestamp(self._end_s or 0.0, unit="s")
        return pd.date_range(end=end, periods=count, freq=pd.Timedelta(seconds=spacing))

    def _select(self, series: pd.Series, horizon: int) -> Forecaster:
        if self.settings.model in _FIXED_MODELS:
            return _FIXED_MODELS[self.settings.model]()
        return AutoForecaster(horizon=horizon).fit(series).reusable()


#: The models a spec may fix, by their spec name; Auto's choice is reported by the same names.
_FIXED_MODELS: dict[str, type[SeasonalNaive | DampedTrend | LinearForecaster]] = {
    "SeasonalNaive": SeasonalNaive,
    "DampedTrend": DampedTrend,
    "Linear": LinearForecaster,
}


def _window_peak_model(settings: LoadForecastSettings) -> WindowPeak:
    """WindowPeak with the durations above counted in samples; its memory never exceeds the history."""
    sample = settings.sample_s
    return WindowPeak(
        level=max(1, round(LEVEL_WINDOW_S / sample)),
        stride=max(1, round(ORIGIN_STRIDE_S / sample)),
        half_life=EXCESS_HALF_LIFE_S / sample,
        memory=math.ceil(min(settings.history_s, EXCESS_MEMORY_HALF_LIVES * EXCESS_HALF_LIFE_S) / sample),
        min_origins=MIN_HISTORY_STEPS,
    )
