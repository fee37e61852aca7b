"""The backtester learns its fleet as the operator does, scores a warm-up apart, and runs the planner baselines.

Synthetic traces only (no ../shared): a bare clone runs these.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.backtest.engine import EngineParams
from controller.backtest.load_predictors import ArimaPredictor, ConstantPredictor, KalmanPredictor
from controller.backtest.planner import PlannerBaseline, engine_rps
from controller.backtest.predictive import PredictiveController
from controller.backtest.run import BASELINES, run_backtest
from controller.backtest.score import SloTargets, first_scored_window_s, summarize, window_table
from controller.backtest.simulate import simulate
from controller.backtest.trace import Trace
from controller.scaling.spec import parse_scaling_policy

POLICY = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
    "minReplicas": 1,
    "maxReplicas": 32,
    "interval": 15,
    "prometheus": {"url": "http://prometheus:9090"},
    "metrics": [{"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 4}}],
    "fallback": {"replicas": 2, "onMetricsUnavailable": "Fallback"},
    "forecast": {"model": "WindowPeak", "capacity": {"unit": "PrefillTokensPerSecond"}},
}


def ramp_trace(seconds: float = 2400.0, seed: int = 0) -> Trace:
    """Poisson arrivals whose rate climbs from 2 to 12 requests/s: the fleet must grow."""
    rng = np.random.default_rng(seed)
    t, arrivals = 0.0, []
    while t < seconds:
        t += rng.exponential(1.0 / (2.0 + 10.0 * t / seconds))
        arrivals.append(t)
    stamps = np.asarray(arrivals[:-1])
    prompts = rng.integers(500, 2500, len(stamps))
    outputs = rng.integers(20, 300, len(stamps))
    return Trace("ramp", stamps - stamps[0], prompts, outputs)


@pytest.fixture(scope="module")
def learned() -> PredictiveController:
    """Our policy after a ramp on a fleet with a 300 s cold start and a 6,000 tokens/s prefill rate."""
    spec = parse_scaling_policy(POLICY)
    assert spec.forecast is not None and spec.forecast.lead_time_s == 90.0, "the spec keeps its default"
    controller = PredictiveController(spec)
    run = simulate(
        ramp_trace(), controller, EngineParams(prefill_tokens_per_s=6000.0, cold_start_s=300.0), initial_replicas=2
    )
    assert len(run.timeline) > 1, "the ramp made the policy scale up"
    return controller


def test_a_300_s_cold_start_is_learned_with_no_spec_change(learned: PredictiveController) -> None:
    assert (learned.lead_time.source, learned.lead_time.seconds) == ("measured", 300.0)
    assert learned.steps[-1].lead_time_s == 300.0, "the policy provisions one learned lead time ahead"


def test_the_capacity_is_learned_from_the_simulated_replicas(learned: PredictiveController) -> None:
    prefill = learned.capacity.resource("prefill")
    assert prefill is not None and prefill.source == "learned"
    assert prefill.per_replica == pytest.approx(6000.0, rel=1e-3), "the prefill rate, measured from prefill seconds"
    assert learned.capacity.binding in ("prefill", "decode")
    assert learned.attainment.minutes > 30, "every minute with requests was judged"


def test_the_warm_up_is_scored_apart_and_gpu_hours_still_count_from_zero() -> None:
    trace = ramp_trace(900.0)
    run = simulate(trace, PredictiveController(parse_scaling_policy(POLICY)), EngineParams(), initial_replicas=1)
    slo = SloTargets()
    whole, warm = summarize(run, "ours", slo), summarize(run, "ours", slo, score_from_s=250.0)
    assert first_scored_window_s(250.0, slo) == 300.0, "rounded up to a whole window"
    windows = window_table(run, slo)
    assert warm.slo_minutes_scored == pytest.approx(windows[windows.index >= 5]["met"].mean())
    assert (warm.slo_minutes, warm.gpu_hours) == (whole.slo_minutes, whole.gpu_hours)
    assert whole.slo_minutes_scored is None


def test_the_profiled_rate_falls_with_longer_prompts_and_outputs() -> None:
    params = EngineParams()
    short, long_prompt, long_output = (
        engine_rps(params, isl, osl, 2.0, 0.05) for isl, osl in [(500, 100), (4000, 100), (500, 800)]
    )
    assert short > long_prompt and short > long_output > 0
    assert long_prompt < params.prefill_tokens_per_s / 4000, "no rate beyond the prefill rate"


def test_the_planner_divides_the_predicted_rate_by_the_profiled_one() -> None:
    rng = np.random.default_rng(3)
    stamps = np.sort(rng.uniform(0, 1800, 9000))  # 5 requests/s
    trace = Trace("steady", stamps - stamps[0], np.full(9000, 1000), np.full(9000, 200))
    planner = PlannerBaseline("constant", EngineParams())
    run = simulate(trace, planner, EngineParams(), initial_replicas=1)
    expected = int(np.ceil(5.0 / engine_rps(EngineParams(), 1000, 200, 2.0, 0.05)))
    assert abs(run.timeline[-1].replicas - expected) <= 1
    assert planner.name == "dynamo-constant" and f"dynamo-{'kalman'}" in BASELINES


def test_the_load_predictors_follow_what_they_are_built_for() -> None:
    constant, kalman, arima = ConstantPredictor(), KalmanPredictor(), ArimaPredictor()
    for value in [0.0, 0.0, *np.arange(10.0, 110.0, 10.0)]:  # an idle start, then a linear ramp
        for predictor in (constant, kalman, arima):
            predictor.add(float(value))
    assert constant.predict_next() == 100.0
    assert kalman.predict_next() == pytest.approx(110.0, rel=0.05), "a local linear trend extrapolates a ramp"
    assert arima.predict_next() == pytest.approx(110.0, rel=0.05)
    assert constant.history.values[0] == 10.0, "the leading zeros of an idle start are skipped"


def test_run_backtest_writes_decisions_summary_with_what_was_learned_and_a_plot(tmp_path: Path) -> None:
    spec = parse_scaling_policy(POLICY)
    summaries = run_backtest(ramp_trace(900.0), spec, EngineParams(), tmp_path, baselines=("hpa",), score_from_s=300.0)
    assert [s.policy for s in summaries] == ["infercast", "hpa"]
    body = json.loads((tmp_path / "summary.json").read_text())
    assert body["learned"]["capacity"]["resources"][0]["resource"] == "prefill"
    assert body["policies"][0]["slo_minutes_scored"] is not None
    assert "infercast learned: capacity" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "backtest.png").stat().st_size > 20_000


def test_no_look_ahead_changing_the_trace_after_t_leaves_earlier_decisions_unchanged() -> None:
    trace, cut = ramp_trace(900.0, seed=5), 480.0
    later = trace.arrival_s >= cut
    changed = Trace(
        trace.name, trace.arrival_s, np.where(later, trace.prompt_tokens * 10, trace.prompt_tokens), trace.output_tokens
    )

    def timeline(of: Trace) -> list[tuple[float, int]]:
        run = simulate(of, PredictiveController(parse_scaling_policy(POLICY)), EngineParams(), initial_replicas=2)
        return [(d.time_s, d.replicas) for d in run.timeline]

    original, altered = timeline(trace), timeline(changed)
    assert [d for d in original if d[0] <= cut] == [d for d in altered if d[0] <= cut]
    assert original != altered, "the change after the cut does change later decisions"
