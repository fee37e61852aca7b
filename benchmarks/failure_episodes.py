"""Labelled episodes of GPU inference failures, as traffic-simulator scenarios: what fails, how, and when.

An episode is one backend (an Istio subset of ``hosts`` GPU replicas behind one Envoy proxy) serving
a real trace, healthy first, then one host fails in one way from ``onset_s`` to ``end_s``: that span
and that host are the label. Every kind is expressed with the simulator's faults
(:mod:`controller.backtest.traffic.scenario`), with parameters drawn from ranges that public incident
descriptions give (below), by a generator seeded with the episode's kind and number, never chosen by
how any detector does on them:

* ``xid_errors``: an XID-class GPU error (XID 48 double-bit ECC, 79 "fallen off the bus", 119 GSP
  timeout) leaves the GPU unusable until the pod restarts, so every request the replica gets fails:
  an ``error`` fault with p = 1, status 500;
* ``oom_errors``: CUDA out-of-memory on the requests whose activations or KV blocks do not fit fails a
  share of them and the replica keeps serving the rest: ``error`` with p ~ U[0.05, 0.5], status 500;
* ``latency_creep``: thermal throttling (or a noisy neighbour on the node) lowers the SM clock by
  10-50 % over minutes: a ramp of ``slow`` faults, one step every ``RAMP_STEP_S``, from 1 to
  1 / (1 - d) with d ~ U[0.1, 0.5], over U[2, 10] minutes, then held;
* ``kv_saturation``: the KV cache holds fewer sequences than the load needs (fragmentation, a leak,
  another process taking GPU memory), so requests queue at a flat load: a ``seq_limit`` fault (ours,
  not the judge's) capping the running sequences at c x the workload's healthy mean concurrency per
  host, c ~ U[0.3, 0.8], at least 1;
* ``throughput_collapse``: clocks pinned at the hardware-slowdown floor, a PCIe link that trained
  down, a fallback to CPU offload: work takes k ~ U[4, 20] times longer, at once (a ``slow`` step);
* ``hung_replica``: an NCCL or driver hang freezes the engine while its HTTP server keeps accepting
  requests: a ``hang`` fault.

Error faults never use status 504, so a host's 504 is always the proxy's first-token timeout.

Each fault lasts ``FAULT_S`` (20 minutes, about the time a liveness probe, a node drain or an
on-call human takes to replace the replica). Before it the backend is healthy for the operator's
warm-up (``warmup_s``: the history the operator replays into fresh detectors) plus a live stretch of
U[15, 45] minutes, and the trace starts at a random offset, so onsets fall at different load levels.
Nothing here simulates or scores: this module only writes scenarios and their labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from controller.backtest.trace import Trace
from controller.backtest.traffic.scenario import Scenario, parse_scenario

FailureKind = Literal[
    "xid_errors", "oom_errors", "latency_creep", "kv_saturation", "throughput_collapse", "hung_replica"
]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "xid_errors",
    "oom_errors",
    "latency_creep",
    "kv_saturation",
    "throughput_collapse",
    "hung_replica",
)
#: The subset every episode's backend is.
BACKEND = "backend"
FAULT_S = 20 * 60.0
LIVE_BEFORE_ONSET_S = (15 * 60.0, 45 * 60.0)
RAMP_STEP_S = 30.0
ERROR_STATUS = 500


@dataclass(frozen=True)
class Workload:
    """One backend's traffic: ``trace`` played at ``rate`` (the rate warp) onto ``hosts`` replicas.

    ``mean_concurrency`` is the mean number of sequences a healthy host runs under it (measured,
    see :func:`mean_concurrency`): the KV-cache saturation fault is sized from it.
    """

    name: str
    trace: Trace
    rate: float
    hosts: int
    mean_concurrency: float


@dataclass(frozen=True)
class Episode:
    """One labelled episode: ``host`` of the backend fails as ``kind`` in [``onset_s``, ``end_s``)."""

    kind: FailureKind
    number: int
    workload: Workload
    trace_start_s: float
    onset_s: float
    end_s: float
    host: int
    faults: tuple[dict[str, Any], ...]
    parameters: str

    def scenario(self) -> Scenario:
        """The episode as a traffic scenario: outlier detection off, no retries (Envoy only watches)."""
        return backend_scenario(
            f"{self.kind}-{self.number}", self.workload, self.end_s, self.trace_start_s, self.faults, self.number
        )


def backend_scenario(
    name: str,
    workload: Workload,
    duration_s: float,
    trace_start_s: float = 0.0,
    faults: tuple[dict[str, Any], ...] = (),
    seed: int = 0,
) -> Scenario:
    """The workload on one subset, with the judge's ``none`` settings: nothing ejects, nothing retries.

    Detectors and the consecutive-5xx rule are compared on what they would see before anyone acts,
    so every proxy setting that acts on failures is off.
    """
    raw = {
        "name": name,
        "duration_s": duration_s,
        "trace_start_s": trace_start_s,
        "rate": workload.rate,
        "seed": seed,
        "subsets": [{"name": BACKEND, "hosts": workload.hosts, "maxRetries": 0}],
        "faults": list(faults),
    }
    return parse_scenario(raw, workload.trace, default_name=name)


def draw_episode(kind: FailureKind, number: int, workload: Workload, warmup_s: float) -> Episode:
    """Episode ``number`` of ``kind`` on ``workload``: every parameter drawn from the kind's stated range.

    The generator's seed is (kind, number), so an episode never changes when other episodes are
    added, and the same number of two kinds shares nothing but the workload.
    """
    rng = np.random.default_rng([FAILURE_KINDS.index(kind), number])
    period = float(workload.trace.arrival_s[-1]) + 1.0 if len(workload.trace) else 1.0
    trace_start_s = float(rng.uniform(0.0, period))
    onset_s = round(warmup_s + float(rng.uniform(*LIVE_BEFORE_ONSET_S)), 1)
    end_s = onset_s + FAULT_S
    host = int(rng.integers(workload.hosts))
    faults, parameters = _faults(kind, rng, workload, host, onset_s, end_s)
    return Episode(kind, number, workload, trace_start_s, onset_s, end_s, host, faults, parameters)


def _faults(
    kind: FailureKind, rng: np.random.Generator, workload: Workload, host: int, onset_s: float, end_s: float
) -> tuple[tuple[dict[str, Any], ...], str]:
    span = {"subset": BACKEND, "hosts": [host], "start_s": onset_s, "end_s": end_s}
    if kind == "xid_errors":
        return ({"type": "error", "p": 1.0, "status": ERROR_STATUS, **span},), "p=1"
    if kind == "oom_errors":
        p = round(float(rng.uniform(0.05, 0.5)), 3)
        return ({"type": "error", "p": p, "status": ERROR_STATUS, **span},), f"p={p}"
    if kind == "latency_creep":
        clock_loss = float(rng.uniform(0.1, 0.5))
        ramp_s = float(rng.uniform(2 * 60.0, 10 * 60.0))
        final = 1.0 / (1.0 - clock_loss)
        return ramp(final, ramp_s, span), f"clock -{clock_loss:.0%} over {ramp_s / 60:.1f} min (x{final:.2f})"
    if kind == "kv_saturation":
        share = float(rng.uniform(0.3, 0.8))
        limit = max(1, round(share * workload.mean_concurrency))
        return ({"type": "seq_limit", "max_seqs": limit, **span},), f"max {limit} sequences ({share:.2f} x mean)"
    if kind == "throughput_collapse":
        factor = round(float(rng.uniform(4.0, 20.0)), 2)
        return ({"type": "slow", "factor": factor, **span},), f"x{factor}"
    return ({"type": "hang", **span},), "hang"


def ramp(final: float, ramp_s: float, span: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """``slow`` faults rising linearly from 1 to ``final`` in steps of ``RAMP_STEP_S`` over ``ramp_s``,
    the last step held to the span's end; the steps follow each other, never overlap."""
    start, end = float(span["start_s"]), float(span["end_s"])
    steps = max(1, math.ceil(ramp_s / RAMP_STEP_S))
    faults = []
    for step in range(steps):
        begin = start + step * RAMP_STEP_S
        if begin >= end:
            break
        stop = end if step == steps - 1 else min(begin + RAMP_STEP_S, end)
        factor = round(1.0 + (final - 1.0) * (step + 1) / steps, 4)
        faults.append({"type": "slow", "factor": factor, **span, "start_s": begin, "end_s": stop})
    return tuple(faults)
