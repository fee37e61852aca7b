"""Issue 11's proof: our backtest, then the reference judge, on every run; prints the judge's tables.

    python benchmarks/backtest_judge.py [--out results/judge] [--runs conv,code,...] [--judge-baselines]

One configuration for every run, ``examples/backtest-policy.yaml`` (the runs at another attainment
target change ``spec.forecast.slo.attainment`` alone). Engine flags are passed identically to
``infercast backtest`` and to ``../shared/bench/autoscale/evaluate.py``; one-hour traces are scored
from 300 s (``--score-from-s``), 3-day traces whole. For each run: ``infercast backtest`` writes our
``decisions.csv`` and each planner baseline's ``decisions-<name>.csv``; the judge scores every one
(``evaluate.py --decisions``) and runs its own hpa and kpa; with ``--judge-baselines`` also its
static-peak and oracle (slow: the heavy profile's oracle takes about 14 minutes). Results are
cached in ``--out``. Reads ``../shared`` (traces and judge), which a bare clone does not have. The judge is
run as a subprocess, never imported.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRACES = SHARED / "data" / "llm_traces"
JUDGE = SHARED / "bench" / "autoscale"
POLICY = REPO / "examples" / "backtest-policy.yaml"

#: The judge README's heavier profile ("A heavier profile on the 3-day trace"): (our flag, judge's flag, value).
HEAVY = (
    ("--prefill-tokens-per-s", "--prefill-tps", "3000"),
    ("--step-base-s", "--step-base-s", "0.03"),
    ("--step-per-seq-s", "--step-per-seq-s", "0.0003"),
    ("--max-seqs", "--max-seqs", "64"),
    ("--cold-start-s", "--cold-start-s", "300"),
)
PLANNERS = ("dynamo-constant", "dynamo-arima", "dynamo-kalman")
PROPHET = "dynamo-prophet"
BASELINES = ("hpa", "kpa", *PLANNERS)
#: The judge's own baselines: the reactive ones always (seconds), the searches with --judge-baselines (minutes).
JUDGE_REACTIVE = ("hpa", "kpa")
JUDGE_SEARCHES = ("static-peak", "oracle")


@dataclass(frozen=True)
class Run:
    name: str
    trace: str
    heavy: bool
    score_from_s: float
    attainment: float
    target: str
    """Issue 11's target for this run, in words."""
    baselines: tuple[str, ...] = BASELINES
    """The baselines our backtest runs (each a closed-loop run; the judge runs its own hpa and kpa anyway)."""


RUNS = (
    Run("conv", "azure_llm_2023_conv.csv", False, 300, 0.99, ">= 0.99 at <= 1.25x oracle", (*BASELINES, PROPHET)),
    Run("code", "azure_llm_2023_code.csv", False, 300, 0.99, ">= 0.95 at <= 14.5 GPU-h", (*BASELINES, PROPHET)),
    Run("taxi-3d", "multiday_taxi_shape_3d.csv.gz", False, 0, 0.99, ">= 0.99 at <= 1.15x oracle"),
    Run("elb-3d", "multiday_elb_shape_3d.csv.gz", False, 0, 0.99, ">= 0.99 at <= 1.3x oracle"),
    # Heavy runs: the judge's hpa and kpa only (ours reach 64 replicas: slow closed-loop runs, same numbers).
    Run("heavy-taxi-3d", "multiday_taxi_shape_3d.csv.gz", True, 0, 0.99, ">= 0.99 at <= 1.2x oracle", PLANNERS),
    Run("heavy-taxi-3d-0.95", "multiday_taxi_shape_3d.csv.gz", True, 0, 0.95, ">= 0.95, fewer GPU-h than at 0.99", ()),
    Run("heavy-elb-3d", "multiday_elb_shape_3d.csv.gz", True, 0, 0.99, "(the 0.99 reference for the next run)", ()),
    Run("heavy-elb-3d-0.95", "multiday_elb_shape_3d.csv.gz", True, 0, 0.95, ">= 0.95, fewer GPU-h than at 0.99", ()),
)


