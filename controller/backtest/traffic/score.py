"""Score a traffic run as the judge does (README, "Scores"): goodput, errors, SLO minutes, ejections.

Inputs are a finished :class:`~controller.backtest.traffic.simulator.RunRecord` and the SLO
targets; the output is a :class:`Result` at full precision, and ``Result.judge_fields()`` gives the
judge's JSON line (same keys, same rounding) so that the two can be compared field by field.
Nothing here simulates or reads files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from controller.backtest.score import SloTargets
from controller.backtest.traffic.flagger import FlaggerOutcome
from controller.backtest.traffic.scenario import CANARY, Fault
from controller.backtest.traffic.settings import Change, ProxySettings
from controller.backtest.traffic.simulator import SUCCESS, Ejection, RunRecord

# A failed request counts as this TTFT and TPOT in the per-window quantiles: a sure miss.
FAILED_LATENCY_S = 1e9
# Quantile of the run-wide latency fields (the judge's ``ttft_p95_s`` / ``tpot_p95_s``).
RUN_QUANTILE_PCT = 95.0


@dataclass(frozen=True)
class Result:
    """The scores of one run at full precision, plus what was decided."""

    scenario: str
    policy: str
    requests: int
    goodput: float
    error_share: float
    errors_by_status: dict[int, int]
    local_error_share: float
    slo_attainment_minutes: float
    windows: int
    ttft_p95_s: float | None
    tpot_p95_s: float | None
    attempts_per_request: float
    ejections: int
    false_ejection_host_s: float
    true_ejection_host_s: float
    detect_s: list[float | None]
    faulty_host_share: float
    canary_faulty_share: float | None
    canary_share: float | None
    final_settings: dict[str, ProxySettings]
    decisions: list[Change] = field(default_factory=list)
    flagger: FlaggerOutcome | None = None
    runtime_s: float = 0.0

    def judge_fields(self) -> dict[str, object]:
        """The judge's JSON line for this run: its keys, its rounding, its optional fields."""
        out: dict[str, object] = {
            "scenario": self.scenario,
            "policy": self.policy,
            "requests": self.requests,
            "goodput": round(self.goodput, 4),
            "error_share": round(self.error_share, 4),
            "errors_by_status": {str(k): v for k, v in sorted(self.errors_by_status.items())},
            "local_error_share": round(self.local_error_share, 4),
            "slo_attainment_minutes": round(self.slo_attainment_minutes, 4),
            "windows": self.windows,
            "ttft_p95_s": None if self.ttft_p95_s is None else round(self.ttft_p95_s, 3),
            "tpot_p95_s": None if self.tpot_p95_s is None else round(self.tpot_p95_s, 4),
            "attempts_per_request": round(self.attempts_per_request, 4),
            "ejections": self.ejections,
            "false_ejection_host_s": round(self.false_ejection_host_s, 1),
            "true_ejection_host_s": round(self.true_ejection_host_s, 1),
            "detect_s": [None if d is None else round(d, 3) for d in self.detect_s],
            "faulty_host_share": round(self.faulty_host_share, 4),
        }
        if self.canary_share is not None and self.canary_faulty_share is not None:
            out["canary_faulty_share"] = round(self.canary_faulty_share, 4)
            out["canary_share"] = round(self.canary_share, 4)
        out["final_settings"] = {name: s.as_dict() for name, s in self.final_settings.items()}
        if self.flagger is not None:
            out["flagger"] = {
                "result": self.flagger.result,
                "at_s": self.flagger.at_s,
                "failed_checks": self.flagger.failed_checks,
            }
        out["runtime_s"] = round(self.runtime_s, 2)
        return out


