"""Run the streaming failure-pattern detector over NAB-layout data; judge it in-sample and leave-one-category-out.

    python benchmarks/nab.py --data ../shared/data/nab/data --out results/nab [--score]
    python benchmarks/nab.py --data ../shared/data/nab/data --out results/nab --loco [--ablation] [--rivals]

Every ``DIR/<category>/<name>.csv`` (columns ``timestamp,value``) is streamed point by point through a
fresh :class:`forecasting.detector.StreamingDetector` with the default configuration (one for all
files), exactly as the controller would feed it, and ``<out>/infercast/<category>/infercast_<name>.csv``
gets ``timestamp,value,anomaly_score`` for every data row. ``--score`` then runs NAB's reference judge
as a subprocess (it is an independent program, never imported) and prints its table: the judge
optimizes the threshold over the files it scores, so that number is in-sample.

``--loco`` judges the detector's own alerts leave-one-category-out (see ``benchmarks/nab_loco.py``):
the alert level is chosen on the other categories from ``LEVELS`` and applied unchanged to the one
left out. It prints, per category and pooled, the in-sample score (level chosen on all categories)
beside the left-out one, and the noise band: the pooled score when every fold's level is moved to a
neighbour. ``--ablation`` does the same for the detector with each part removed (its HalfSpaceTrees member
included); ``--rivals`` for river's and rrcf's streaming detectors (rrcf is the ``bench`` extra) as
baselines, ``--members`` for the same as one more auxiliary family of the detector.
Per-update surprises are cached under ``<out>/cache`` (keyed by the detector's source), so a second
run only re-judges.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.nab_loco import (
    FP_WEIGHT,
    PROFILES,
    Judge,
    Judged,
    choose,
    leave_one_out,
    left_out,
    sweep_loco,
    total,
)
from benchmarks.nab_rivals import RIVALS
from forecasting.detector import (
    WARMUP,
    AlertShaper,
    StreamingDetector,
    combined_surprise,
    make_calibrator,
)

DETECTOR_NAME = "infercast"
DEFAULT_JUDGE = Path("../shared/bench/nab/nab_score.py")
DEFAULT_LABELS = Path("../shared/data/nab/labels/windows.json")
# Alert levels a fold may choose from: -log10 of the family-wise false-alarm probability per update,
# from 1 % to 10^-3.5, in steps of 0.05 (the resolution at which earlier rounds saw the score move).
LEVELS = tuple(round(2.0 + 0.05 * i, 2) for i in range(31))
BAND_SHIFTS = (-0.1, -0.05, 0.05, 0.1)
ALERT = 0.5  # the detector's own alert: score >= 0.5, i.e. surprise >= alert level outside a dead time
FORECASTING = Path(__file__).resolve().parent.parent / "forecasting"
SOURCES = [FORECASTING / name for name in ("detector.py", "robust.py", "shingled.py")]


@dataclass(frozen=True)
class Variant:
    """One configuration of the detector judged under LOCO: constructor arguments changed from the
    defaults, and optionally a rival whose calibrated score joins as an auxiliary family."""

    name: str
    settings: dict[str, object] = field(default_factory=dict)
    member: str | None = None

    def key(self) -> str:
        text = repr((sorted(self.settings.items()), self.member)) + "".join(p.read_text() for p in SOURCES)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT = Variant("infercast")
# Each part of the detector removed alone (see docs/detector.md, fifth and eighth rounds).
ABLATIONS = (
    Variant("- level family", {"level_scales": ()}),
    Variant("- spread family", {"spread_scales": ()}),
    Variant("- daily family", {"seasonal_scales": ()}),
    Variant("- daily single point", {"seasonal_scales": (16, 64)}),
    Variant("- weekly family", {"weekly_scales": ()}),
    Variant("- shape novelty", {"shape_scales": ()}),
    Variant("- HalfSpaceTrees member", {"tree_member": False}),
)


def read_series(path: Path) -> pd.Series:
    data = pd.read_csv(path)
    return pd.Series(data["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(pd.to_datetime(data["timestamp"])))


def score_file(path: Path) -> tuple[pd.DataFrame, float, float]:
    """The NAB results table for one data file, and the wall-clock and CPU seconds spent in ``update``
    (CPU time is the steadier measure on a machine shared with other work)."""
    series = read_series(path)
    started, started_cpu = time.perf_counter(), time.process_time()
    scores = StreamingDetector().score_series(series)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return results_table(path, scores), elapsed, cpu


def results_table(path: Path, scores: np.ndarray) -> pd.DataFrame:
    data = pd.read_csv(path)
    return pd.DataFrame({"timestamp": data["timestamp"], "value": data["value"], "anomaly_score": scores})


def run(data_dir: Path, out_dir: Path) -> Path:
    """Score every file of ``data_dir``; returns the detector's results folder."""
    files = data_files(data_dir)
    results_dir = out_dir / DETECTOR_NAME
    total_rows = 0
    total_seconds = total_cpu = 0.0
    print(f"{'file':<62} {'rows':>6} {'us/update':>10} {'cpu us':>7}")
    for path in files:
        results, elapsed, cpu = score_file(path)
        target = results_dir / path.parent.name / f"{DETECTOR_NAME}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        results.to_csv(target, index=False)
        total_rows += len(results)
        total_seconds += elapsed
        total_cpu += cpu
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<62} {len(results):>6} {1e6 * elapsed / len(results):>10.1f} {1e6 * cpu / len(results):>7.1f}")
    print(
        f"{'total':<62} {total_rows:>6} {1e6 * total_seconds / total_rows:>10.1f} {1e6 * total_cpu / total_rows:>7.1f}"
    )
    print(f"{len(files)} files, {total_rows} updates in {total_seconds:.2f} s ({total_cpu:.2f} s CPU)")
    return results_dir