def policy_for(run: Run, out: Path) -> Path:
    """The example policy, with only ``slo.attainment`` changed when the run asks for another target."""
    document = yaml.safe_load(POLICY.read_text())
    if document["spec"]["forecast"]["slo"]["attainment"] == run.attainment:
        return POLICY
    document["spec"]["forecast"]["slo"]["attainment"] = run.attainment
    path = out / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def judge(run: Run, *args: str) -> dict[str, Any]:
    flags = [flag for _, flag, value in HEAVY for flag in (flag, value)] if run.heavy else []
    score = ["--score-from-s", f"{run.score_from_s:g}"] if run.score_from_s else []
    command = [sys.executable, "evaluate.py", "--trace", str(TRACES / run.trace), *flags, *score, *args]
    result = subprocess.run(command, cwd=JUDGE, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def backtest_arguments(run: Run, out: Path, baselines: Sequence[str]) -> list[str]:
    """``infercast backtest``'s arguments for ``run`` (its engine flags included), writing to ``out``."""
    flags = [flag for ours, _, value in HEAVY for flag in (ours, value)] if run.heavy else []
    return [
        "backtest",
        "--trace",
        str(TRACES / run.trace),
        "--policy",
        str(policy_for(run, out)),
        "--out",
        str(out),
        "--baselines",
        ",".join(baselines),
        "--score-from-s",
        f"{run.score_from_s:g}",
        *flags,
    ]


def backtest(run: Run, out: Path) -> dict[str, Any]:
    command = [str(REPO / ".venv" / "bin" / "infercast"), *backtest_arguments(run, out, run.baselines)]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, text=True)
    summary = dict(json.loads((out / "summary.json").read_text()))
    summary["wall_s"] = time.monotonic() - started
    return summary


def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path.exists():
        return dict(json.loads(path.read_text()))
    value = dict(compute())
    path.write_text(json.dumps(value))
    return value


def table(run: Run, rows: list[tuple[str, dict[str, Any]]], oracle: float | None) -> str:
    header = "| policy | SLO minutes | SLO requests | GPU-hours | x oracle | actions | max replicas |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows:
        gpu = float(row["gpu_hours"])
        ratio = f"{gpu / oracle:.2f}" if oracle else "-"
        lines.append(
            f"| {name} | {float(row['slo_attainment_minutes']):.3f} | "
            f"{float(row['slo_attainment_requests']):.3f} | {gpu:.2f} | {ratio} | "
            f"{row['scale_actions']} | {row['max_replicas']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "judge")
    parser.add_argument("--runs", default=",".join(r.name for r in RUNS), help="comma-separated run names")
    parser.add_argument("--judge-baselines", action="store_true", help="also run the judge's own baselines (slow)")
    args = parser.parse_args()
    if not (JUDGE / "evaluate.py").exists() or not TRACES.exists():
        print(f"benchmarks/backtest_judge.py: {SHARED} (traces and the reference judge) is absent; nothing to run")
        return 0
    wanted = set(args.runs.split(","))
    for run in (r for r in RUNS if r.name in wanted):
        out = args.out / run.name
        out.mkdir(parents=True, exist_ok=True)
        summary = cached(out / "backtest.json", functools.partial(backtest, run, out))
        rows: list[tuple[str, dict[str, Any]]] = []
        searches = JUDGE_SEARCHES if args.judge_baselines or (out / "judge-oracle.json").exists() else ()
        for name in (*JUDGE_REACTIVE, *searches):
            result = cached(out / f"judge-{name}.json", functools.partial(judge, run, "--baseline", name))
            rows.append((f"{name} (judge)", result))
        for name in (b for b in run.baselines if b.startswith("dynamo-")):
            decisions = out / f"decisions-{name}.csv"
            rows.append((name, judge(run, "--decisions", str(decisions))))
        ours = judge(run, "--decisions", str(out / "decisions.csv"))
        rows.append(("infercast", ours))
        oracle = next((float(r["gpu_hours"]) for n, r in rows if n == "oracle (judge)"), None)
        scored = f", scored from {run.score_from_s:g} s" if run.score_from_s else ", scored whole"
        print(
            f"\n### {run.name}: {run.trace}, {'heavy' if run.heavy else 'default'} engine{scored}, "
            f"slo.attainment {run.attainment}; target {run.target}\n"
        )
        print(table(run, rows, oracle))
        policies = {p["policy"]: p for p in summary["policies"]}
        mine = policies["infercast"]
        learned = summary["learned"]
        print(
            f"\ninfercast: {mine['slo_minutes']:.3f} of minutes whole (our scoring), CPU {mine['cpu_s']:.0f} s for "
            f"our policy's run (backtest wall {summary['wall_s']:.0f} s with every baseline); learned capacity "
            f"{learned['capacity']['perReplica']} ({learned['capacity'].get('binding')} binds), lead time "
            f"{learned['leadTime']['seconds']:.0f} s, headroom {learned['slo']['headroom']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
