"""Leave-one-category-out selection: a category's operating point never depends on its own numbers."""

from __future__ import annotations

import math

from benchmarks.nab_loco import Judged, choose, leave_one_out, left_out, total

CATEGORIES = ("a", "b", "c")


def judged(score: float, windows: int = 10) -> Judged:
    """Numbers of a category with ``windows`` windows whose normalised score is ``score``."""
    null, perfect = -float(windows), float(windows)
    return Judged(null + score / 100.0 * (perfect - null), null, perfect)


def table(scores: dict[float, dict[str, float]]) -> dict[float, dict[str, Judged]]:
    return {level: {c: judged(s) for c, s in row.items()} for level, row in scores.items()}


def test_scores_add_up_over_categories_as_the_judge_normalises_them() -> None:
    pooled = total([judged(50.0, windows=10), judged(100.0, windows=30)])
    assert math.isclose(pooled.score, 87.5)
    assert math.isnan(Judged(-0.22, 0.0, 0.0).score)  # no window: only false positives, no score


def test_the_held_out_category_does_not_influence_its_own_level() -> None:
    scores = {
        2.5: {"a": 60.0, "b": 60.0, "c": 90.0},
        3.0: {"a": 70.0, "b": 70.0, "c": 10.0},
    }
    chosen = leave_one_out(table(scores))
    # "c" prefers 2.5 by far, but the others prefer 3.0, so "c" is judged at 3.0 ...
    assert chosen["c"] == 3.0
    # ... and changing c's own numbers changes nothing about where c is judged.
    scores[2.5]["c"], scores[3.0]["c"] = 0.0, 100.0
    assert leave_one_out(table(scores))["c"] == 3.0
    # "a" left out: b at 3.0 (70) + c at 2.5 (90 before the change) -> the choice follows the others.
    assert chosen["a"] == 2.5


def test_ties_choose_the_higher_level_and_shifts_move_to_the_nearest_neighbour() -> None:
    scores = {level: dict.fromkeys(CATEGORIES, 50.0) for level in (2.5, 2.6, 2.7)}
    assert choose(table(scores), CATEGORIES) == 2.7
    scores[2.6]["a"] = 80.0
    moved = left_out(table(scores), dict.fromkeys(CATEGORIES, 2.7), shift=-0.1)
    assert math.isclose(moved["a"].score, 80.0)
