"""The backtest's picture: load and forecast band on top, replicas and SLO violations below."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
import numpy as np

from controller.backtest.predictive import PredictiveController
from controller.backtest.score import SloTargets, window_table
from controller.backtest.simulate import Run
from forecasting import burst_load


def plot_run(run: Run, controller: PredictiveController, slo: SloTargets, path: Path) -> None:
    capacity = controller.policy.capacity_per_replica
    load = burst_load(np.asarray(run.observations.prompt_tokens), controller.forecast.ttft_slo_s)
    seconds = np.arange(len(load))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    top.plot(seconds / 60, load / capacity, lw=0.6, color="tab:gray", label="burst-aware load (replicas' worth)")
    if controller.bands:
        times, replicas = zip(*controller.bands, strict=True)
        top.step(
            np.asarray(times) / 60,
            replicas,
            where="post",
            color="tab:orange",
            label=f"forecast q{controller.forecast.quantile:g} over the lead time",
        )
    top.set_ylabel("replicas' worth of load")
    top.legend(loc="upper right")
    changes = [d.time_s for d in run.timeline] + [run.horizon_s]
    desired = [d.replicas for d in run.timeline] + [run.timeline[-1].replicas]
    bottom.step(np.asarray(changes) / 60, desired, where="post", color="tab:blue", label="desired replicas")
    bottom.plot(seconds / 60, run.observations.ready, lw=0.8, color="tab:green", label="ready replicas")
    windows = window_table(run, slo)
    for window in windows.index[~windows["met"]]:
        bottom.axvspan(window * slo.window_s / 60, (window + 1) * slo.window_s / 60, color="tab:red", alpha=0.2)
    bottom.set_xlabel("minutes (red: SLO window missed)")
    bottom.set_ylabel("replicas")
    bottom.legend(loc="upper right")
    figure.suptitle(f"{run.trace.name}: infercast predictive policy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