def data_files(data_dir: Path) -> list[Path]:
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no <category>/<name>.csv files under {data_dir}")
    return files


def judge_table(results_dir: Path, judge_script: Path, labels: Path, data_dir: Path) -> int:
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


# --- per-update surprises (cached), shaped at any alert level ---------------------------------------------


def variant_surprises(variant: Variant, path: Path, member_raw: np.ndarray | None) -> tuple[np.ndarray, float]:
    """The fused surprise (-log10 of the corrected p-value) of every row, NaN where the value is missing,
    and the CPU seconds spent; what :meth:`StreamingDetector.update` shapes into its score.

    ``member_raw``: the member rival's raw scores of the same rows (computed once, see :func:`rival_scores`),
    calibrated against their own past like any statistic and fused as an auxiliary family.
    """
    detector = StreamingDetector(**variant.settings)  # type: ignore[arg-type]
    calibrator = make_calibrator(detector.memory)
    to_statistic = None
    if variant.member is not None:
        from benchmarks.nab_rivals import make_rival

        to_statistic = make_rival(variant.member).statistic
    series = read_series(path)
    out = np.full(len(series), np.nan)
    started = time.process_time()
    for i, (timestamp, value) in enumerate(zip(series.index, series.to_numpy(), strict=True)):
        if not math.isfinite(value):
            continue
        families = detector.family_pvalues(timestamp, float(value))
        if to_statistic is not None and member_raw is not None:
            statistic = to_statistic(float(member_raw[i]))
            if calibrator.total >= WARMUP:
                families.append((calibrator.pvalue(statistic), detector.auxiliary_weight))
            calibrator.add(statistic)
        out[i] = combined_surprise(families)
    return out, time.process_time() - started


def rival_scores(name: str, path: Path) -> tuple[np.ndarray, float]:
    """A rival's raw scores of every row (NaN where the value is missing) and the CPU seconds spent."""
    from benchmarks.nab_rivals import make_rival

    rival = make_rival(name)
    values = read_series(path).to_numpy()
    out = np.full(len(values), np.nan)
    started = time.process_time()
    for i, value in enumerate(values):
        if math.isfinite(value):
            out[i] = rival.score_then_learn(float(value))
    return out, time.process_time() - started


