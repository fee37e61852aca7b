"""Score a run as the reference judge does: SLO windows, requests, GPU-hours and scale actions.

``score_from_s`` leaves out of the attainment figures the windows that start before it (rounded up
to a whole window) and the requests arriving in them, for every policy alike, as the judge's
``--score-from-s`` does: at t = 0 a causal controller has no history, in a running cluster it
would. GPU-hours and the p95s still count the whole run. The summary reports both attainments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from controller.backtest.simulate import Run


@dataclass(frozen=True)
class SloTargets:
    ttft_s: float = 2.0
    tpot_s: float = 0.05
    quantile: float = 0.95
    window_s: float = 60.0


@dataclass(frozen=True)
class Summary:
    policy: str
    slo_minutes: float
    slo_requests: float
    ttft_p95_s: float
    tpot_p95_s: float
    gpu_hours: float
    scale_actions: int
    max_replicas: int
    windows: int
    scored_from_s: float = 0.0
    slo_minutes_scored: float | None = None
    """``slo_minutes`` over the windows from ``scored_from_s`` on (``None`` when it is 0)."""
    slo_requests_scored: float | None = None
    cpu_s: float | None = None
    """CPU seconds the closed-loop run took (simulation and controller), when measured."""

    def row(self) -> dict[str, str]:
        scored = {}
        if self.slo_minutes_scored is not None and self.slo_requests_scored is not None:
            scored = {
                f"SLO minutes from {self.scored_from_s:g} s": f"{self.slo_minutes_scored:.3f}",
                f"SLO requests from {self.scored_from_s:g} s": f"{self.slo_requests_scored:.3f}",
            }
        return {
            "policy": self.policy,
            "SLO minutes": f"{self.slo_minutes:.3f}",
            "SLO requests": f"{self.slo_requests:.3f}",
            **scored,
            "p95 TTFT s": f"{self.ttft_p95_s:.2f}",
            "p95 TPOT ms": f"{self.tpot_p95_s * 1000:.1f}",
            "GPU-hours": f"{self.gpu_hours:.2f}",
            "actions": str(self.scale_actions),
            "max replicas": str(self.max_replicas),
            **({"CPU s": f"{self.cpu_s:.0f}"} if self.cpu_s is not None else {}),
        }


def window_table(run: Run, slo: SloTargets) -> pd.DataFrame:
    """Per non-empty SLO window (by arrival time): requests, TTFT and TPOT quantiles, whether it met the SLO."""
    frame = pd.DataFrame(
        {
            "window": np.floor(run.trace.arrival_s / slo.window_s).astype(np.int64),
            "ttft": run.ttft_s,
            "tpot": run.tpot_s,
        }
    )
    groups = frame.groupby("window")
    table = pd.DataFrame(
        {
            "requests": groups.size(),
            "ttft": groups["ttft"].quantile(slo.quantile),
            "tpot": groups["tpot"].quantile(slo.quantile),
        }
    )
    # A window whose requests all produced one token has no TPOT: it meets that target.
    table["met"] = (table["ttft"] <= slo.ttft_s) & ~(table["tpot"] > slo.tpot_s)
    return table


def first_scored_window_s(score_from_s: float, slo: SloTargets) -> float:
    """The start of the first window scored: ``score_from_s`` rounded up to a whole window."""
    return math.ceil(score_from_s / slo.window_s - 1e-9) * slo.window_s if score_from_s > 0 else 0.0


def summarize(run: Run, policy: str, slo: SloTargets, score_from_s: float = 0.0) -> Summary:
    windows = window_table(run, slo)
    request_ok = (run.ttft_s <= slo.ttft_s) & ~(run.tpot_s > slo.tpot_s)
    changes = [d for d in run.timeline[1:] if d.time_s < run.horizon_s]
    tpot = run.tpot_s[~np.isnan(run.tpot_s)]
    minutes_scored = requests_scored = None
    if score_from_s > 0:
        start = first_scored_window_s(score_from_s, slo)
        later = windows[windows.index * slo.window_s >= start - 1e-9]
        kept = request_ok[run.trace.arrival_s >= start - 1e-9]
        if not len(kept):
            raise ValueError(f"no request arrives at or after the scoring start {start:g} s")
        minutes_scored, requests_scored = float(later["met"].mean()), float(kept.mean())
    return Summary(
        policy=policy,
        slo_minutes=float(windows["met"].mean()) if len(windows) else 1.0,
        slo_requests=float(request_ok.mean()) if len(request_ok) else 1.0,
        ttft_p95_s=float(np.nanpercentile(run.ttft_s, 95)) if len(run.ttft_s) else 0.0,
        tpot_p95_s=float(np.percentile(tpot, 95)) if len(tpot) else 0.0,
        gpu_hours=sum(run.provisioned) / 3600.0,
        scale_actions=len(changes),
        max_replicas=max(d.replicas for d in run.timeline),
        windows=len(windows),
        scored_from_s=score_from_s,
        slo_minutes_scored=minutes_scored,
        slo_requests_scored=requests_scored,
    )


def markdown(summaries: list[Summary]) -> str:
    rows = [summary.row() for summary in summaries]
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row.get(key, "") for key in header) + " |" for row in rows]
    return "\n".join(lines)
