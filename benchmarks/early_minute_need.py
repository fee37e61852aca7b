"""How many ready replicas an early minute of a trace needs, asked of the reference judge itself.

    python benchmarks/early_minute_need.py [--trace CSV] [--until SECONDS] [--replicas 4 5 6 7 8]

Takes the judge's clairvoyant oracle timeline for the trace, replaces everything before ``--until``
by ``k`` replicas held from t = 0 (the judge takes the t = 0 count as warm, i.e. ready at once) and
scores each variant with ``evaluate.py --decisions``. The smallest ``k`` that restores the oracle's
SLO attainment is what the first minutes need; a causal policy must have requested that many one
cold start (90 s) before the minute begins, from the history it had then. docs/backtest.md uses it
for the code trace's minute 3 (default arguments). The judge is run as a subprocess, never imported.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared"
JUDGE_DIR = SHARED / "bench" / "autoscale"
DEFAULT_TRACE = SHARED / "data" / "llm_traces" / "azure_llm_2023_code.csv"


def judge(*args: str) -> dict[str, Any]:
    """The autoscaling judge's JSON line for ``evaluate.py ARGS`` (run as a subprocess)."""
    command = [sys.executable, "evaluate.py", *args]
    result = subprocess.run(command, cwd=JUDGE_DIR, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def write_timeline(path: Path, rows: list[tuple[float, int]]) -> None:
    """A ``time_s,desired_replicas`` decisions file, the judge's input."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["time_s", "desired_replicas"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument(
        "--until", type=float, default=240.0, help="end of the replaced start (default: minute 3's end)"
    )
    parser.add_argument("--replicas", type=int, nargs="+", default=[4, 5, 6, 7, 8])
    args = parser.parse_args()
    if missing := [path for path in (JUDGE_DIR, args.trace) if not path.exists()]:
        sys.exit(f"benchmarks/early_minute_need.py: {missing[0]} is missing (the judge and traces are in ../shared/)")
    trace = str(args.trace.resolve())
    with tempfile.TemporaryDirectory() as scratch:
        oracle_path = Path(scratch) / "oracle.csv"
        oracle = judge("--trace", trace, "--baseline", "oracle", "--write-decisions", str(oracle_path))
        with oracle_path.open() as rows:
            later = [(float(r["time_s"]), int(r["desired_replicas"])) for r in csv.DictReader(rows)]
        later = [(t, k) for t, k in later if t >= args.until]
        print(
            f"trace {args.trace.name}: oracle {oracle['slo_attainment_minutes']:.4f} of minutes, "
            f"{oracle['gpu_hours']:.2f} GPU-hours\n"
        )
        print(f"| replicas held over [0, {args.until:g}) s | SLO minutes | GPU-hours |")
        print("|---:|---:|---:|")
        for replicas in args.replicas:
            path = Path(scratch) / f"k{replicas}.csv"
            write_timeline(path, [(0.0, replicas), *later])
            scored = judge("--trace", trace, "--decisions", str(path))
            print(f"| {replicas} | {scored['slo_attainment_minutes']:.4f} | {scored['gpu_hours']:.2f} |")


if __name__ == "__main__":
    main()