def score(record: RunRecord, slo: SloTargets, policy: str) -> Result:
    scenario = record.scenario
    n = len(record.status)
    success = record.status == SUCCESS
    failed = ~success
    one_token = scenario.requests.output_tokens <= 1
    met = success & (record.ttft_s <= slo.ttft_s) & (one_token | (record.tpot_s <= slo.tpot_s))
    statuses, counts = np.unique(record.status[failed], return_counts=True)
    tpot_ok = record.tpot_s[success & ~one_token]
    canary = next((i for i, s in enumerate(scenario.subsets) if s.name == CANARY), None)
    false_s, true_s = ejection_host_seconds(record.ejections, scenario.faults, scenario.duration_s)
    attainment, windows = window_attainment(record, slo)
    return Result(
        scenario=scenario.name,
        policy=policy,
        requests=n,
        goodput=_share(met),
        error_share=_share(failed),
        errors_by_status={int(s): int(c) for s, c in zip(statuses, counts, strict=True)},
        local_error_share=_share(record.local),
        slo_attainment_minutes=attainment,
        windows=windows,
        ttft_p95_s=float(np.percentile(record.ttft_s[success], RUN_QUANTILE_PCT)) if success.any() else None,
        tpot_p95_s=float(np.percentile(tpot_ok, RUN_QUANTILE_PCT)) if len(tpot_ok) else None,
        attempts_per_request=float(record.attempts.sum()) / n if n else 0.0,
        ejections=len(record.ejections),
        false_ejection_host_s=false_s,
        true_ejection_host_s=true_s,
        detect_s=[detection_delay(fault, record.ejections) for fault in scenario.faults],
        faulty_host_share=_share(record.faulty),
        canary_faulty_share=None if canary is None else _share(record.canary_faulty),
        canary_share=None if canary is None else _share(record.subset == canary),
        final_settings=dict(record.final_settings),
        decisions=list(record.decisions),
    )


def window_attainment(record: RunRecord, slo: SloTargets) -> tuple[float, int]:
    """Share of non-empty windows (by arrival) whose TTFT and TPOT quantiles meet the SLO; windows."""
    arrival = record.scenario.requests.arrival_s
    if not len(arrival):
        return 1.0, 0
    success = record.status == SUCCESS
    ttft = np.where(success, record.ttft_s, FAILED_LATENCY_S)
    # 1-token successes have no TPOT and are left out; failures count as a miss.
    tpot = np.where(success, record.tpot_s, FAILED_LATENCY_S)
    window = np.floor(arrival / slo.window_s).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, window[1:] != window[:-1]])
    ends = np.r_[starts[1:], len(window)]
    pct = slo.quantile * 100.0
    met = 0
    for begin, end in zip(starts, ends, strict=True):
        tpot_window = tpot[begin:end]
        tpot_window = tpot_window[~np.isnan(tpot_window)]
        ttft_ok = np.percentile(ttft[begin:end], pct) <= slo.ttft_s
        tpot_met = not len(tpot_window) or np.percentile(tpot_window, pct) <= slo.tpot_s
        met += bool(ttft_ok and tpot_met)
    return met / len(starts), len(starts)


def ejection_host_seconds(
    ejections: list[Ejection], faults: tuple[Fault, ...], duration_s: float
) -> tuple[float, float]:
    """Host-seconds ejected within [0, duration] while the host had no active fault / had one."""
    false_s = true_s = 0.0
    for ejection in ejections:
        start = max(ejection.start_s, 0.0)
        end = min(duration_s if ejection.end_s is None else ejection.end_s, duration_s)
        if end <= start:
            continue
        faulty = 0.0
        for begin, stop in _fault_spans(faults, ejection.subset, ejection.host):
            faulty += max(0.0, min(stop, end) - max(begin, start))
        true_s += faulty
        false_s += (end - start) - faulty
    return false_s, true_s


def detection_delay(fault: Fault, ejections: list[Ejection]) -> float | None:
    """Seconds from the fault's first start to the first ejection of one of its hosts within its span."""
    spans = fault.spans()
    if not spans:
        return None
    first, last = spans[0][0], spans[-1][1]
    hits = [
        e.start_s for e in ejections if e.subset == fault.subset and e.host in fault.hosts and first <= e.start_s < last
    ]
    return min(hits) - first if hits else None


def _fault_spans(faults: tuple[Fault, ...], subset: str, host: int) -> list[tuple[float, float]]:
    """When any fault is active on the host: the union of the spans of the faults that cover it."""
    spans = sorted(span for f in faults if f.subset == subset and host in f.hosts for span in f.spans())
    merged: list[tuple[float, float]] = []
    for begin, end in spans:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _share(flags: np.ndarray) -> float:
    return float(np.mean(flags)) if len(flags) else 0.0
