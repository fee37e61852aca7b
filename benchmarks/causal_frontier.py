"""What a causal policy must spend to meet a share of minutes on a trace: the cheapest rule of a family.

    python benchmarks/causal_frontier.py [--trace CSV] [--lag 1 2] [--targets 0.99 0.98 0.95] [engine flags]

1. **Need per minute.** ``need(k)`` is the fewest replicas that, ready and constant over the whole
   trace, meet minute ``k`` (p95 TTFT and TPOT within the judge's SLO), found by simulating constant
   fleets of 1, 2, ... replicas with the backtester's engine (the judge's model; parity is tested)
   until every minute is met.
2. **The family.** ``r(k) = max(1, ceil(h x max(need(k - lag - M + 1 .. k - lag))) + a)``: hold ``h``
   times the largest need of the last ``M`` minutes the policy has seen in full, plus ``a`` replicas.
   It knows every past minute's *exact* need, which no policy measures; ``lag`` is how many minutes
   before minute ``k`` the replicas must be ordered (a 90 s cold start ordered at ``60 k - 90``
   has seen minute ``k - 2`` in full and half of ``k - 1``: lag 2, and lag 1 as a generous bound).
   Searched over ``h`` in 1..3 (step 0.05), ``M`` in 1..60 and longer windows up to a day, ``a`` in 0..2.
3. **The frontier.** For each target, the rule with the fewest replica-hours whose misses
   (``r(k) < need(k)``) leave that share of minutes met; its replica-hours are a floor on its GPU-hours
   (starting replicas also hold a GPU). Each frontier rule is then written as a timeline, each
   count ordered ``--cold-start-s`` before its minute, and scored by the reference judge
   (``evaluate.py --decisions``), which checks the count of misses with the judge's own fleet.

A rule of the family beats a forecast only where the past predicts the next minute's need; where
it does not (bursts after quiet minutes), no causal rule sees them coming either. docs/backtest.md
uses it for elb-3d's cost target. Reads ``../shared`` (trace and judge); the judge is run as a
subprocess, never imported.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.early_minute_need import JUDGE_DIR, SHARED, judge, write_timeline
from controller.backtest.engine import EngineParams
from controller.backtest.run import add_engine_arguments, engine_params
from controller.backtest.score import SloTargets, window_table
from controller.backtest.simulate import FleetView, Observations, simulate
from controller.backtest.trace import load_trace

DEFAULT_TRACE = SHARED / "data" / "llm_traces" / "multiday_elb_shape_3d.csv.gz"
#: Our engine flags and the judge's spelling of the same (the rest are spelled alike).
JUDGE_FLAG = {"prefill_tokens_per_s": "--prefill-tps"}
WINDOWS = (*range(1, 61), 90, 120, 180, 240, 360, 720, 1440)
FACTORS = np.round(np.arange(1.0, 3.0001, 0.05), 2)


@dataclass(frozen=True)
class Constant:
    """A controller that always wants ``replicas``."""

    replicas: int
    name: str = "constant"
    interval_s: float = 3600.0

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        return self.replicas


@dataclass(frozen=True)
class Rule:
    lag: int
    window: int
    factor: float
    extra: int
    replica_hours: float
    misses: int

    def counts(self, need: np.ndarray) -> np.ndarray:
        return rule_counts(need, self.lag, self.window, self.factor, self.extra)


def minute_need(trace_path: Path, params: EngineParams, slo: SloTargets, limit: int = 64) -> np.ndarray:
    """``need(k)`` for every minute with requests (minutes without requests need one replica)."""
    trace = load_trace(trace_path)
    minutes = math.ceil(trace.horizon_s(slo.window_s) / slo.window_s)
    need = np.zeros(minutes, dtype=np.int64)
    for replicas in range(1, limit + 1):
        run = simulate(trace, Constant(replicas), params, initial_replicas=replicas, max_replicas=limit)
        met = window_table(run, slo)["met"]
        unmet = np.zeros(minutes, dtype=bool)
        unmet[met.index[~met.to_numpy()]] = True
        need[(need == 0) & ~unmet] = replicas
        print(f"  {replicas} replicas: {int(unmet.sum())} minutes still unmet", file=sys.stderr)
        if not unmet.any():
            return need
    sys.exit(f"benchmarks/causal_frontier.py: {limit} replicas do not meet every minute")


def seen_need(need: np.ndarray, lag: int, window: int) -> np.ndarray:
    """The largest need of the last ``window`` minutes seen ``lag`` minutes before each minute."""
    seen: np.ndarray = pd.Series(need).rolling(window, min_periods=1).max().shift(lag).fillna(need[0]).to_numpy(float)
    return seen


def held(seen: np.ndarray, factor: float, extra: int) -> np.ndarray:
    """``max(1, ceil(factor x seen) + extra)``: the replicas a rule holds for a seen need."""
    counts: np.ndarray = np.maximum(np.ceil(factor * seen - 1e-9) + extra, 1).astype(np.int64)
    return counts


def rule_counts(need: np.ndarray, lag: int, window: int, factor: float, extra: int) -> np.ndarray:
    return held(seen_need(need, lag, window), factor, extra)


def frontier(need: np.ndarray, lag: int, targets: list[float], first_scored: int = 0) -> dict[float, Rule]:
    """The cheapest rule of the family meeting each target share of minutes (misses counted on ``need``
    from minute ``first_scored`` on, as the judge's ``--score-from-s``; replica-hours from minute 0)."""
    best: dict[float, Rule] = {}
    scored = need[first_scored:]
    for window in WINDOWS:
        seen = seen_need(need, lag, window)
        for factor in FACTORS:
            for extra in (0, 1, 2):
                counts = held(seen, float(factor), extra)
                misses = int((counts[first_scored:] < scored).sum())
                rule = Rule(lag, window, float(factor), extra, counts.sum() / 60.0, misses)
                for target in targets:
                    allowed = math.floor((1.0 - target) * len(scored) + 1e-9)
                    if rule.misses <= allowed and (
                        target not in best or rule.replica_hours < best[target].replica_hours
                    ):
                        best[target] = rule
    return best


def write_counts(path: Path, counts: np.ndarray, lead_s: float) -> None:
    """Each minute's count requested ``lead_s`` before the minute starts (the first one at t = 0, warm)."""
    rows: list[tuple[float, int]] = []
    for minute, count in enumerate(counts.tolist()):
        time_s = max(60.0 * minute - lead_s, 0.0)
        if rows and rows[-1][0] == time_s:
            rows[-1] = (time_s, count)
        elif not rows or rows[-1][1] != count:
            rows.append((time_s, count))
    write_timeline(path, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--lag", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.99, 0.98, 0.95])
    parser.add_argument("--score-from-s", type=float, default=0.0, help="as the judge's: minutes before are not scored")
    add_engine_arguments(parser)
    args = parser.parse_args()
    if missing := [path for path in (JUDGE_DIR, args.trace) if not path.exists()]:
        sys.exit(f"benchmarks/causal_frontier.py: {missing[0]} is missing (the judge and traces are in ../shared/)")
    params = engine_params(args)
    engine_flags = [
        flag
        for name, value in asdict(params).items()
        for flag in (JUDGE_FLAG.get(name, f"--{name.replace('_', '-')}"), f"{value:g}")
    ]
    trace = str(args.trace.resolve())
    slo = SloTargets()
    first_scored = math.ceil(args.score_from_s / slo.window_s - 1e-9)
    engine_flags += ["--score-from-s", f"{args.score_from_s:g}"] if args.score_from_s else []
    need = minute_need(args.trace, params, slo)
    with tempfile.TemporaryDirectory() as scratch:
        oracle = judge("--trace", trace, *engine_flags, "--baseline", "oracle")
        print(
            f"trace {args.trace.name}, {len(need)} minutes, need per minute "
            f"{ {int(k): int(n) for k, n in zip(*np.unique(need, return_counts=True), strict=True)} }; "
            f"oracle {oracle['slo_attainment_minutes']:.4f} of minutes at {oracle['gpu_hours']:.2f} GPU-hours\n"
        )
        columns = (
            "lag (min)",
            "target",
            "cheapest rule (M, h, a)",
            "misses on need",
            "replica-hours",
            "x oracle",
            "judge: minutes / GPU-hours",
        )
        print("| " + " | ".join(columns) + " |")
        print("|---:|---:|---|---:|---:|---:|---|")
        for lag in args.lag:
            for target, rule in sorted(frontier(need, lag, args.targets, first_scored).items(), reverse=True):
                path = Path(scratch) / f"lag{lag}-{target}.csv"
                write_counts(path, rule.counts(need), params.cold_start_s)
                scored = judge("--trace", trace, *engine_flags, "--decisions", str(path))
                print(
                    f"| {lag} | {target:g} | {rule.window}, {rule.factor:g}, {rule.extra} | {rule.misses} | "
                    f"{rule.replica_hours:.2f} | {rule.replica_hours / float(oracle['gpu_hours']):.2f} | "
                    f"{scored['slo_attainment_minutes']:.4f} / {scored['gpu_hours']:.2f} |"
                )


if __name__ == "__main__":
    main()
