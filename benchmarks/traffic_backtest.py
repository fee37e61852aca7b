"""Our traffic policies against the judge's baselines, scored by the traffic judge, on every scenario.

    python benchmarks/traffic_backtest.py [--policy examples/traffic-backtest.yaml] [--scenario NAME ...]
                                          [--out DIR] [--scorer judge|ours]

For each scenario of ``../shared/bench/traffic/scenarios`` (in-sample: the judge's) and of
``benchmarks/traffic_scenarios`` (held out: ours, written before any tuning), it runs
``infercast backtest-traffic``'s backtest with the one policy file, then scores our
``decisions.csv`` with the judge's own ``evaluate.py --all --decisions`` (a subprocess, never
imported), which runs its baselines beside it. ``--scorer ours`` scores with our simulator instead
(it reproduces the judge exactly, ``benchmarks/traffic_judge_parity.py``; faster while developing).

It prints one table per group (in-sample, held out), then the judge's own rows per scenario (ours
as ``decisions.csv``), and checks the issue's targets:

* goodput at least the best static baseline's (``none``, ``istio-typical``, ``aggressive``), and
  how many scenarios it is higher on;
* a healthy control (no fault, one rate, no canary): no ejection and no weight change;
* a canary with a fault: the share of requests that met the faulty canary at most half Flagger's;
  a healthy canary: promoted no later than Flagger;
* retry amplification (attempts per request) never above ``istio-typical``'s.

``--seeds 0 1 2 ...`` runs every scenario again with each of these seeds in place of its own (the
judge's draws, hence its arrivals' token counts, fault draws and retries, are a function of the
seed) and prints, per scenario, how ours compares with the best static baseline across seeds: a
difference of a few requests at one seed is not a difference of the policies.

The exit status is 1 when a target is missed (at the scenarios' own seeds). The judge and its data
live in ``../shared``; without them the script says so and exits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.backtest.traffic.command import load_policies, run_backtest
from controller.backtest.traffic.report import markdown, promoted_at
from controller.backtest.traffic.scenario import Scenario, load_scenario
from controller.backtest.traffic.timeline import read_decisions

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
JUDGE_DIR = SHARED / "bench/traffic"
DATA_DIR = SHARED / "data/llm_traces"
GROUPS = {
    "in-sample (the judge's scenarios)": JUDGE_DIR / "scenarios",
    "held out (ours)": REPO / "benchmarks/traffic_scenarios",
}
STATIC = ("none", "istio-typical", "aggressive")
OURS = "decisions.csv"


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    rows: dict[str, dict[str, Any]]  # policy -> the judge's JSON line; ours under OURS
    ours_promoted_s: float | None
    weight_changes: int  # weight rows after t = 0 in our decisions

    @property
    def ours(self) -> dict[str, Any]:
        return self.rows[OURS]

    @property
    def best_static(self) -> tuple[str, float]:
        name = max(STATIC, key=lambda n: self.rows[n]["goodput"])
        return name, float(self.rows[name]["goodput"])

    @property
    def control(self) -> bool:
        s = self.scenario
        return not s.faults and not s.rate_changes and not s.has_canary

    def checks(self) -> dict[str, bool | None]:
        """Each target: met (True), missed (False), or not applicable (None)."""
        ours, flagger = self.ours, self.rows.get("flagger")
        checks: dict[str, bool | None] = {
            "goodput >= best static": ours["goodput"] >= self.best_static[1],
            "attempts <= istio-typical": ours["attempts_per_request"]
            <= self.rows["istio-typical"]["attempts_per_request"],
            "control: no ejection, no weight change": None,
            "bad canary share <= flagger / 2": None,
            "healthy canary promoted <= flagger": None,
        }
        if self.control:
            checks["control: no ejection, no weight change"] = ours["ejections"] == 0 and self.weight_changes == 0
        if flagger is not None and self.scenario.faults:
            checks["bad canary share <= flagger / 2"] = (
                ours["canary_faulty_share"] <= flagger["canary_faulty_share"] / 2
            )
        if flagger is not None and not self.scenario.faults:
            theirs = flagger["flagger"]["at_s"] if flagger["flagger"]["result"] == "promoted" else None
            mine = self.ours_promoted_s
            checks["healthy canary promoted <= flagger"] = mine is not None and (theirs is None or mine <= theirs)
        return checks


def judge_rows(scenario_path: Path, decisions: Path, scratch: Path) -> dict[str, dict[str, Any]]:
    rows_file = (scratch / "rows.jsonl").resolve()  # the judge runs in its own directory
    command = [
        sys.executable,
        "evaluate.py",
        "--scenario",
        str(scenario_path.resolve()),
        "--data",
        str(DATA_DIR),
        "--all",
        "--decisions",
        str(decisions.resolve()),
        "--jsonl",
        str(rows_file),
    ]
    subprocess.run(command, cwd=JUDGE_DIR, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    return {str(row["policy"]): row for row in rows}


def run_one(path: Path, policy: Path, out: Path, scorer: str) -> Outcome:
    scenario = load_scenario(path, DATA_DIR)
    ours_rows = run_backtest(scenario, load_policies(policy), out, plot=False)
    decisions = read_decisions(out / "decisions.csv")
    weight_changes = sum(1 for c in decisions.changes if c.field == "weight" and c.time_s > 0)
    promoted = promoted_at(decisions.changes, scenario)
    if scorer == "judge":
        rows = judge_rows(path, out / "decisions.csv", out)
    else:
        rows = {str(r["policy"]): r for r in ours_rows[:-1]} | {OURS: ours_rows[-1]}
    return Outcome(scenario, rows, promoted, weight_changes)


def table(outcomes: list[Outcome]) -> str:
    head = (
        "| scenario | ours | best static | flagger | ours - best | attempts ours / istio | "
        "ejections ours | bad-canary share ours / flagger | promoted ours / flagger | targets |"
    )
    lines = [head, "|---" + "|---:" * 8 + "|---|"]
    for o in outcomes:
        name, best = o.best_static
        flagger = o.rows.get("flagger")
        ours = o.ours
        checks = o.checks()
        missed = [label for label, ok in checks.items() if ok is False]
        verdict = "all met" if not missed else "missed: " + "; ".join(missed)
        canary = "-"
        promoted = "-"
        if flagger is not None:
            canary = f"{ours['canary_faulty_share']:.4f} / {flagger['canary_faulty_share']:.4f}"
            theirs = flagger["flagger"]
            their_at = f"{theirs['at_s']:.0f}" if theirs["result"] == "promoted" else theirs["result"]
            mine = "-" if o.ours_promoted_s is None else f"{o.ours_promoted_s:.0f}"
            promoted = f"{mine} / {their_at}"
        lines.append(
            f"| {o.scenario.name} | {ours['goodput']:.4f} | {best:.4f} ({name}) | "
            f"{'-' if flagger is None else format(flagger['goodput'], '.4f')} | {ours['goodput'] - best:+.4f} | "
            f"{ours['attempts_per_request']:.4f} / {o.rows['istio-typical']['attempts_per_request']:.4f} | "
            f"{ours['ejections']} | {canary} | {promoted} | {verdict} |"
        )
    return "\n".join(lines)


def with_seed(path: Path, seed: int, folder: Path) -> Path:
    """A copy of the scenario file at ``path`` that draws with ``seed``."""
    raw = json.loads(path.read_text())
    raw["seed"] = seed
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / path.name
    copy.write_text(json.dumps(raw))
    return copy


def seeds_table(runs: dict[str, list[Outcome]]) -> str:
    """Per scenario, ours minus the best static baseline's goodput across seeds, and the targets met."""
    head = (
        "| scenario | seeds | ours - best: mean | min | max | seeds ours >= best | seeds ours > best | "
        "seeds with every other target met |"
    )
    lines = [head, "|---" + "|---:" * 7 + "|"]
    for name, outcomes in runs.items():
        gaps = [o.ours["goodput"] - o.best_static[1] for o in outcomes]
        others = sum(
            all(ok is not False for label, ok in o.checks().items() if label != "goodput >= best static")
            for o in outcomes
        )
        lines.append(
            f"| {name} | {len(gaps)} | {sum(gaps) / len(gaps):+.5f} | {min(gaps):+.4f} | {max(gaps):+.4f} | "
            f"{sum(g >= 0 for g in gaps)} | {sum(g > 0 for g in gaps)} | {others} |"
        )
    return "\n".join(lines)


