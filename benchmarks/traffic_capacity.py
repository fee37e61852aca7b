"""A load test of the traffic judge's engine: how many requests per second one replica serves within the SLO.

    python benchmarks/traffic_capacity.py [--rates 3.5,4,4.5,5,5.5,6,7] [--starts 0,1200,2400]

It plays the judge's healthy scenario (``01_healthy``: 8 replicas at speed 1, the conversation
trace) at each rate and from each trace offset with no proxy setting at all, cuts every run into
the SLO's 60-s windows, and prints, per band of requests per second per replica in a window, how
many windows fell in it, the share that met the SLO (p95 TTFT and TPOT) and the share of their
requests within it. This is the load test behind ``requestsPerReplica`` in
``examples/traffic-backtest.yaml`` (docs/traffic-backtest.md): the highest band whose windows all
meet the SLO with 99 % of their requests within it. It needs the judge's scenario and trace in
``../shared``; without them it says so and exits.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from controller.backtest.traffic.run import run_with_record
from controller.backtest.traffic.scenario import load_scenario
from controller.backtest.traffic.simulator import SUCCESS
from controller.backtest.traffic.timeline import Timeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCENARIO = SHARED / "bench/traffic/scenarios/01_healthy.json"
DATA_DIR = SHARED / "data/llm_traces"
BAND = 0.25  # requests per second per replica


def windows(rate: float, start_s: float) -> list[tuple[float, bool, float]]:
    """Per 60-s window of one run: requests/s per replica, SLO met, share of requests within the SLO."""
    scenario = load_scenario(SCENARIO, DATA_DIR)
    scenario = replace(scenario, rate=rate, trace_start_s=start_s)
    _, record = run_with_record(scenario, Timeline(()))
    slo, requests = scenario.slo, scenario.requests
    replicas = sum(s.hosts for s in scenario.subsets)
    ok = record.status == SUCCESS
    single = requests.output_tokens <= 1
    good = ok & (record.ttft_s <= slo.ttft_s) & (single | (record.tpot_s <= slo.tpot_s))
    ttft = np.where(ok, record.ttft_s, np.inf)
    tpot = np.where(ok, record.tpot_s, np.inf)
    index = np.floor(requests.arrival_s / slo.window_s).astype(np.int64)
    rows = []
    for window in np.unique(index):
        mine = index == window
        tpots = tpot[mine & ~single]
        met = np.percentile(ttft[mine], slo.quantile * 100) <= slo.ttft_s and (
            not len(tpots) or np.percentile(tpots, slo.quantile * 100) <= slo.tpot_s
        )
        rows.append((mine.sum() / slo.window_s / replicas, bool(met), float(good[mine].mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="3.5,4,4.5,5,5.5,6,7", help="trace rates to play (x the recorded rate)")
    parser.add_argument("--starts", default="0,1200,2400", help="trace offsets, seconds")
    args = parser.parse_args()
    if not SCENARIO.is_file() or not DATA_DIR.is_dir():
        print(f"the traffic judge's scenario or trace is not in {SHARED}: nothing to measure")
        return
    rows = [
        row
        for rate in (float(r) for r in args.rates.split(","))
        for start in (float(s) for s in args.starts.split(","))
        for row in windows(rate, start)
    ]
    table = np.asarray([(load, met, good) for load, met, good in rows])
    print("| requests/s per replica | windows | SLO met | requests within the SLO |\n|---|---:|---:|---:|")
    for low in np.arange(np.floor(table[:, 0].min() / BAND) * BAND, table[:, 0].max(), BAND):
        band = (table[:, 0] >= low) & (table[:, 0] < low + BAND)
        if band.any():
            met, good = table[band, 1].mean(), table[band, 2].mean()
            print(f"| {low:.2f}-{low + BAND:.2f} | {band.sum()} | {met:.2f} | {good:.3f} |")


if __name__ == "__main__":
    main()