def cached(
    folder: Path, name: str, files: Sequence[Path], compute: Callable[[Path], tuple[np.ndarray, float]]
) -> tuple[dict[Path, np.ndarray], float]:
    """``compute`` of every file, from ``folder`` when present; and CPU microseconds per row."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(name)
    missing = [path for path in files if not (folder / f"{path.parent.name}__{path.stem}.npy").exists()]
    seconds_file = folder / "seconds"
    seconds = float(seconds_file.read_text()) if seconds_file.exists() else 0.0
    if missing:
        with ProcessPoolExecutor(max_workers=WORKERS) as pool:
            for path, (values, elapsed) in zip(missing, pool.map(compute, missing), strict=True):
                np.save(folder / f"{path.parent.name}__{path.stem}.npy", values)
                seconds += elapsed
        seconds_file.write_text(repr(seconds))
    arrays = {path: np.load(folder / f"{path.parent.name}__{path.stem}.npy") for path in files}
    rows = sum(len(a) for a in arrays.values())
    return arrays, 1e6 * seconds / rows


WORKERS = 2


def shaped(surprises: np.ndarray, alert_level: float, dead_time: int) -> np.ndarray:
    """The scores :meth:`StreamingDetector.update` gives for these surprises at ``alert_level``."""
    shaper = AlertShaper(alert_level, dead_time)
    return np.array([0.0 if math.isnan(s) else shaper.score(s) for s in surprises])


def write_results(folder: Path, scores: dict[Path, np.ndarray]) -> None:
    for path, values in scores.items():
        target = folder / path.parent.name / f"{folder.name}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        results_table(path, values).to_csv(target, index=False)


Tables = dict[str, dict[float, dict[str, Judged]]]


def level_tables(judge: Judge, surprises: dict[Path, np.ndarray], dead_time: int, cache: Path) -> Tables:
    """Per profile, alert level and category: the judge's numbers for the detector's own alerts
    (kept in ``cache``, a JSON file, for the same surprises, levels and dead time)."""
    if cache.exists():
        stored = json.loads(cache.read_text())
        return {
            p: {float(level): {c: Judged(*numbers) for c, numbers in row.items()} for level, row in table.items()}
            for p, table in stored.items()
        }
    tables = judged_levels(judge, surprises, dead_time)
    cache.write_text(
        json.dumps({p: {str(level): row for level, row in t.items()} for p, t in tables.items()}, default=astuple)
    )
    return tables


def judged_levels(judge: Judge, surprises: dict[Path, np.ndarray], dead_time: int) -> Tables:
    categories = sorted({path.parent.name for path in surprises})
    fixed = dict.fromkeys(PROFILES, ALERT)

    def judge_level(level: float) -> dict[str, dict[str, Judged]]:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / DETECTOR_NAME
            write_results(folder, {path: shaped(s, level, dead_time) for path, s in surprises.items()})
            per_category = {c: judge.run(folder, [c], fixed) for c in categories}
        return {p: {c: per_category[c][p][0] for c in categories} for p in PROFILES}

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        by_level = dict(zip(LEVELS, pool.map(judge_level, LEVELS), strict=True))
    return {p: {level: by_level[level][p] for level in LEVELS} for p in PROFILES}


# --- reports ------------------------------------------------------------------------------------------------


def cell(judged: Judged, profile: str) -> str:
    """A category's score, or its false-positive count when it has no window."""
    if math.isnan(judged.score):
        return f"{-judged.raw / FP_WEIGHT[profile]:.0f} FP"
    return f"{judged.score:.1f}"


@dataclass(frozen=True)
class LocoResult:
    name: str
    in_sample: float
    left_out: float
    band: tuple[float, float]
    band_mean: float
    left_out_profiles: dict[str, float]


