"""The forecasting loop: history plan, gaps in the load history, accuracy, forecasts during a refit, worker pools."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.clients.prometheus import MAX_RANGE_POINTS, RangeSamples
from controller.handlers.lifecycle import SELECTION_WORKER_NICENESS
from controller.scaling.forecast_loop import (
    MAX_FILLED_GAP_S,
    Accuracy,
    ForecastLoop,
    ForecastOutcome,
    dense_tail,
    history_plan,
)
from controller.scaling.load_forecast import LoadForecastSettings
from controller.scaling.workers import worker_pool
from policies.predictive import LoadForecast


@pytest.mark.parametrize(
    ("step_s", "history_s", "expected"),
    [
        pytest.param(60, 3_600, (1, 3_600), id="an-hour-at-one-second"),
        pytest.param(60, 172_800, (20, 172_800), id="two-days-at-the-finest-divisor-that-fits"),
        pytest.param(7, 172_800, (7, 7 * (MAX_RANGE_POINTS - 1)), id="no-divisor-fits-history-is-cut"),
    ],
)
def test_history_plan(step_s: int, history_s: float, expected: tuple[int, float]) -> None:
    assert history_plan(step_s, history_s) == expected


@given(st.integers(1, 3600), st.floats(600, 2_592_000))
def test_a_planned_history_always_fits_one_range_query(step_s: int, history_s: float) -> None:
    sample_s, span = history_plan(step_s, history_s)
    assert step_s % sample_s == 0 and span <= history_s and span / sample_s <= MAX_RANGE_POINTS - 1


def test_short_gaps_are_bridged_high_never_at_zero_and_long_ones_cut_the_history() -> None:
    short = RangeSamples(10, (0.0, 10.0, 40.0, 50.0), (5.0, 6.0, 9.0, 8.0))
    assert dense_tail(short) == (50.0, [5.0, 6.0, 9.0, 9.0, 9.0, 8.0])
    gap = MAX_FILLED_GAP_S + 10
    long = RangeSamples(10, (0.0, 10.0, 10.0 + gap, 20.0 + gap), (5.0, 6.0, 1.0, 2.0))
    assert dense_tail(long) == (20.0 + gap, [1.0, 2.0])


def test_accuracy_compares_each_window_peak_with_what_came() -> None:
    forecast = LoadForecast(issued_at=100.0, step_seconds=10.0, upper=(10.0, 20.0, 30.0))
    accuracy = Accuracy().predicted(forecast, now=100.0, window_s=20.0)  # peak 20 over (100, 120]
    waiting = accuracy.resolve([105.0, 110.0], [12.0, 15.0])
    assert waiting.pairs == () and len(waiting.pending) == 1, "not scored before the window is over"
    scored = waiting.resolve([105.0, 110.0, 115.0, 120.0], [12.0, 15.0, 25.0, 16.0])
    assert scored.pairs == ((20.0, 25.0),) and scored.pending == ()
    assert scored.error_ratio == pytest.approx(5 / 25) and scored.coverage == 0.0
    assert Accuracy().error_ratio is None and Accuracy().coverage is None


class HeldExecutor(Executor):
    """Holds every submitted refit until :meth:`release` runs it: a pool that is busy for as long as a test wants."""

    def __init__(self) -> None:
        self.held: list[tuple[Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.held.append((future, functools.partial(fn, *args, **kwargs)))
        return future

    def release(self) -> None:
        for future, call in self.held:
            future.set_result(call())
        self.held.clear()


async def fetch(start: float, end: float, step_s: float) -> RangeSamples:
    """A sawtooth load, one sample every ``step_s`` seconds."""
    times = tuple(float(t) for t in range(math.ceil(start / step_s) * int(step_s), int(end) + 1, int(step_s)))
    return RangeSamples(step_s, times, tuple(100.0 + t % 50 for t in times))


def test_a_cycle_before_the_next_sample_is_due_sends_no_range_query() -> None:
    settings = LoadForecastSettings(step_s=20, history_s=3_600, refit_interval_s=600, model="Linear", sample_s=20)
    loop = ForecastLoop(settings, "load", 3_600)
    asked: list[tuple[float, float]] = []
    frozen_after = 10_060.0  # Prometheus stops evaluating new samples: every cycle asks again

    async def counted(start: float, end: float, step_s: float) -> RangeSamples:
        asked.append((start, end))
        return await fetch(start, min(end, frozen_after), step_s)

    async def cycles() -> list[ForecastOutcome]:
        outcomes = []
        for now in range(10_000, 10_300, 15):
            outcomes.append(await loop.cycle(counted, now, 30.0, 120.0, None, lambda s, m: None))
            await asyncio.sleep(0.05)  # the first selection, in a thread, finishes
        return outcomes

    outcomes = asyncio.run(cycles())
    # Samples every 20 s: at 10_015 and 10_075 the newest one (10_000, 10_060) is already held.
    assert [end for _, end in asked][:4] == [10_000, 10_030, 10_045, 10_060]
    assert all(end >= frozen_after + 20 for _, end in asked[4:]), "asked again only once a sample was due"
    assert len(asked) == len(outcomes) - 2
    assert outcomes[1].forecast is not None, "a cycle that asked nothing still forecasts from what is held"
    stale = [o.error.reason for o in outcomes if o.error is not None]
    assert stale and set(stale) == {"Stale"}, "a history that stopped growing still goes stale"
    assert outcomes[-1].error is not None and outcomes[-1].forecast is None


def test_the_model_chosen_last_forecasts_while_the_next_selection_waits_for_a_worker() -> None:
    settings = LoadForecastSettings(step_s=10, history_s=3_600, refit_interval_s=60, model="Linear", sample_s=10)
    loop, pool = ForecastLoop(settings, "load", 3_600), HeldExecutor()
    refits: list[str] = []

    async def cycles() -> list[ForecastOutcome]:
        outcomes = []
        for now in range(10_000, 10_400, 15):
            if now in {10_015, 10_300}:
                pool.release()  # the first selection finishes; later, the second one
                await asyncio.sleep(0)  # its completion reaches the event loop
            outcomes.append(await loop.cycle(fetch, now, 30.0, 300.0, pool, lambda s, m: refits.append(m)))
        return outcomes

    outcomes = asyncio.run(cycles())
    first, *rest = outcomes
    assert first.forecast is None and first.refitting, "no model before the first selection"
    assert all(o.forecast is not None for o in rest), "every later cycle forecasts"
    waiting = [o for o in rest if o.refitting]
    assert len(waiting) >= 10, "the second selection fell due after 60 s and waited for the pool until 10300"
    assert refits == ["Linear", "Linear"]


def test_model_selections_run_at_a_lower_cpu_priority_than_the_decisions() -> None:
    pool = worker_pool(1, SELECTION_WORKER_NICENESS)
    assert pool is not None and worker_pool(0) is None
    with pool:
        worker_niceness = pool.submit(os.nice, 0).result(timeout=60)
    assert worker_niceness == min(19, os.nice(0) + SELECTION_WORKER_NICENESS)


class Counting(Executor):
    """Counts what is submitted to ``inner``."""

    def __init__(self, inner: Executor) -> None:
        self.inner, self.submitted = inner, 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)


def test_each_new_sample_is_forecast_once_in_a_worker_process_as_in_the_operators_own() -> None:
    settings = LoadForecastSettings(step_s=10, history_s=3_600, refit_interval_s=600, model="Linear", sample_s=10)
    selections = HeldExecutor()

    async def cycles(forecasts: Executor | None) -> list[LoadForecast | None]:
        loop, outcomes = ForecastLoop(settings, "load", 3_600), []
        # One sample every 10 s: at 10_005 and 10_008 none is new since 10_000.
        for now in (10_000, 10_005, 10_008, 10_012, 10_030):
            selections.release()  # the selection, due at the first cycle, is done by the second
            await asyncio.sleep(0)
            outcome = await loop.cycle(fetch, now, 30.0, 300.0, selections, lambda s, m: None, forecasts=forecasts)
            outcomes.append(outcome.forecast)
        return outcomes

    pool = worker_pool(1)
    assert pool is not None
    with pool:
        counted = Counting(pool)
        pooled = asyncio.run(cycles(counted))
    assert pooled == asyncio.run(cycles(None)), "the same forecasts as in a thread of the operator"
    assert pooled[0] is None and all(f is not None for f in pooled[1:])
    assert counted.submitted == 3, "10_005 (the model's first), 10_012 and 10_030: not again without a new sample"


def test_a_pool_whose_worker_died_starts_again() -> None:
    pool = worker_pool(1, name="test")
    assert pool is not None
    with pool:
        first = pool.submit(os.getpid).result(timeout=60)
        os.kill(first, signal.SIGKILL)
        answers: list[int] = []
        for _ in range(100):  # the tasks sent before the pool noticed its worker's death fail with it
            try:
                answers.append(pool.submit(os.getpid).result(timeout=60))
                break
            except BrokenProcessPool:
                time.sleep(0.1)
    assert answers and answers[0] != first, "a new worker answers"
