"""The backtest's picture, readable at a glance: load, replicas against the baselines, latency, what was learned.

Four panels over one time axis (minutes, or hours for runs longer than three hours):

1. **load**: the burst-aware prompt load (per-minute peak), the forecast the policy provisioned
   for (the peak of the load over the next lead time + interval), and what the ready replicas were
   sized to serve (ready x learned capacity / headroom);
2. **replicas** (integer axis from 0): ours desired and ready, the HPA's and the KPA's desired,
   the minutes that missed the SLO shaded;
3. **latency**: each minute's p95 TTFT and p95 TPOT against their SLO lines, missed minutes marked;
4. **learned**: each resource's capacity per replica in the load's unit (the lower one binds), the
   headroom the attainment feedback applies, and the lead time.

Every mark has a legend entry, outside the data; the labels carry each policy's score.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from controller.backtest.predictive import PredictiveController
from controller.backtest.score import SloTargets, summarize, window_table
from controller.backtest.simulate import Run
from forecasting import burst_load

BASELINE_STYLES = {"hpa": ("tab:purple", "--"), "kpa": ("tab:brown", ":")}
RESOURCE_COLOURS = {"prefill": "tab:cyan", "decode": "tab:olive"}


def plot_run(
    run: Run,
    controller: PredictiveController,
    baselines: Mapping[str, Run],
    slo: SloTargets,
    path: Path,
    score_from_s: float = 0.0,
) -> None:
    """Draw ``run`` (ours), with the HPA and KPA runs among ``baselines``, to ``path`` (PNG); the title
    also gives the attainment from ``score_from_s`` on when it is set."""
    unit, scale = ("hours", 3600.0) if run.horizon_s > 3 * 3600 else ("minutes", 60.0)
    figure, (load_ax, replicas_ax, latency_ax, learned_ax) = plt.subplots(
        4, 1, figsize=(16, 13), sharex=True, height_ratios=(1.1, 1.2, 1.0, 0.9)
    )
    ours = summarize(run, controller.name, slo, score_from_s)
    windows = window_table(run, slo)
    _load_panel(load_ax, run, controller, scale)
    _replicas_panel(replicas_ax, run, controller.name, baselines, slo, scale, windows)
    _latency_panel(latency_ax, windows, slo, scale)
    _learned_panel(learned_ax, controller, scale)
    learned_ax.set_xlabel(f"time ({unit} from the trace's start)")
    scored = f" ({ours.slo_minutes_scored:.3f} from {score_from_s:g} s)" if ours.slo_minutes_scored is not None else ""
    figure.suptitle(
        f"{run.trace.name}: infercast met the SLO (p95 TTFT and TPOT) in {ours.slo_minutes:.3f} of "
        f"{ours.windows} minutes{scored} with {ours.gpu_hours:.1f} GPU-hours; target {controller.attainment.target:g}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _legend(ax: Axes, *twins: Axes) -> None:
    """One legend for ``ax`` and its twin axes, right of the plot, out of the data's way."""
    handles, labels = ax.get_legend_handles_labels()
    for twin in twins:
        more, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=8, borderaxespad=0.0)


def _per_minute_peak(values: np.ndarray) -> np.ndarray:
    whole = len(values) // 60 * 60
    return values[:whole].reshape(-1, 60).max(axis=1) if whole else values


def _load_panel(ax: Axes, run: Run, controller: PredictiveController, scale: float) -> None:
    forecast = controller.spec.forecast
    assert forecast is not None
    load = burst_load(np.asarray(run.observations.prompt_tokens, dtype=float), forecast.slo.ttft_s)
    peaks = _per_minute_peak(load)
    ax.plot(
        np.arange(len(peaks)) * 60 / scale,
        peaks,
        lw=0.7,
        color="tab:gray",
        label="load: burst-aware prompt tokens/s\n(peak of each minute)",
    )
    forecasts = [(s.time_s / scale, s.forecast_load) for s in controller.steps if s.forecast_load is not None]
    if forecasts:
        times, values = zip(*forecasts, strict=True)
        ax.step(
            times,
            values,
            where="post",
            lw=0.9,
            color="tab:orange",
            label=f"forecast provisioned for: q{forecast.forecast_quantile:g} of the\n"
            "load's peak over the next lead time + interval",
        )
    ready = run.observations.ready
    served = [
        (s.time_s / scale, ready[min(int(s.time_s), len(ready) - 1)] * s.capacity / s.headroom)
        for s in controller.steps
        if s.capacity is not None
    ]
    if served:
        times, values = zip(*served, strict=True)
        ax.step(
            times,
            values,
            where="post",
            lw=0.9,
            color="tab:green",
            alpha=0.8,
            label="sized to serve: ready replicas x\nlearned capacity / headroom",
        )
    ax.set_ylabel(f"load ({forecast.capacity.unit})")
    ax.set_ylim(bottom=0)
    _legend(ax)