def report_levels(name: str, tables: Tables, us_per_update: float) -> LocoResult:
    """Print the LOCO table of one detector variant (standard profile per category, others pooled)."""
    table = tables["standard"]
    categories = sorted(next(iter(table.values())))
    in_level = choose(table, categories)
    chosen = leave_one_out(table)
    held = left_out(table, chosen)
    print(f"\n## {name}  ({us_per_update:.0f} CPU us/update)")
    print(f"{'category':<24} {'in-sample':>10} {'left-out':>10} {'level (left-out)':>17}")
    for category in categories:
        inside = cell(table[in_level][category], "standard")
        print(f"{category:<24} {inside:>10} {cell(held[category], 'standard'):>10} {chosen[category]:>17.2f}")
    in_sample = total(table[in_level].values()).score
    pooled = total(held.values()).score
    print(f"{'pooled (35 files)':<24} {in_sample:>10.1f} {pooled:>10.1f}   in-sample level {in_level:.2f}")
    shifted = [total(left_out(table, chosen, shift).values()).score for shift in BAND_SHIFTS]
    inside_band = [total(left_out(table, dict.fromkeys(categories, in_level), s).values()).score for s in BAND_SHIFTS]
    band = (min([*shifted, pooled]), max([*shifted, pooled]))
    band_mean = float(np.mean([*shifted, pooled]))
    print(
        f"noise band (every level moved by {BAND_SHIFTS[0]:+.2f}..{BAND_SHIFTS[-1]:+.2f}): "
        f"left-out {band[0]:.1f}..{band[1]:.1f} (mean {band_mean:.1f}), in-sample "
        f"{min([*inside_band, in_sample]):.1f}..{max([*inside_band, in_sample]):.1f}"
    )
    profiles = {}
    for profile in PROFILES:
        profile_table = tables[profile]
        profile_in = total(profile_table[choose(profile_table, categories)].values()).score
        profiles[profile] = total(left_out(profile_table, leave_one_out(profile_table)).values()).score
        print(f"{profile:<20} pooled in-sample {profile_in:5.1f}  left-out {profiles[profile]:5.1f}")
    return LocoResult(name, in_sample, pooled, band, band_mean, profiles)


def report_rival(name: str, judge: Judge, scores: dict[Path, np.ndarray], us_per_update: float) -> LocoResult:
    """Print in-sample (the judge's sweep over all files) and LOCO (the sweep on the other categories)."""
    from benchmarks.nab_rivals import unit_interval

    def unit(raw: np.ndarray) -> np.ndarray:
        return np.array([unit_interval(x) if math.isfinite(x) else 0.0 for x in raw])

    categories = sorted({path.parent.name for path in scores})
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / name
        write_results(folder, {path: unit(raw) for path, raw in scores.items()})
        in_sample = judge.run(folder, categories)
        folds = sweep_loco(judge, folder, categories)
    print(f"\n## {name} (raw scores; {us_per_update:.0f} CPU us/update)")
    for category in categories:
        judged, threshold = folds["standard"][category]
        print(f"{category:<24} left-out {cell(judged, 'standard'):>8}  threshold {threshold:.6g}")
    profiles = {p: total(j for j, _ in folds[p].values()).score for p in PROFILES}
    for profile in PROFILES:
        print(f"{profile:<20} pooled in-sample {in_sample[profile][0].score:5.1f}  left-out {profiles[profile]:5.1f}")
    standard = profiles["standard"]
    return LocoResult(name, in_sample["standard"][0].score, standard, (standard, standard), standard, profiles)


def default_level_sweep(judge: Judge, surprises: dict[Path, np.ndarray], detector: StreamingDetector) -> float:
    """The number published before LOCO: scores at the default level, threshold optimized by the judge."""
    categories = sorted({path.parent.name for path in surprises})
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / DETECTOR_NAME
        write_results(folder, {p: shaped(s, detector.alert_level, detector.dead_time) for p, s in surprises.items()})
        return judge.run(folder, categories)["standard"][0].score


