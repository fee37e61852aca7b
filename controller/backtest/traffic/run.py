"""Run one traffic backtest: a scenario under a timeline or a closed-loop controller, scored.

This is the API the CLI and the benchmarks call; it wires the simulator to the scoring and
measures the wall time. It reads no files (see :func:`~controller.backtest.traffic.scenario.load_scenario`
and :func:`~controller.backtest.traffic.timeline.read_decisions`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from controller.backtest.engine import EngineParams
from controller.backtest.score import SloTargets
from controller.backtest.traffic.baselines import baseline_controller, baseline_timeline
from controller.backtest.traffic.flagger import Flagger, FlaggerParams
from controller.backtest.traffic.proxy import ProxyParams
from controller.backtest.traffic.scenario import Scenario
from controller.backtest.traffic.score import Result, score
from controller.backtest.traffic.simulator import RunRecord, Simulation
from controller.backtest.traffic.timeline import Controller, Timeline


@dataclass(frozen=True)
class RunOptions:
    """Model options (the judge's defaults); ``seed`` and ``slo`` default to the scenario's."""

    engine: EngineParams = field(default_factory=EngineParams)
    proxy: ProxyParams = field(default_factory=ProxyParams)
    seed: int | None = None
    slo: SloTargets | None = None


def run_scenario(
    scenario: Scenario,
    policy: Timeline | Controller,
    options: RunOptions | None = None,
    *,
    timeline: Timeline | None = None,
    name: str | None = None,
) -> Result:
    """Simulate and score ``scenario`` under ``policy``.

    ``policy`` is a decisions timeline, or a controller deciding from observations; under a
    controller, ``timeline`` can add fixed rows (a baseline's t = 0 settings, for instance).
    """
    return run_with_record(scenario, policy, options, timeline=timeline, name=name)[0]


def run_with_record(
    scenario: Scenario,
    policy: Timeline | Controller,
    options: RunOptions | None = None,
    *,
    timeline: Timeline | None = None,
    name: str | None = None,
) -> tuple[Result, RunRecord]:
    """:func:`run_scenario`, and what happened to every request (for plots)."""
    options = options or RunOptions()
    started = time.perf_counter()
    if isinstance(policy, Timeline):
        rows, controller = policy, None
    else:
        rows, controller = timeline or Timeline(()), policy
    simulation = Simulation(scenario, rows, controller, options.engine, options.proxy, options.seed)
    record = simulation.run()
    label = name or (rows.name if controller is None else type(controller).__name__.lower())
    result = score(record, options.slo or scenario.slo, label)
    if isinstance(controller, Flagger):
        result = replace(result, flagger=controller.outcome())
    return replace(result, runtime_s=time.perf_counter() - started), record


def run_baseline(
    scenario: Scenario, name: str, options: RunOptions | None = None, flagger: FlaggerParams | None = None
) -> Result:
    """One of the judge's baselines (``none``, ``istio-typical``, ``aggressive``, ``flagger``)."""
    timeline = baseline_timeline(name, scenario)
    controller = baseline_controller(name, scenario, flagger)
    if controller is None:
        return run_scenario(scenario, timeline, options)
    return run_scenario(scenario, controller, options, timeline=timeline, name=name)
