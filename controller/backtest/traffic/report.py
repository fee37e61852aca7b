"""The summary of a traffic backtest: our row beside the judge's baselines, in the judge's fields.

Rows are the judge's JSON lines (:meth:`~controller.backtest.traffic.score.Result.judge_fields`), so
the table reads like the judge's ``evaluate.py --all`` and every number can be checked against it.
Two facts the judge leaves to the reader are added: when a canary reached all the traffic (our
promotion, from the decisions), and why a policy of the file did not act on this scenario.
No simulation and no file I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controller.backtest.traffic.scenario import CANARY, Scenario
from controller.backtest.traffic.settings import Change

Row = Mapping[str, Any]
_COLUMNS = (
    "policy",
    "goodput",
    "errors",
    "SLO minutes",
    "p95 TTFT s",
    "p95 TPOT ms",
    "attempts/req",
    "ejections",
    "false ej. host-s",
    "true ej. host-s",
    "detect s",
)
_CANARY_COLUMNS = ("canary faulty share", "canary share", "canary at 100")


def promoted_at(decisions: Iterable[Change], scenario: Scenario) -> float | None:
    """When the canary first carried all the traffic (every other subset at weight 0); None if never."""
    if not scenario.has_canary:
        return None
    weights = {s.name: s.settings.weight for s in scenario.subsets}
    for change in decisions:
        if change.field != "weight":
            continue
        weights[change.subset] = int(change.value)
        if weights[CANARY] > 0 and all(w == 0 for name, w in weights.items() if name != CANARY):
            return change.time_s
    return None


def markdown(rows: Sequence[Row], scenario: Scenario, promotions: Mapping[str, float | None]) -> str:
    """The rows as the judge's table; ``promotions``: per row's policy, when its canary reached 100."""
    canary = scenario.has_canary
    columns = _COLUMNS + (_CANARY_COLUMNS if canary else ())
    lines = ["| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    for row in rows:
        cells = [
            str(row["policy"]),
            _number(row["goodput"], ".4f"),
            _number(row["error_share"], ".4f"),
            _number(row["slo_attainment_minutes"], ".3f"),
            _number(row["ttft_p95_s"], ".2f"),
            _number(None if row["tpot_p95_s"] is None else row["tpot_p95_s"] * 1000, ".1f"),
            _number(row["attempts_per_request"], ".4f"),
            str(row["ejections"]),
            f"{row['false_ejection_host_s']:.0f}",
            f"{row['true_ejection_host_s']:.0f}",
            _detections(row["detect_s"]),
        ]
        if canary:
            at = promotions.get(str(row["policy"]))
            cells += [
                _number(row.get("canary_faulty_share"), ".4f"),
                _number(row.get("canary_share"), ".4f"),
                "-" if at is None else f"{at:.0f} s",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(
    rows: Sequence[Row], scenario: Scenario, promotions: Mapping[str, float | None], notes: Sequence[str]
) -> str:
    """The heading, the table and the notes of ``summary.md``."""
    head = f"**{scenario.name}** ({rows[0]['requests']} requests, {rows[0]['windows']} SLO windows)"
    parts = [head, "", markdown(rows, scenario, promotions)]
    if notes:
        parts += ["", *(f"- {note}" for note in notes)]
    return "\n".join(parts) + "\n"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _detections(delays: Sequence[float | None]) -> str:
    if not delays:
        return "-"
    return ", ".join("none" if d is None else f"{d:.0f}" for d in delays)
