"""Tiny hand-made traffic scenarios for the traffic-backtest tests (no file, nothing outside the repository).

A scenario here plays its trace at rate 1 from trace time 0, so a request's scenario arrival is
its trace time, and its duration defaults to just past the last request: the trace plays once
(a longer duration would loop it). Faults may last past the duration; the run goes on until
every request has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from controller.backtest.trace import Trace
from controller.backtest.traffic.proxy import ProxyParams
from controller.backtest.traffic.scenario import Scenario, parse_scenario
from controller.backtest.traffic.settings import Change
from controller.backtest.traffic.simulator import RunRecord, Simulation
from controller.backtest.traffic.timeline import Controller, Timeline

Row = tuple[float, str, str, float]


def trace(arrivals: Sequence[float], prompt_tokens: int = 100, output_tokens: int = 2) -> Trace:
    n = len(arrivals)
    return Trace(
        "hand-made",
        np.asarray(arrivals, dtype=float),
        np.full(n, prompt_tokens, dtype=np.int64),
        np.full(n, output_tokens, dtype=np.int64),
    )


def every(step_s: float, until_s: float) -> list[float]:
    """Arrivals at 0, step, 2 step, ... before ``until_s`` (use a binary fraction for exact times)."""
    return [i * step_s for i in range(int(np.ceil(until_s / step_s)))]


def scenario(
    requests: Trace,
    subsets: Sequence[dict[str, Any]] = ({"name": "stable", "hosts": 1},),
    faults: Sequence[dict[str, Any]] = (),
    duration_s: float | None = None,
    seed: int = 0,
    **extra: Any,
) -> Scenario:
    raw = {
        "name": "test",
        "duration_s": duration_s if duration_s is not None else float(requests.arrival_s[-1]) + 1.0,
        "rate": 1.0,
        "seed": seed,
        "subsets": list(subsets),
        "faults": list(faults),
        **extra,
    }
    return parse_scenario(raw, requests)


def simulate(
    scenario: Scenario,
    rows: Sequence[Row] = (),
    controller: Controller | None = None,
    proxy: ProxyParams | None = None,
) -> RunRecord:
    timeline = Timeline(tuple(Change(t, subset, field, value) for t, subset, field, value in rows))
    return Simulation(scenario, timeline, controller, proxy=proxy).run()
