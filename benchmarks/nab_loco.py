"""Leave-one-category-out (LOCO) scoring on NAB with the reference judge: settings chosen without the score.

NAB's judge optimizes the alert threshold over the files it scores, so a score of files whose threshold
was chosen on those same files is in-sample. Here every operating point is chosen on the other
categories and applied unchanged to the category left out:

* for the infercast detector the operating point is its alert level; its own alert (score >= 0.5, what
  the controller acts on) is judged at the judge's fixed threshold 0.5 (``--thresholds``, NAB's
  thresholds.json format), so the judge's sweep cannot move it. The judge gives raw, null and perfect
  scores per category; they add up over files, so the training score of any set of categories, and
  the pooled left-out score, are sums of the judge's own numbers (normalised as it does: 0 = never
  fires, 100 = perfect);
* for a rival with raw scores the judge's sweep picks the threshold on the other categories and the
  left-out category is judged at that fixed threshold.

``artificialNoAnomaly`` has no windows, so no normalised score of its own (null = perfect = 0): it is a
fold like the others (its operating point chosen on the three others), its false positives count in the
pooled left-out score as in NAB's, and the table shows their number.

The judge is run as a subprocess, never imported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
FP_WEIGHT = {"standard": 0.11, "reward_low_FP_rate": 0.22, "reward_low_FN_rate": 0.11}


@dataclass(frozen=True)
class Judged:
    """The judge's raw, null and perfect scores of some files (each a sum over files)."""

    raw: float
    null: float
    perfect: float

    def __add__(self, other: Judged) -> Judged:
        return Judged(self.raw + other.raw, self.null + other.null, self.perfect + other.perfect)

    @property
    def score(self) -> float:
        """The judge's normalised score; NaN when the files have no window."""
        if self.perfect == self.null:
            return math.nan
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def total(parts: Iterable[Judged]) -> Judged:
    result = Judged(0.0, 0.0, 0.0)
    for part in parts:
        result = result + part
    return result


@dataclass(frozen=True)
class Judge:
    """How to run the reference judge on a NAB results folder (``<dir>/<category>/<name>_<file>.csv``)."""

    script: Path
    labels: Path
    data: Path

    def run(
        self, results_dir: Path, only: Iterable[str], thresholds: Mapping[str, float] | None = None
    ) -> dict[str, tuple[Judged, float]]:
        """Per profile: the judge's numbers over the ``only`` categories and the threshold used (the
        judge's optimum, or the profile's fixed one in ``thresholds``)."""
        command = [
            sys.executable,
            str(self.script),
            "--results",
            str(results_dir),
            "--labels",
            str(self.labels),
            "--data",
            str(self.data),
            "--only",
            ",".join(only),
            "--json",
        ]
        with tempfile.TemporaryDirectory() as scratch:
            if thresholds is not None:
                fixed = Path(scratch) / "thresholds.json"
                spec = {profile: {"threshold": threshold} for profile, threshold in thresholds.items()}
                fixed.write_text(json.dumps({results_dir.name: spec}))
                command += ["--thresholds", str(fixed)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        (result,) = json.loads(output).values()
        return {
            profile: (Judged(float(r["raw"]), float(r["null"]), float(r["perfect"])), float(r["threshold"]))
            for profile, r in result.items()
        }


# Judged numbers of one operating point (an alert level) per category.
Table = Mapping[float, Mapping[str, Judged]]


def choose(table: Table, categories: Iterable[str]) -> float:
    """The operating point with the best summed score over ``categories``; on ties the highest (fewer alerts)."""
    names = list(categories)
    return max(table, key=lambda point: (total(table[point][c] for c in names).score, point))


def leave_one_out(table: Table) -> dict[str, float]:
    """For each category, the operating point chosen on all the other categories (never on itself)."""
    categories = sorted(next(iter(table.values())))
    return {held: choose(table, [c for c in categories if c != held]) for held in categories}


def left_out(table: Table, chosen: Mapping[str, float], shift: float = 0.0) -> dict[str, Judged]:
    """Each category judged at the point chosen without it (moved by ``shift`` to the nearest point of the
    table, for the noise band: how much the score depends on exactly where the choice landed)."""
    points = sorted(table)
    result = {}
    for category, point in chosen.items():
        nearest = min(points, key=lambda p: abs(p - (point + shift)))
        result[category] = table[nearest][category]
    return result


def sweep_loco(judge: Judge, results_dir: Path, categories: list[str]) -> dict[str, dict[str, tuple[Judged, float]]]:
    """For raw-score detectors: per profile and category, the left-out numbers at the threshold the judge's
    sweep chose on the other categories, and that threshold."""
    folds: dict[str, dict[str, tuple[Judged, float]]] = {profile: {} for profile in PROFILES}
    for held in categories:
        training = judge.run(results_dir, [c for c in categories if c != held])
        thresholds = {profile: training[profile][1] for profile in PROFILES}
        scored = judge.run(results_dir, [held], thresholds)
        for profile in PROFILES:
            folds[profile][held] = (scored[profile][0], thresholds[profile])
    return folds
