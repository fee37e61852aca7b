"""Per-replica capacity learned per resource: the estimator's rules, and convergence on the fleet engine.

The property tests run the backtest's fleet engine (:mod:`controller.backtest.engine`) on synthetic
steady loads and feed the estimator the windows the backtest builds from it
(:func:`controller.backtest.predictive.capacity_window`, the same windows the operator builds from
Prometheus). The engine's true per-replica capacity is found independently, by bisection on the
engine: the load per replica at which the median minute's p95 latency crosses the SLO.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from controller.backtest.engine import EngineParams
from controller.backtest.predictive import capacity_window
from controller.backtest.score import SloTargets, window_table
from controller.backtest.simulate import FleetView, Observations, Run, simulate
from controller.backtest.trace import Trace
from controller.scaling.capacity import (
    LEARNED_RELATIVE_ERROR,
    MIN_PREFILL_SECONDS,
    CapacityEstimator,
    CapacityObservation,
    CapacityState,
)
from controller.scaling.load_forecast import LoadForecaster, LoadForecastSettings
from forecasting import burst_load

TPOT_SLO = 0.05
REPLICAS = 2


def window(time_s: float, **values: float | None) -> CapacityObservation:
    return CapacityObservation(time_s=time_s, ready_replicas=values.pop("ready", 2.0) or 0.0, **values)  # type: ignore[arg-type]


def test_prefill_rate_is_measured_once_enough_prefilling_was_seen() -> None:
    estimator = CapacityEstimator(TPOT_SLO)
    # 0.1 replica-seconds of prefilling per second over a 60-s window: 6 s, not yet enough.
    estimator.partial_fit(window(60, prefilled=1200.0, prefill_busy=0.1))
    assert estimator.estimate().resource("prefill").source == "unknown"  # type: ignore[union-attr]
    estimator.partial_fit(window(120, prefilled=1200.0, prefill_busy=0.1))
    assert MIN_PREFILL_SECONDS <= 60 * 0.2
    prefill = estimator.estimate().resource("prefill")
    assert prefill is not None and prefill.source == "learned" and prefill.per_replica == pytest.approx(12_000)


def test_the_decode_prior_is_target_utilization_times_the_prefill_rate_until_learned() -> None:
    estimator = CapacityEstimator(TPOT_SLO, target_utilization=0.4)
    estimator.partial_fit(window(60, prefilled=6000.0, prefill_busy=0.5, load=6000.0, generated=1000.0))
    assert estimator.estimate().binding == "prefill", "no TPOT seen: nothing decodes, no decode resource"
    estimator.partial_fit(window(120, prefilled=6000.0, prefill_busy=0.5, load=6000.0, generated=1000.0, tpot_s=0.02))
    capacity = estimator.estimate()
    decode = capacity.resource("decode")
    assert decode is not None and decode.source == "prior" and decode.in_load_unit == pytest.approx(4800)
    assert capacity.per_replica == pytest.approx(4800)
    assert (capacity.binding, capacity.source) == ("decode", "prior")


def test_a_spec_per_replica_is_a_prior_for_every_resource_not_measured() -> None:
    estimator = CapacityEstimator(TPOT_SLO, prior_per_replica=500.0)
    capacity = estimator.estimate()
    assert (capacity.per_replica, capacity.source) == (500.0, "prior")
    estimator.partial_fit(window(60, prefilled=6000.0, prefill_busy=0.5))
    assert estimator.estimate().resource("prefill").source == "learned"  # type: ignore[union-attr]


def test_nothing_known_is_unknown() -> None:
    capacity = CapacityEstimator(TPOT_SLO).estimate()
    assert (capacity.per_replica, capacity.source, capacity.binding) == (None, "unknown", None)


@pytest.mark.parametrize(
    "seen",
    [
        pytest.param(window(60, ready=0.0, prefilled=6000.0, prefill_busy=0.5), id="no-ready-replica"),
        pytest.param(window(60, prefilled=None, prefill_busy=0.5, load=1.0, generated=None), id="signals-missing"),
        pytest.param(window(60, prefilled=math.nan, prefill_busy=-1.0, load=math.nan), id="nan-and-negative"),
    ],
)
def test_windows_missing_their_signals_change_nothing(seen: CapacityObservation) -> None:
    estimator = CapacityEstimator(TPOT_SLO)
    before = estimator.state_
    estimator.partial_fit(seen)
    assert (estimator.state_.prefilled, estimator.state_.w, estimator.state_.recent_mean) == (
        before.prefilled,
        before.w,
        before.recent_mean,
    )


def test_an_overlapping_window_is_skipped() -> None:
    estimator = CapacityEstimator(TPOT_SLO, window_s=60)
    estimator.partial_fit(window(60, prefilled=6000.0, prefill_busy=0.5))
    first = estimator.state_
    estimator.partial_fit(window(75, prefilled=6000.0, prefill_busy=0.5))
    assert estimator.state_ == first


def test_state_round_trips_through_status_and_garbage_starts_afresh() -> None:
    estimator = CapacityEstimator(TPOT_SLO)
    for minute in range(1, 4):
        seen = window(60.0 * minute, prefilled=6e3, prefill_busy=0.5, load=7e3 + minute, generated=900.0, tpot_s=0.03)
        estimator.partial_fit(seen)
    restored = CapacityEstimator(TPOT_SLO, state=CapacityState.from_status(estimator.state_.to_status()))
    assert restored.estimate().per_replica == pytest.approx(estimator.estimate().per_replica, rel=1e-5)
    assert CapacityState.from_status({"w": "lots"}) == CapacityState()
    assert CapacityState.from_status({"w": -1.0}) == CapacityState()


# -- convergence on the fleet engine ----------------------------------------------------------------


class _Hold:
    """Holds the fleet at its size and feeds the estimator one window a minute, as the policy does."""

    name = "hold"
    interval_s = 15.0

    def __init__(self, estimator: CapacityEstimator) -> None:
        self.estimator = estimator
        self.forecaster = LoadForecaster(LoadForecastSettings(model="WindowPeak"))

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        seen = int(self.forecaster.end_s or 0)
        if len(observations) > seen:
            self.forecaster.observe(float(len(observations)), observations.prompt_tokens[seen:])
        seen_window = capacity_window(observations, self.forecaster, now)
        if seen_window is not None:
            self.estimator.partial_fit(seen_window)
        return fleet.desired


def _steady(rates: list[float], seconds: float, prompt: int, output: int, seed: int) -> Trace:
    """Poisson arrivals at each rate (requests/s over the fleet) for ``seconds``, one after another."""
    rng = np.random.default_rng(seed)
    arrivals = []
    for index, rate in enumerate(rates):
        times = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 1.5) + 10))
        arrivals.append(index * seconds + times[times < seconds])
    stamps = np.concatenate(arrivals)
    stamps -= stamps[0]
    return Trace("synthetic", stamps, np.full(len(stamps), prompt), np.full(len(stamps), output))


def _run(params: EngineParams, trace: Trace, estimator: CapacityEstimator | None = None) -> Run:
    controller = _Hold(estimator or CapacityEstimator(TPOT_SLO))
    return simulate(trace, controller, params, initial_replicas=REPLICAS)


def _true_capacity(params: EngineParams, prompt: int, output: int, latency: str, slo: float, high: float) -> float:
    """Requests/s per replica at which the median minute's p95 ``latency`` crosses ``slo`` (bisection)."""
    low = 0.0
    for step in range(6):
        middle = (low + high) / 2
        run = _run(params, _steady([middle * REPLICAS], 300.0, prompt, output, seed=step))
        windows = window_table(run, SloTargets())
        typical = float(np.nanmedian(windows[latency].to_numpy()[1:-1]))
        low, high = (middle, high) if typical <= slo else (low, middle)
    return (low + high) / 2


