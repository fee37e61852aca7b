"""Run a controller closed-loop against the fleet model, observing only complete past samples.

Every second the fleet (:class:`~controller.backtest.engine.FleetEngine`) runs forward with
that second's arrivals, and one observation sample is appended: the time averages over the
second of the requests in flight (router queue plus ready replicas, as the reference judge
counts them) and of the ready replicas, the arrivals, and the prompt tokens they bring. A
controller decides on its own cadence from the samples of the seconds already over (a decision
at ``t`` sees samples ``[0, t)``), so nothing it does can depend on a later arrival. Requests
still in flight at the horizon run to completion under the last decision, as in the judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from controller.backtest.engine import (
    EngineParams,
    Finished,
    FirstToken,
    FleetEngine,
    ReplicaGone,
    ReplicaPhase,
    Request,
)
from controller.backtest.trace import Trace


@dataclass
class Observations:
    """The per-second samples a controller may read, oldest first; ``len(self)`` seconds are complete."""

    inflight: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrivals)

    def mean(self, series: str, start_s: float, end_s: float) -> float | None:
        """Mean of the samples whose seconds lie in ``[start_s, end_s)``; ``None`` when there are none."""
        data: list[float] | list[int] = getattr(self, series)
        first = max(0, math.ceil(start_s - 1e-9))
        last = min(len(data), math.floor(end_s + 1e-9))
        if last <= first:
            return None
        return float(sum(data[first:last])) / (last - first)


@dataclass(frozen=True)
class FleetView:
    """What a controller knows of the workload besides the metrics: the scale subresource."""

    desired: int
    ready: int


class Controller(Protocol):
    """A closed-loop autoscaler: asked every ``interval_s`` seconds for the desired count."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int: ...


@dataclass(frozen=True)
class Decision:
    time_s: float
    replicas: int


@dataclass
class Run:
    """Everything a scored run produced."""

    trace: Trace
    params: EngineParams
    horizon_s: float
    timeline: list[Decision]
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    observations: Observations
    provisioned: list[int]
    """Replicas holding a GPU (starting, ready or draining) in each second of ``[0, horizon)``."""


def simulate(
    trace: Trace,
    controller: Controller,
    params: EngineParams,
    *,
    initial_replicas: int,
    min_replicas: int = 1,
    max_replicas: int = 64,
    window_s: float = 60.0,
    progress: Callable[[float], None] | None = None,
) -> Run:
    """Run ``controller`` on ``trace`` from a warm fleet of ``initial_replicas`` ready replicas."""

    def clamp(replicas: int) -> int:
        return min(max(int(replicas), min_replicas), max_replicas)

    horizon = trace.horizon_s(window_s)
    engine = FleetEngine(params, initial_replicas=clamp(initial_replicas))
    requests = trace.requests()
    index = {id(request): i for i, request in enumerate(requests)}
    first_token = np.full(len(requests), np.nan)
    finish = np.full(len(requests), np.nan)
    observations = Observations()
    timeline = [Decision(0.0, engine.desired)]
    provisioned: list[int] = []
    next_decision = controller.interval_s
    cursor = 0
    seconds = math.ceil(horizon)

    def record(events: list[Finished | FirstToken | ReplicaGone]) -> None:
        for event in events:
            if isinstance(event, FirstToken):
                first_token[index[id(event.request)]] = event.request.arrival_s + event.ttft_s
            elif isinstance(event, Finished):
                finish[index[id(event.request)]] = event.request.arrival_s + event.e2e_s

    for second in range(seconds):
        if second >= next_decision - 1e-9:
            view = _view(engine)
            wanted = clamp(controller.decide(float(second), observations, view))
            if wanted != view.desired:
                record(engine.scale(wanted))
                timeline.append(Decision(float(second), wanted))
            next_decision += controller.interval_s
        end = second + 1
        batch: list[Request] = []
        while cursor < len(requests) and requests[cursor].arrival_s < end:
            batch.append(requests[cursor])
            cursor += 1
        start_snapshot = engine.snapshot()
        draining = {r.replica_id for r in start_snapshot.replicas if r.phase is ReplicaPhase.DRAINING}
        inflight_start = start_snapshot.router_waiting + sum(
            r.running + r.awaiting_prefill for r in start_snapshot.ready
        )
        becoming_ready = [
            r.ready_s for r in start_snapshot.replicas if r.phase is ReplicaPhase.STARTING and r.ready_s < end
        ]
        events = engine.advance(float(end), batch)
        record(events)
        # Exact time averages over the second: arrivals add from their arrival time, finishes on
        # serving replicas remove from their finish time, replicas count as ready from ready_s.
        inflight = float(inflight_start) + sum(end - r.arrival_s for r in batch)
        for event in events:
            if isinstance(event, Finished) and event.replica_id not in draining:
                inflight -= end - (event.request.arrival_s + event.e2e_s)
        ready = len(start_snapshot.ready) + sum(end - max(ready_s, second) for ready_s in becoming_ready)
        observations.inflight.append(inflight)
        observations.ready.append(ready)
        observations.arrivals.append(len(batch))
        observations.prompt_tokens.append(sum(r.prompt_tokens for r in batch))
        # Counted as held for the whole second: a drain that ends mid-second is rounded up.
        provisioned.append(len(start_snapshot.replicas))
        if progress is not None:
            progress(float(end))
    # Requests in flight at the horizon finish under the last decision.
    while engine.snapshot().router_waiting or any(r.running + r.awaiting_prefill for r in engine.snapshot().replicas):
        record(engine.advance(engine.now_s + 60.0))

    ttft = first_token - trace.arrival_s
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(trace.output_tokens > 1, (finish - first_token) / (trace.output_tokens - 1), np.nan)
    return Run(trace, params, horizon, timeline, ttft, tpot, observations, provisioned)


def _view(engine: FleetEngine) -> FleetView:
    return FleetView(desired=engine.desired, ready=len(engine.snapshot().ready))
