"""Issue 11's performance point: CPU, wall time and peak memory of the four 3-day backtests.

    python benchmarks/backtest_speed.py [--runs taxi-3d,...] [--baselines none|judge] [--out DIR]
                                        [--reference DIR]

Each run is ``infercast backtest`` exactly as ``benchmarks/backtest_judge.py`` invokes it (same
trace, policy, engine flags and ``--score-from-s``; the plot included), as a subprocess of this
tree's code (``python -m controller.cli`` with this repository first on ``PYTHONPATH``). CPU is
the subprocess's user + system time (``wait4``), not wall time: the machine may be shared.
``--baselines none`` (the default) runs our policy alone; ``judge`` adds the baselines that
``backtest_judge.py`` asks for on that run (HPA, KPA and the Dynamo planners on the default
profile, the planners on heavy-taxi-3d). ``--reference DIR`` compares every ``decisions*.csv``
byte for byte with ``DIR/<run>/``: a speed-up must not change a single decision. Reads
``../shared`` (the traces), which a bare clone does not have.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.backtest_judge import REPO, RUNS, TRACES, Run, backtest_arguments

#: The 3-day runs of issue 11's point "a 3-day backtest in <= 3 min on one core".
SPEED_RUNS = ("taxi-3d", "elb-3d", "heavy-taxi-3d", "heavy-elb-3d")
TARGET_CPU_S = 180.0


@dataclass(frozen=True)
class Measured:
    run: str
    baselines: str
    cpu_s: float
    wall_s: float
    peak_rss_mb: float
    decisions: int
    identical: bool | None
    """Every ``decisions*.csv`` byte-identical to the reference's (``None`` without one)."""


def command(run: Run, out: Path, baselines: tuple[str, ...]) -> list[str]:
    """``infercast backtest`` as ``backtest_judge.backtest`` builds it, run from this tree."""
    return [sys.executable, "-m", "controller.cli", *backtest_arguments(run, out, baselines)]


def measure(run: Run, out: Path, baselines: tuple[str, ...], reference: Path | None) -> Measured:
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    started = time.monotonic()
    with (out / "stdout.txt").open("w") as stdout, (out / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(command(run, out, baselines), cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{run.name}: infercast backtest exited with {process.returncode}; see {out / 'stderr.txt'}")
    decisions = len((out / "decisions.csv").read_text().splitlines()) - 1
    identical = None
    if reference is not None:
        ours = sorted(p.name for p in out.glob("decisions*.csv"))
        identical = bool(ours) and all(
            (reference / run.name / name).is_file()
            and (reference / run.name / name).read_bytes() == (out / name).read_bytes()
            for name in ours
        )
    return Measured(
        run=run.name,
        baselines=",".join(baselines) or "-",
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=wall_s,
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        decisions=decisions,
        identical=identical,
    )


def table(rows: list[Measured]) -> str:
    compared = any(row.identical is not None for row in rows)
    header = "| run | baselines | CPU s | wall s | peak RSS MB | decisions |" + (" identical |" if compared else "")
    lines = [header, "|---|---|---:|---:|---:|---:|" + ("---|" if compared else "")]
    for row in rows:
        same = ("yes" if row.identical else "NO") if row.identical is not None else "-"
        lines.append(
            f"| {row.run} | {row.baselines} | {row.cpu_s:.1f} | {row.wall_s:.1f} | {row.peak_rss_mb:.0f} | "
            f"{row.decisions} |" + (f" {same} |" if compared else "")
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", default=",".join(SPEED_RUNS), help="comma-separated run names")
    parser.add_argument("--baselines", choices=("none", "judge"), default="none")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "backtest_speed")
    parser.add_argument("--reference", type=Path, help="a previous --out to compare decisions*.csv with")
    args = parser.parse_args()
    if not TRACES.exists():
        print(f"benchmarks/backtest_speed.py: {TRACES} (the 3-day traces) is absent; nothing to run")
        return 0
    wanted = args.runs.split(",")
    rows: list[Measured] = []
    for run in (r for r in RUNS if r.name in wanted):
        baselines = run.baselines if args.baselines == "judge" else ()
        rows.append(measure(run, args.out / run.name, baselines, args.reference))
        print(f"{run.name}: {rows[-1].cpu_s:.1f} s CPU", file=sys.stderr)
    print(table(rows))
    slow = [row.run for row in rows if row.cpu_s > TARGET_CPU_S]
    print(
        f"\ntarget: every run under {TARGET_CPU_S:.0f} s of CPU; " + (f"over it: {', '.join(slow)}" if slow else "met")
    )
    return 1 if slow or any(row.identical is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
