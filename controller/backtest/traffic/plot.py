"""The traffic backtest's pictures: one per subset, what happened to its traffic and what we set.

Five panels over the run, in minutes, with the scenario's faults on that subset shaded grey and the
times a policy had the subset flagged shaded orange:

1. the subset's share of all requests and the share of its requests that failed (10-s windows);
2. p95 TTFT of its successful requests per SLO window, against the SLO;
3. p95 TPOT likewise;
4. hosts ejected (and the subset's hosts), with the routing weight and ``maxEjectionPercent``;
5. the other settings: consecutive-error thresholds and retries, the pool limits.

Everything is read from the run's record (the judge's view of the requests) and the decisions
applied; the policy's own view is only the flagged spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from controller.backtest.traffic.policy import Verdict
from controller.backtest.traffic.settings import Change
from controller.backtest.traffic.simulator import SUCCESS, RunRecord

SHARE_WINDOW_S = 10.0
#: Tick labels as plain numbers (0.3, 2, 50), not powers of ten.
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


def plot_subsets(record: RunRecord, decisions: Sequence[Change], verdicts: Sequence[Verdict], out: Path) -> list[Path]:
    """Write ``plot-<subset>.png`` for every subset of the run; the paths written."""
    return [
        _plot_subset(record, index, decisions, verdicts, out / f"plot-{subset.name}.png")
        for index, subset in enumerate(record.scenario.subsets)
    ]


def _plot_subset(
    record: RunRecord, index: int, decisions: Sequence[Change], verdicts: Sequence[Verdict], path: Path
) -> Path:
    scenario = record.scenario
    subset = scenario.subsets[index]
    duration = scenario.duration_s
    arrival = scenario.requests.arrival_s
    mine = record.subset == index
    figure, axes = plt.subplots(5, 1, figsize=(12, 13), sharex=True)
    share, latency_ttft, latency_tpot, hosts, settings = axes

    edges = np.arange(0.0, duration + SHARE_WINDOW_S, SHARE_WINDOW_S)
    total, _ = np.histogram(arrival, edges)
    routed, _ = np.histogram(arrival[mine], edges)
    failed, _ = np.histogram(arrival[mine & (record.status != SUCCESS)], edges)
    middle = (edges[:-1] + SHARE_WINDOW_S / 2) / 60
    with np.errstate(divide="ignore", invalid="ignore"):
        share.plot(middle, np.where(total > 0, routed / total, np.nan), color="tab:blue", label="share of requests")
        share.plot(
            middle, np.where(routed > 0, failed / routed, np.nan), color="tab:red", label="failed (its requests)"
        )
    share.set_ylim(-0.02, 1.02)
    share.set_ylabel("share")

    slo = scenario.slo
    windows = np.floor(arrival / slo.window_s).astype(np.int64)
    success = mine & (record.status == SUCCESS)
    for axis, values, target, scale, unit in (
        (latency_ttft, record.ttft_s, slo.ttft_s, 1.0, "s"),
        (latency_tpot, record.tpot_s, slo.tpot_s, 1000.0, "ms"),
    ):
        times, p95 = [], []
        for window in np.unique(windows[success]):
            chosen = values[success & (windows == window)]
            chosen = chosen[~np.isnan(chosen)]
            if len(chosen):
                times.append((window + 0.5) * slo.window_s / 60)
                p95.append(float(np.percentile(chosen, slo.quantile * 100)) * scale)
        axis.plot(times, p95, marker="o", ms=3, color="tab:purple", label=f"p{slo.quantile * 100:g} of its successes")
        axis.axhline(target * scale, color="tab:red", ls="--", lw=1, label="SLO")
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(PLAIN)
        axis.yaxis.set_minor_formatter(PLAIN)
        axis.set_ylabel(f"{'TTFT' if axis is latency_ttft else 'TPOT'} ({unit})")

    out_times, out_count = _ejected_over_time(record, subset.name, duration)
    hosts.step(np.asarray(out_times) / 60, out_count, where="post", color="tab:red", label="hosts ejected")
    hosts.axhline(subset.hosts, color="tab:gray", ls=":", lw=1, label="hosts")
    hosts.set_ylim(-0.2, subset.hosts + 0.5)
    hosts.set_ylabel("hosts")
    percent = hosts.twinx()
    _step_setting(percent, decisions, subset.name, "weight", duration, "tab:blue", "weight")
    _step_setting(percent, decisions, subset.name, "maxEjectionPercent", duration, "tab:orange", "maxEjectionPercent")
    percent.set_ylim(-2, 102)
    percent.set_ylabel("weight, %")
    _legend(hosts, percent)

    for field, color in (("consecutive5xxErrors", "tab:red"), ("consecutiveGatewayErrors", "tab:brown")):
        _step_setting(settings, decisions, subset.name, field, duration, color, field)
    _step_setting(settings, decisions, subset.name, "maxRetries", duration, "tab:green", "maxRetries")
    settings.set_ylabel("errors in a row, retries")
    pool = settings.twinx()
    _step_setting(pool, decisions, subset.name, "http2MaxRequests", duration, "tab:blue", "http2MaxRequests")
    _step_setting(
        pool, decisions, subset.name, "http1MaxPendingRequests", duration, "tab:cyan", "http1MaxPendingRequests"
    )
    pool.set_ylabel("pool limit (0: none)")
    _legend(settings, pool)
    settings.set_xlabel("minutes (grey: a fault on this subset; orange: flagged by a policy)")

    for axis in axes:
        _shade(axis, record, subset.name, verdicts)
        axis.set_xlim(0, duration / 60)
    for axis in (share, latency_ttft, latency_tpot):
        axis.legend(loc="upper right", fontsize=8)
    figure.suptitle(f"{scenario.name}: subset {subset.name} ({subset.hosts} hosts at speed {subset.speed:g})")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _ejected_over_time(record: RunRecord, subset: str, duration: float) -> tuple[list[float], list[int]]:
    """The number of the subset's hosts out at each change, as a step series from 0 to the end."""
    changes: list[tuple[float, int]] = []
    for ejection in record.ejections:
        if ejection.subset == subset:
            changes.append((ejection.start_s, 1))
            changes.append((duration if ejection.end_s is None else ejection.end_s, -1))
    times, counts, out = [0.0], [0], 0
    for time_s, delta in sorted(changes):
        out += delta
        times.append(time_s)
        counts.append(out)
    times.append(duration)
    counts.append(out)
    return times, counts