def judge_table(outcome: Outcome) -> str:
    """The judge's rows of one scenario, in the judge's columns (our row is ``decisions.csv``)."""
    flagger = outcome.rows.get("flagger")
    promotions = {OURS: outcome.ours_promoted_s}
    if flagger is not None and flagger["flagger"]["result"] == "promoted":
        promotions["flagger"] = flagger["flagger"]["at_s"]
    order = [*STATIC, *(["flagger"] if flagger is not None else []), OURS]
    rows = [outcome.rows[name] for name in order]
    return f"**{outcome.scenario.name}**\n\n" + markdown(rows, outcome.scenario, promotions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, default=REPO / "examples/traffic-backtest.yaml")
    parser.add_argument("--scenario", action="append", default=[], help="only scenarios whose name starts so")
    parser.add_argument("--out", type=Path, help="keep each scenario's backtest outputs here (default: a temp dir)")
    parser.add_argument("--scorer", choices=("judge", "ours"), default="judge")
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="also run every scenario with these seeds")
    args = parser.parse_args()
    if not JUDGE_DIR.is_dir() or not DATA_DIR.is_dir():
        print(f"the traffic judge or its data is not in {SHARED}: nothing to compare with")
        return 0
    missed = 0
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        for group, folder in GROUPS.items():
            paths = sorted(
                p for p in folder.glob("*.json") if not args.scenario or p.stem.startswith(tuple(args.scenario))
            )
            if not paths:
                continue
            outcomes = []
            for path in paths:
                outcome = run_one(path, args.policy, root / path.stem, args.scorer)
                outcomes.append(outcome)
                print(f"{path.stem}: done", file=sys.stderr, flush=True)
            higher = sum(o.ours["goodput"] > o.best_static[1] for o in outcomes)
            missed += sum(ok is False for o in outcomes for ok in o.checks().values())
            print(f"\n### {group}: goodput higher than the best static baseline on {higher} of {len(outcomes)}\n")
            print(table(outcomes))
            for outcome in outcomes:
                print(f"\n{judge_table(outcome)}")
            if args.seeds:
                runs: dict[str, list[Outcome]] = {path.stem: [] for path in paths}
                for path in paths:
                    for seed in args.seeds:
                        seed_dir = root / f"seed-{seed}"
                        runs[path.stem].append(
                            run_one(with_seed(path, seed, seed_dir), args.policy, seed_dir / path.stem, args.scorer)
                        )
                        print(f"{path.stem}, seed {seed}: done", file=sys.stderr, flush=True)
                print(f"\n### {group}, seeds {' '.join(map(str, args.seeds))}\n\n{seeds_table(runs)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
