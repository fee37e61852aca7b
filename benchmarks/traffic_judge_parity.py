"""Does our traffic backtest reproduce the reference judge? Every scenario, every baseline, both examples.

    python benchmarks/traffic_judge_parity.py [--scenario NAME ...]

For each scenario of ``../shared/bench/traffic/scenarios`` it runs the baselines (``none``,
``istio-typical``, ``aggressive``, and ``flagger`` where the scenario has a canary) and each
example timeline of ``../shared/bench/traffic/examples`` whose number prefix names the scenario
(``05_shift_to_h100.csv`` goes with ``05_slow_pool.json``), once with
:mod:`controller.backtest.traffic` and once with the judge's ``evaluate.py`` as a subprocess
(never imported). It prints a Markdown table with both numbers (``ours / judge``, bold when they
differ) of the main scores, how many of the judge's JSON fields are equal (all but
``runtime_s``, with the judge's rounding), whether the decisions CSV we write equals the judge's
``--write-decisions`` (baselines), and the in-process runtime of both. The exit status is 1 when
anything differs. The judge and its data live in ``../shared``; without it the script says so
and exits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from controller.backtest.traffic.baselines import BASELINES
from controller.backtest.traffic.run import run_baseline, run_scenario
from controller.backtest.traffic.scenario import Scenario, load_scenario
from controller.backtest.traffic.timeline import read_decisions, write_decisions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
JUDGE_DIR = SHARED / "bench/traffic"
DATA_DIR = SHARED / "data/llm_traces"
# (column, JSON field, format) of the scores shown side by side.
SHOWN = (
    ("goodput", "goodput", ".4f"),
    ("errors", "error_share", ".4f"),
    ("SLO min", "slo_attainment_minutes", ".4f"),
    ("p95 TTFT s", "ttft_p95_s", ".3f"),
    ("p95 TPOT s", "tpot_p95_s", ".4f"),
    ("attempts/req", "attempts_per_request", ".4f"),
    ("ejections", "ejections", "d"),
    ("false ej. s", "false_ejection_host_s", ".1f"),
    ("true ej. s", "true_ejection_host_s", ".1f"),
)


@dataclass(frozen=True)
class Row:
    scenario: str
    policy: str
    ours: dict[str, object]
    judge: dict[str, object]
    decisions_equal: bool | None  # None: not compared (a given timeline)

    @property
    def differing(self) -> list[str]:
        keys = (set(self.ours) | set(self.judge)) - {"runtime_s"}
        return sorted(k for k in keys if self.ours.get(k) != self.judge.get(k))

    @property
    def compared(self) -> int:
        return len((set(self.ours) | set(self.judge)) - {"runtime_s"})


def judge(scenario: Path, *args: str) -> dict[str, object]:
    command = [sys.executable, "evaluate.py", "--scenario", str(scenario), "--data", str(DATA_DIR), *args]
    done = subprocess.run(command, cwd=JUDGE_DIR, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def baseline_row(path: Path, scenario: Scenario, name: str, scratch: Path) -> Row:
    theirs_csv, ours_csv = scratch / "judge.csv", scratch / "ours.csv"
    theirs = judge(path, "--baseline", name, "--write-decisions", str(theirs_csv))
    result = run_baseline(scenario, name)
    write_decisions(ours_csv, result.decisions)
    same = ours_csv.read_text() == theirs_csv.read_text()
    return Row(scenario.name, name, result.judge_fields(), theirs, same)


def timeline_row(path: Path, scenario: Scenario, timeline_path: Path) -> Row:
    theirs = judge(path, "--decisions", str(timeline_path))
    result = run_scenario(scenario, read_decisions(timeline_path))
    return Row(scenario.name, timeline_path.name, result.judge_fields(), theirs, None)


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join("none" if v is None else _cell(v, fmt) for v in value) or "-"
    if isinstance(value, (int, float)):
        return format(value, fmt)
    return str(value)


def _pair(ours: object, theirs: object, fmt: str) -> str:
    """``ours / judge``, in bold when they differ."""
    text = f"{_cell(ours, fmt)} / {_cell(theirs, fmt)}"
    return text if ours == theirs else f"**{text}**"


def _flagger_text(fields: dict[str, object]) -> str | None:
    flagger = fields.get("flagger")
    if not isinstance(flagger, dict):
        return None
    at = flagger["at_s"]
    return str(flagger["result"]) + ("" if at is None else f" at {at:g} s")


def table(rows: list[Row]) -> str:
    header = ["scenario", "policy", *(c for c, _, _ in SHOWN), "detect s", "flagger", "fields equal", "decisions.csv"]
    header += ["runtime s"]
    lines = [
        "Each cell: ours / judge (bold when they differ); runtime is each simulator's own in-process time.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---" + "|---:" * (len(header) - 2) + "|",
    ]
    for row in rows:
        cells = [row.scenario, row.policy]
        cells += [_pair(row.ours.get(key), row.judge.get(key), fmt) for _, key, fmt in SHOWN]
        cells.append(_pair(row.ours.get("detect_s"), row.judge.get("detect_s"), ".3f"))
        cells.append(_pair(_flagger_text(row.ours), _flagger_text(row.judge), ""))
        cells.append(f"{row.compared - len(row.differing)}/{row.compared}")
        cells.append({None: "-", True: "equal", False: "**differs**"}[row.decisions_equal])
        cells.append(f"{_cell(row.ours['runtime_s'], '.2f')} / {_cell(row.judge['runtime_s'], '.2f')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="*", default=[], help="scenario names (default: all)")
    args = parser.parse_args()
    if not (JUDGE_DIR / "evaluate.py").is_file():
        print(f"no traffic judge at {JUDGE_DIR}: nothing to compare (the benchmark needs ../shared)")
        return 0
    rows: list[Row] = []
    examples = sorted((JUDGE_DIR / "examples").glob("*.csv"))
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted((JUDGE_DIR / "scenarios").glob("*.json")):
            if args.scenario and path.stem not in args.scenario:
                continue
            scenario = load_scenario(path, DATA_DIR)
            for name in BASELINES:
                if name != "flagger" or scenario.has_canary:
                    rows.append(baseline_row(path, scenario, name, Path(scratch)))
            prefix = path.stem.split("_", 1)[0] + "_"
            rows.extend(timeline_row(path, scenario, e) for e in examples if e.name.startswith(prefix))
            print(f"{path.stem}: done", file=sys.stderr)
    print(table(rows))
    mismatched = [r for r in rows if r.differing or r.decisions_equal is False]
    for row in mismatched:
        print(f"\n{row.scenario} / {row.policy}: differing fields {', '.join(row.differing) or '-'}")
        for key in row.differing:
            print(f"  {key}: ours {row.ours.get(key)!r}, judge {row.judge.get(key)!r}")
    print(f"\n{len(rows) - len(mismatched)} of {len(rows)} runs reproduce the judge exactly.")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