def _replicas_panel(
    ax: Axes, run: Run, name: str, baselines: Mapping[str, Run], slo: SloTargets, scale: float, windows: pd.DataFrame
) -> None:
    for label, other in baselines.items():
        if label in BASELINE_STYLES:
            colour, style = BASELINE_STYLES[label]
            score = summarize(other, label, slo)
            _timeline(
                ax,
                other,
                scale,
                colour,
                style,
                f"{label.upper()} desired\n({score.slo_minutes:.3f} of minutes, {score.gpu_hours:.1f} GPU-h)",
            )
    score = summarize(run, name, slo)
    _timeline(
        ax,
        run,
        scale,
        "tab:blue",
        "-",
        f"infercast desired\n({score.slo_minutes:.3f} of minutes, {score.gpu_hours:.1f} GPU-h)",
    )
    ready = np.asarray(run.observations.ready)
    ax.plot(np.arange(len(ready)) / scale, ready, lw=0.7, color="tab:green", label="infercast ready (serving)")
    _shade_missed(ax, windows, slo, scale)
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax)


def _timeline(ax: Axes, run: Run, scale: float, colour: str, style: str, label: str) -> None:
    times = [d.time_s / scale for d in run.timeline] + [run.horizon_s / scale]
    counts = [d.replicas for d in run.timeline] + [run.timeline[-1].replicas]
    ax.step(times, counts, where="post", color=colour, ls=style, lw=1.1, label=label)


def _latency_panel(ax: Axes, windows: pd.DataFrame, slo: SloTargets, scale: float) -> None:
    start = windows.index.to_numpy() * slo.window_s / scale
    ax.plot(start, windows["ttft"], ".", ms=3, color="tab:blue", label="p95 TTFT of the minute (s, left)")
    ax.axhline(slo.ttft_s, color="tab:blue", ls="--", lw=0.9, label=f"TTFT SLO {slo.ttft_s:g} s (left)")
    twin = ax.twinx()
    twin.plot(start, windows["tpot"] * 1000, ".", ms=3, color="tab:orange", label="p95 TPOT of the minute (ms, right)")
    twin.axhline(
        slo.tpot_s * 1000, color="tab:orange", ls="--", lw=0.9, label=f"TPOT SLO {slo.tpot_s * 1000:g} ms (right)"
    )
    _shade_missed(ax, windows, slo, scale)
    # Both axes put their SLO at the same height; a minute far above it is drawn at the top edge.
    for axis, target, values in ((ax, slo.ttft_s, windows["ttft"]), (twin, slo.tpot_s * 1000, windows["tpot"] * 1000)):
        axis.set_ylim(0, 2.5 * target)
        above = values.to_numpy() > 2.5 * target
        axis.plot(start[above], np.full(above.sum(), 2.45 * target), "^", ms=4, color=axis.lines[0].get_color())
    ax.plot([], [], "^", color="tab:gray", label="above the axis (drawn at its top)")
    ax.set_ylabel("p95 TTFT (s)")
    twin.set_ylabel("p95 TPOT (ms)")
    _legend(ax, twin)


def _shade_missed(ax: Axes, windows: pd.DataFrame, slo: SloTargets, scale: float) -> None:
    missed = windows.index[~windows["met"]].to_numpy()
    for index, window in enumerate(missed):
        ax.axvspan(
            window * slo.window_s / scale,
            (window + 1) * slo.window_s / scale,
            color="tab:red",
            alpha=0.3,
            lw=0,
            label="minute that missed the SLO\n(infercast)" if index == 0 else None,
        )


def _learned_panel(ax: Axes, controller: PredictiveController, scale: float) -> None:
    for resource, colour in RESOURCE_COLOURS.items():
        points = [(s.time_s / scale, s.resources.get(resource)) for s in controller.steps]
        known = [(t, value) for t, value in points if value is not None]
        if known:
            times, values = zip(*known, strict=True)
            ax.step(
                times,
                values,
                where="post",
                lw=1.2,
                color=colour,
                label=f"{resource} capacity per replica\n(load's unit; the lower binds)",
            )
    ax.set_ylabel("capacity / replica")
    ax.set_ylim(bottom=0)
    twin = ax.twinx()
    twin.step(
        [s.time_s / scale for s in controller.steps],
        [s.headroom for s in controller.steps],
        where="post",
        color="tab:red",
        lw=0.9,
        label="headroom from the attainment\nfeedback (right)",
    )
    twin.set_ylabel("headroom")
    twin.set_ylim(bottom=0)
    lead = controller.lead_time
    ax.plot([], [], " ", label=f"lead time {lead.seconds:.0f} s ({lead.source},\n{len(lead.startups)} start-ups)")
    _legend(ax, twin)