def summary(results: list[LocoResult]) -> None:
    print("\n## summary (standard; pooled over 35 files)")
    print(f"{'detector':<40} {'in-sample':>9} {'left-out':>9} {'band':>12} {'mean':>5} {'low FP':>7} {'low FN':>7}")
    for r in results:
        band = f"{r.band[0]:.1f}..{r.band[1]:.1f}"
        low_fp, low_fn = r.left_out_profiles["reward_low_FP_rate"], r.left_out_profiles["reward_low_FN_rate"]
        print(
            f"{r.name:<40} {r.in_sample:>9.1f} {r.left_out:>9.1f} {band:>12} {r.band_mean:>5.1f}"
            f" {low_fp:>7.1f} {low_fn:>7.1f}"
        )


def rival_cache(out_dir: Path, rival: str, files: Sequence[Path]) -> tuple[dict[Path, np.ndarray], float]:
    return cached(out_dir / "cache" / f"rival-{rival}", rival, files, BoundRival(rival))


def loco(args: argparse.Namespace) -> int:
    if not args.judge.exists():
        print(f"{args.judge} is absent (no ../shared here): nothing to judge")
        return 0
    judge = Judge(args.judge, args.labels, args.data)
    files = data_files(args.data)
    variants = [DEFAULT, *(ABLATIONS if args.ablation else ())]
    variants += [Variant(f"infercast + {rival}", member=rival) for rival in args.members]
    rivals = list(RIVALS) if args.rivals == [] else args.rivals or []
    results = []
    for variant in variants:
        member_raw = None if variant.member is None else rival_cache(args.out, variant.member, files)[0]
        folder = args.out / "cache" / variant.key()
        surprises, us = cached(folder, variant.name, files, BoundVariant(variant, member_raw))
        detector = StreamingDetector(**variant.settings)  # type: ignore[arg-type]
        tables_file = folder / f"levels-{LEVELS[0]}-{LEVELS[-1]}-{len(LEVELS)}-dead{detector.dead_time}.json"
        tables = level_tables(judge, surprises, detector.dead_time, tables_file)
        results.append(report_levels(variant.name, tables, us))
        swept = default_level_sweep(judge, surprises, detector)
        level = detector.alert_level
        print(f"(the judge's own threshold sweep over the scores at the default level {level}: {swept:.3f})")
    for rival in rivals:
        scores, us = rival_cache(args.out, rival, files)
        results.append(report_rival(rival, judge, scores, us))
    summary(results)
    return 0


@dataclass(frozen=True)
class BoundVariant:
    """``variant_surprises`` of one variant, picklable for the process pool."""

    variant: Variant
    member_raw: dict[Path, np.ndarray] | None

    def __call__(self, path: Path) -> tuple[np.ndarray, float]:
        return variant_surprises(self.variant, path, None if self.member_raw is None else self.member_raw[path])


@dataclass(frozen=True)
class BoundRival:
    """``rival_scores`` of one rival, picklable for the process pool."""

    name: str

    def __call__(self, path: Path) -> tuple[np.ndarray, float]:
        return rival_scores(self.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="NAB-layout folder: <category>/<name>.csv")
    parser.add_argument("--out", type=Path, required=True, help="results root; writes <out>/infercast/...")
    parser.add_argument("--score", action="store_true", help="run the reference judge on the results")
    parser.add_argument("--loco", action="store_true", help="leave-one-category-out table (default detector)")
    parser.add_argument("--ablation", action="store_true", help="with --loco: each part of the detector removed")
    parser.add_argument("--rivals", nargs="*", help="with --loco: rivals judged as baselines (none named: all)")
    parser.add_argument("--members", nargs="*", default=[], help="with --loco: rivals tried as ensemble members")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="NAB windows JSON")
    parser.add_argument("--judge", type=Path, default=DEFAULT_JUDGE, help="nab_score.py")
    args = parser.parse_args(argv)
    needed = [args.data, *((args.labels, args.judge) if args.score or args.loco else ())]
    if missing := [path for path in needed if not path.exists()]:
        sys.exit(
            f"benchmarks/nab.py: {missing[0]} is missing (NAB data and judge are in ../shared/, beside the repository)"
        )
    if args.loco:
        return loco(args)
    results_dir = run(args.data, args.out)
    if args.score:
        return judge_table(results_dir, args.judge, args.labels, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
