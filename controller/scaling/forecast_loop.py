"""One ScalingPolicy's forecasting loop: load history from Prometheus, refits in a worker process, a forecast per cycle.

The costly part of forecasting is choosing and calibrating the model (a rolling-origin
backtest over the history, :class:`forecasting.AutoForecaster`); it runs every
``spec.forecast.refitIntervalSeconds`` in the operator's shared **selection pool**, so neither
the event loop nor the other policies wait for it (a copy of the forecaster goes there
pickled and comes back fitted). A forecast with the chosen model (refitted on the newest history)
costs milliseconds; it is made once per new sample in the **forecast pool**, a process of its own,
also while the next selection runs: only a policy's first selection leaves it without a forecast.
At a thousand policies those milliseconds are a fifth of a core, which the event loop's process
cannot spare. Selections wait for a worker in the order they fell due, so when the pool cannot
keep up (many policies) the selection interval stretches while every cycle still forecasts.
The "history -> forecast" step itself is
:class:`controller.scaling.load_forecast.LoadForecaster`, shared with the backtester; this
module only feeds it and schedules it:

* **History**: one range query of the load over ``historySeconds`` at the start, then only the
  samples since the newest one held, and none in a cycle before the next sample is due (with
  20 s samples and a 15 s interval, one cycle in four). The sample spacing is the finest divisor
  of ``stepSeconds`` that keeps the history within Prometheus' points limit.
* **Gaps**: a short gap (up to :data:`MAX_FILLED_GAP_S`) is filled with the higher of its
  neighbours, never with zero; a longer one starts the history afresh after it, since
  interpolating an outage would invent load.
* **Missing or stale history** (the query fails, or its newest sample is older than
  ``prometheus.maxStaleness``): no forecast this cycle. The policy then follows the last good
  forecast it remembers, decaying to a hold, and never scales down.
* **Accuracy**: every forecast's peak over the window the policy provisions for is later
  compared with the peak load that really came (:class:`Accuracy`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from controller.clients.prometheus import MAX_RANGE_POINTS, MetricError, RangeSamples
from controller.scaling.load_forecast import LoadForecaster, LoadForecastSettings
from policies.predictive import LoadForecast

logger = logging.getLogger(__name__)

#: The longest gap in the load history that is bridged rather than cutting the history.
MAX_FILLED_GAP_S = 300.0
#: Forecast-versus-actual pairs the accuracy is computed over.
ACCURACY_PAIRS = 30

Fetch = Callable[[float, float, float], Awaitable[RangeSamples]]
"""``fetch(start, end, step_s)``: the load's range query (raises :class:`MetricError`), whose
samples lie on multiples of ``step_s`` as :meth:`controller.clients.prometheus.PrometheusPool.range_query`
places them."""
RefitObserver = Callable[[float, str], None]
"""Told the duration in seconds and the chosen model (:attr:`Refitted.model`) of every refit that finished."""


def history_plan(step_s: int, history_s: float) -> tuple[int, float]:
    """(sample spacing, history span): the finest divisor of ``step_s`` whose samples over
    ``history_s`` fit one range query; with none, ``step_s`` and as much history as fits."""
    for divisor in range(1, step_s + 1):
        if step_s % divisor == 0 and history_s / divisor <= MAX_RANGE_POINTS - 1:
            return divisor, history_s
    return step_s, float(step_s * (MAX_RANGE_POINTS - 1))


def dense_tail(samples: RangeSamples, max_gap_s: float = MAX_FILLED_GAP_S) -> tuple[float, list[float]]:
    """(end time, consecutive values) of the newest run of ``samples`` without a gap longer than
    ``max_gap_s``, shorter gaps filled with the higher neighbour."""
    times, step = samples.times, samples.step_s
    values = [samples.values[0]]
    for i in range(1, len(times)):
        value = samples.values[i]
        missing = round((times[i] - times[i - 1]) / step) - 1
        if missing * step >= max_gap_s:
            values = []
        elif missing > 0:
            values += [max(values[-1], value)] * missing
        values.append(value)
    return times[-1], values


@dataclass(frozen=True)
class Prediction:
    """What a forecast said the peak load over ``(start, end]`` would be."""

    start: float
    end: float
    peak: float


@dataclass(frozen=True)
class Accuracy:
    """How the recent forecasts compared with the load that came.

    ``pairs`` are (predicted peak, actual peak) over the window each forecast was used for,
    newest last. ``error_ratio`` is their mean absolute error over the mean actual peak;
    ``coverage`` the share of windows whose actual peak stayed at or below the forecast, which
    should be near the quantile provisioned for (0.9 by default): much lower means the forecast
    is overconfident, much higher that it provisions more than the quantile asks.
    """

    pending: tuple[Prediction, ...] = ()
    pairs: tuple[tuple[float, float], ...] = ()

    def predicted(self, forecast: LoadForecast, now: float, window_s: float) -> Accuracy:
        peak = forecast.peak_between(now, now + window_s)
        if peak is None:
            return self
        return replace(self, pending=(*self.pending, Prediction(now, now + window_s, peak)))

    def resolve(self, times: Sequence[float], loads: Sequence[float]) -> Accuracy:
        """Score every pending prediction whose window ``times`` (sample end times, ascending) now cover."""
        if not times:
            return self
        pending, pairs = [], list(self.pairs)
        for prediction in self.pending:
            if prediction.end > times[-1]:
                pending.append(prediction)
                continue
            actual = [load for t, load in zip(times, loads, strict=True) if prediction.start < t <= prediction.end]
            if actual:  # a window the history no longer (or never) covered is dropped unscored
                pairs.append((prediction.peak, max(actual)))
        return Accuracy(tuple(pending), tuple(pairs[-ACCURACY_PAIRS:]))

    @property
    def error_ratio(self) -> float | None:
        mean_actual = sum(a for _, a in self.pairs) / len(self.pairs) if self.pairs else 0.0
        if mean_actual <= 0:
            return None
        return sum(abs(p - a) for p, a in self.pairs) / len(self.pairs) / mean_actual

    @property
    def coverage(self) -> float | None:
        return sum(a <= p for p, a in self.pairs) / len(self.pairs) if self.pairs else None


@dataclass(frozen=True)
class Refitted:
    """What a refit in a worker sends back: the forecaster with its newly chosen model.

    ``model`` names that model (:attr:`LoadForecaster.chosen_model`), or the spec's setting when
    the selection could not choose one (history unusable): the refit's cost is still the setting's.
    """

    forecaster: LoadForecaster
    seconds: float
    model: str


def refit_in_worker(forecaster: LoadForecaster, now: float, window_s: float) -> Refitted:
    """Runs in the worker process: select and calibrate the model on the history."""
    started = time.perf_counter()
    forecaster.refit(now, window_s)
    seconds = time.perf_counter() - started
    return Refitted(forecaster, seconds, forecaster.chosen_model or forecaster.settings.model)


def forecast_in_worker(forecaster: LoadForecaster, now: float, window_s: float) -> LoadForecast | None:
    """Runs in the worker process (or a thread): the model chosen last, refitted on the history, forecasts."""
    return forecaster.forecast(now, window_s, select_when_due=False)


@dataclass(frozen=True)
class ForecastOutcome:
    """One cycle of the loop: the forecast for the policy (``None`` when there is none fresh) and why."""

    forecast: LoadForecast | None
    observed_load: float | None
    error: MetricError | None = None
    refitting: bool = False


@dataclass
class ForecastLoop:
    """The loop of one policy, as long as its forecast settings and load query stay the same."""

    settings: LoadForecastSettings
    query: str
    history_s: float
    forecaster: LoadForecaster = field(init=False)
    accuracy: Accuracy = field(default_factory=Accuracy)
    _refit: asyncio.Future[Refitted] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.forecaster = LoadForecaster(self.settings)

    @property
    def refitting(self) -> bool:
        return self._refit is not None

    async def cycle(
        self,
        fetch: Fetch,
        now: float,
        window_s: float,
        max_staleness_s: float,
        processes: Executor | None,
        on_refit: RefitObserver,
        sample_age_s: float | None = None,
        *,
        forecasts: Executor | None = None,
    ) -> ForecastOutcome:
        """Fetch the new history, start a refit when one is due, forecast when the model is fresh.

        Refits run in ``processes``, forecasts in ``forecasts`` (each in a thread when ``None``).
        ``sample_age_s`` is the age of the newest raw sample behind the load (a range query
        answers from samples up to 5 minutes old, so only the raw series tells), when known.
        """
        self._collect_refit(on_refit)
        sample = self.settings.sample_s
        held = self.forecaster.end_s
        if held is None or math.floor(now / sample) * sample > held:  # a sample is due that is not held
            start = now - self.history_s if held is None else max(now - self.history_s, held - sample)
            try:
                end, values = dense_tail(await fetch(start, now, sample))
            except MetricError as exc:
                return ForecastOutcome(None, None, exc, self.refitting)
            self.forecaster.observe(end, values)
            held = self.forecaster.end_s or end
        age = max(now - held, sample_age_s or 0.0)
        if age > max_staleness_s:
            stale = MetricError("Stale", f"newest load sample is {age:.0f}s old (maxStaleness {max_staleness_s:.0f}s)")
            return ForecastOutcome(None, None, stale, self.refitting)
        self._score()
        if self.forecaster.refit_due(now) and self._refit is None:
            self._refit = asyncio.get_running_loop().run_in_executor(
                processes, refit_in_worker, copy.deepcopy(self.forecaster), now, window_s
            )
        if not self.forecaster.ready:  # the first selection is still running: nothing to forecast with yet
            return ForecastOutcome(None, self.forecaster.latest_load(), None, refitting=True)
        # The model chosen last keeps forecasting while its successor is selected, however long the
        # pool takes: with many policies a selection may wait minutes for a worker.
        forecast = await self._forecast(now, window_s, forecasts)
        if forecast is not None:
            self.accuracy = self.accuracy.predicted(forecast, now, window_s)
        return ForecastOutcome(forecast, self.forecaster.latest_load(), None, self.refitting)

    async def _forecast(self, now: float, window_s: float, forecasts: Executor | None) -> LoadForecast | None:
        """The forecast of the history held, made once: a cycle that brought no new sample takes
        the one made before. A worker process gets a pickled copy of the forecaster, whose refitted
        model stays there; only the forecast comes back."""
        forecaster = self.forecaster
        if forecaster.has_forecast(now, window_s):
            return forecaster.forecast(now, window_s, select_when_due=False)
        forecast = await asyncio.get_running_loop().run_in_executor(
            forecasts, forecast_in_worker, forecaster, now, window_s
        )
        forecaster.remember(now, window_s, forecast)
        return forecast

    def _collect_refit(self, on_refit: RefitObserver) -> None:
        """Adopt a finished refit: its forecaster replaces ours, and this cycle's range query
        fetches what arrived meanwhile."""
        if self._refit is None or not self._refit.done():
            return
        finished, self._refit = self._refit, None
        try:
            refitted = finished.result()
        except Exception:  # a broken worker must not stop the policy: the refit is retried when due
            logger.exception("forecast model refit failed; retrying at the next cycle")
            return
        self.forecaster = refitted.forecaster
        on_refit(refitted.seconds, refitted.model)

    def _score(self) -> None:
        end = self.forecaster.end_s
        if end is None or not self.accuracy.pending:
            return
        oldest = min(p.start for p in self.accuracy.pending)
        count = max(1, math.ceil((end - oldest) / self.settings.sample_s) + 1)
        loads = self.forecaster.burst_load(count)
        times = [end - self.settings.sample_s * (len(loads) - 1 - i) for i in range(len(loads))]
        self.accuracy = self.accuracy.resolve(times, [float(v) for v in loads])


@dataclass
class ForecastSession:
    """A policy's forecasting for the life of its daemon: a new loop whenever what it forecasts changes."""

    loop: ForecastLoop | None = None

    def loop_for(self, settings: LoadForecastSettings, query: str, history_s: float) -> ForecastLoop:
        current = self.loop
        if current is None or (current.settings, current.query, current.history_s) != (settings, query, history_s):
            self.close()
            current = self.loop = ForecastLoop(settings, query, history_s)
        return current

    def close(self) -> None:
        """Drop the loop and forget a refit in flight (the worker finishes it; nobody collects it)."""
        if self.loop is not None and self.loop._refit is not None:
            self.loop._refit.cancel()
        self.loop = None
