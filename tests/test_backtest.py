"""The backtester: deterministic, never looks ahead, and the CLI writes what the judge reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from controller.backtest.engine import EngineParams
from controller.backtest.predictive import PredictiveController
from controller.backtest.run import load_policy
from controller.backtest.simulate import simulate
from controller.backtest.trace import Trace, load_trace
from controller.cli import main

REPO = Path(__file__).resolve().parents[1]
# The first 900 s of the Azure code trace (data/traces/README.md): SLICE_S, the length these tests replay.
TRACE = REPO / "data/traces/azure_llm_2023_code_first900s.csv.gz"
POLICY = REPO / "examples/backtest-policy.yaml"
SLICE_S = 900.0


def _slice() -> Trace:
    return load_trace(TRACE).with_arrivals_before(SLICE_S)


def _timeline(trace: Trace) -> list[tuple[float, int]]:
    controller = PredictiveController(load_policy(POLICY))
    run = simulate(trace, controller, EngineParams(), initial_replicas=1)
    return [(d.time_s, d.replicas) for d in run.timeline]


def test_backtest_is_deterministic() -> None:
    trace = _slice()
    assert _timeline(trace) == _timeline(trace)


def test_changing_the_trace_after_t_leaves_earlier_decisions_unchanged() -> None:
    trace = _slice()
    cut = 480.0
    later = trace.arrival_s >= cut
    # Ten times the prompt tokens after the cut: a burst the policy would answer at once.
    changed = Trace(
        trace.name, trace.arrival_s, np.where(later, trace.prompt_tokens * 10, trace.prompt_tokens), trace.output_tokens
    )
    before = [d for d in _timeline(trace) if d[0] <= cut]
    after = [d for d in _timeline(changed) if d[0] <= cut]
    assert before == after
    assert _timeline(trace) != _timeline(changed)


def test_cli_round_trip(tmp_path: Path) -> None:
    sliced = tmp_path / "slice.csv"
    lines = gzip.decompress(TRACE.read_bytes()).decode().splitlines()
    sliced.write_text("\n".join(lines[:1500]) + "\n")
    out = tmp_path / "out"
    assert (
        main(["backtest", "--trace", str(sliced), "--policy", str(POLICY), "--out", str(out), "--baselines", "hpa"])
        == 0
    )
    decisions = (out / "decisions.csv").read_text().splitlines()
    assert decisions[0] == "time_s,desired_replicas"
    times = [float(line.split(",")[0]) for line in decisions[1:]]
    assert times == sorted(times) and all(int(line.split(",")[1]) >= 1 for line in decisions[1:])
    summary = (out / "summary.md").read_text()
    assert "| infercast |" in summary and "| hpa |" in summary
    assert (out / "backtest.png").stat().st_size > 10_000
