"""Run the streaming failure-pattern detector over a NAB-layout data folder and write NAB-layout results.

    python benchmarks/nab.py --data ../shared/data/nab/data --out results/nab [--score]

Every ``DIR/<category>/<name>.csv`` (columns ``timestamp,value``) is streamed point by point through a
fresh :class:`forecasting.detector.StreamingDetector` with the default configuration (one for all
files), exactly as the controller would feed it, and ``<out>/infercast/<category>/infercast_<name>.csv``
gets ``timestamp,value,anomaly_score`` for every data row. ``--score`` then runs NAB's reference judge
as a subprocess (it is an independent program, never imported) and prints its table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from forecasting.detector import StreamingDetector

DETECTOR_NAME = "infercast"
DEFAULT_JUDGE = Path("../shared/bench/nab/nab_score.py")
DEFAULT_LABELS = Path("../shared/data/nab/labels/windows.json")


def score_file(path: Path) -> tuple[pd.DataFrame, float]:
    """The NAB results table for one data file and the seconds spent in ``update``."""
    data = pd.read_csv(path)
    timestamps = pd.to_datetime(data["timestamp"])
    series = pd.Series(data["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(timestamps))
    started = time.perf_counter()
    scores = StreamingDetector().score_series(series)
    elapsed = time.perf_counter() - started
    results = pd.DataFrame({"timestamp": data["timestamp"], "value": data["value"], "anomaly_score": scores})
    return results, elapsed


def run(data_dir: Path, out_dir: Path) -> Path:
    """Score every file of ``data_dir``; returns the detector's results folder."""
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no <category>/<name>.csv files under {data_dir}")
    results_dir = out_dir / DETECTOR_NAME
    total_rows = 0
    total_seconds = 0.0
    print(f"{'file':<62} {'rows':>6} {'us/update':>10}")
    for path in files:
        results, elapsed = score_file(path)
        target = results_dir / path.parent.name / f"{DETECTOR_NAME}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        results.to_csv(target, index=False)
        total_rows += len(results)
        total_seconds += elapsed
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<62} {len(results):>6} {1e6 * elapsed / len(results):>10.1f}")
    print(f"{'total':<62} {total_rows:>6} {1e6 * total_seconds / total_rows:>10.1f}")
    print(f"{len(files)} files, {total_rows} updates in {total_seconds:.2f} s")
    return results_dir


def judge(results_dir: Path, judge_script: Path, labels: Path, data_dir: Path) -> int:
    """Run NAB's reference scorer on the results and let it print its table."""
    command = [
        sys.executable,
        str(judge_script),
        "--results",
        str(results_dir),
        "--labels",
        str(labels),
        "--data",
        str(data_dir),
    ]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="NAB-layout folder: <category>/<name>.csv")
    parser.add_argument("--out", type=Path, required=True, help="results root; writes <out>/infercast/...")
    parser.add_argument("--score", action="store_true", help="run the reference judge on the results")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="NAB windows JSON (for --score)")
    parser.add_argument("--judge", type=Path, default=DEFAULT_JUDGE, help="nab_score.py (for --score)")
    args = parser.parse_args(argv)
    needed = [args.data, *((args.labels, args.judge) if args.score else ())]
    if missing := [path for path in needed if not path.exists()]:
        sys.exit(
            f"benchmarks/nab.py: {missing[0]} is missing (NAB data and judge are in ../shared/, beside the repository)"
        )
    results_dir = run(args.data, args.out)
    if args.score:
        return judge(results_dir, args.judge, args.labels, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