def _ramp(fluid_rate: float) -> list[float]:
    """Fleet request rates from a third of a replica's fluid capacity to past it: the fleet's own range."""
    return [REPLICAS * fluid_rate * f for f in np.linspace(0.3, 1.15, 7)]


# Few examples, no shrinking: each is a dozen engine runs (about ten seconds on an idle core).
ENGINE_EXAMPLES = settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


@ENGINE_EXAMPLES
@given(prefill_tokens_per_s=st.sampled_from([3000.0, 8000.0]), prompt=st.integers(1500, 3000))
def test_prefill_capacity_converges_on_a_prefill_bound_load(prefill_tokens_per_s: float, prompt: int) -> None:
    """Long prompts, one-token answers: TTFT binds, and the learned prefill rate is the replica's capacity
    for the burst-aware load (the rate that prefills every recent burst within the TTFT SLO)."""
    params = EngineParams(prefill_tokens_per_s=prefill_tokens_per_s)
    estimator = CapacityEstimator(TPOT_SLO)
    fluid = prefill_tokens_per_s / prompt
    _run(params, _steady(_ramp(fluid), 240.0, prompt, 1, seed=1), estimator)
    true_rate = _true_capacity(params, prompt, 1, "ttft", 2.0, high=1.2 * fluid)
    # In the unit the policy divides by: the peak of the burst-aware load per replica in a minute.
    at_capacity = _run(params, _steady([true_rate * REPLICAS], 300.0, prompt, 1, seed=3))
    load = burst_load(np.asarray(at_capacity.observations.prompt_tokens, dtype=float), 2.0)
    true_load = float(np.median(load[: len(load) // 60 * 60].reshape(-1, 60).max(axis=1)[1:-1])) / REPLICAS
    capacity = estimator.estimate()
    assert capacity.binding == "prefill"
    learned = capacity.per_replica
    assert learned is not None and abs(learned / true_load - 1) <= 0.15


@ENGINE_EXAMPLES
@given(
    step_base_s=st.sampled_from([0.012, 0.02, 0.03]),
    step_per_seq_s=st.sampled_from([0.0005, 0.0008]),
    output=st.integers(200, 400),
)
def test_decode_capacity_converges_on_a_decode_bound_load(
    step_base_s: float, step_per_seq_s: float, output: int
) -> None:
    """Short prompts, long answers: TPOT binds, and the fitted line finds where it crosses the SLO."""
    params = EngineParams(step_base_s=step_base_s, step_per_seq_s=step_per_seq_s, max_seqs=512)
    # The fluid model's capacity (mean TPOT at the SLO) places the ramp, not the answer.
    fluid = (TPOT_SLO - step_base_s) / step_per_seq_s / TPOT_SLO / output
    estimator = CapacityEstimator(TPOT_SLO)
    _run(params, _steady(_ramp(fluid), 240.0, 8, output, seed=2), estimator)
    true_rate = _true_capacity(params, 8, output, "tpot", TPOT_SLO, high=1.3 * fluid)
    capacity = estimator.estimate()
    decode = capacity.resource("decode")
    assert capacity.binding == "decode" and decode is not None and decode.per_replica is not None
    assert decode.confidence >= 1 - LEARNED_RELATIVE_ERROR
    assert abs(decode.per_replica / (true_rate * output) - 1) <= 0.15