def _step_setting(
    axis: Axes, decisions: Sequence[Change], subset: str, field: str, duration: float, color: str, label: str
) -> None:
    points = [(c.time_s, float(c.value)) for c in decisions if c.subset == subset and c.field == field]
    if not points:
        return
    times = [t / 60 for t, _ in points] + [duration / 60]
    values = [v for _, v in points] + [points[-1][1]]
    axis.step(times, values, where="post", color=color, label=label, lw=1.2)


def _shade(axis: Axes, record: RunRecord, subset: str, verdicts: Sequence[Verdict]) -> None:
    for fault in record.scenario.faults:
        if fault.subset == subset:
            for start, end in fault.spans():
                axis.axvspan(start / 60, end / 60, color="tab:gray", alpha=0.15, lw=0)
    flagged_since: dict[str, float] = {}
    for verdict in verdicts:
        if verdict.subset != subset:
            continue
        if verdict.flagged and verdict.policy not in flagged_since:
            flagged_since[verdict.policy] = verdict.time_s
        elif not verdict.flagged and verdict.policy in flagged_since:
            axis.axvspan(flagged_since.pop(verdict.policy) / 60, verdict.time_s / 60, color="tab:orange", alpha=0.12)
    for since in flagged_since.values():
        axis.axvspan(since / 60, record.scenario.duration_s / 60, color="tab:orange", alpha=0.12)


def _legend(left: Axes, right: Axes) -> None:
    handles, labels = left.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    left.legend(handles + more_handles, labels + more_labels, loc="upper right", fontsize=8)
