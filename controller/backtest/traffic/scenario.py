"""A traffic scenario: a trace played at a warped rate onto subsets of hosts, with injected faults.

The file format is the reference judge's (``bench/traffic/README.md`` of the shared benchmark folder): JSON, or YAML
for ``.yaml``/``.yml``. This module parses and validates it, resolves every subset's initial
proxy settings (the subset's own value, else the scenario's ``defaults``, else the field's
default), turns each fault into the time spans where it is active, and maps the trace onto
scenario time:

* the rate ``r(t)`` is piecewise constant (``rate`` from 0, each ``[from_s, rate]`` from
  ``from_s``) and scenario time ``t`` plays trace time ``trace_start_s + integral of r``;
* the trace repeats with period ``last arrival + 1 s`` so that any window can be played;
* requests are indexed from 0 by scenario arrival time, ties in trace order (the draws use it).

It does not simulate anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from controller.backtest.score import SloTargets
from controller.backtest.trace import Trace, load_trace
from controller.backtest.traffic.settings import SETTING_FIELDS, ProxySettings

FaultKind = Literal["error", "slow", "hang", "seq_limit"]
#: ``seq_limit`` is ours, not the judge's (a scenario for the judge must not use it).
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "slow", "hang", "seq_limit")
CANARY = "canary"


@dataclass(frozen=True)
class Subset:
    """A group of identical hosts behind one proxy (an Istio subset), with its initial settings."""

    name: str
    hosts: int
    speed: float
    settings: ProxySettings


@dataclass(frozen=True)
class Fault:
    """A fault on some hosts of a subset, active in [start_s, end_s), flapping when ``every_s`` > 0.

    ``error`` fails attempts with ``status`` with probability ``p``; ``slow`` multiplies the
    time of prefill and decode by ``factor``; ``hang`` freezes the host's engine; ``seq_limit``
    lets no more than ``max_seqs`` sequences run on the host (a KV cache that holds fewer).
    """

    kind: FaultKind
    subset: str
    hosts: tuple[int, ...]
    start_s: float
    end_s: float
    p: float = 1.0
    status: int = 500
    factor: float = 1.0
    max_seqs: int = 0
    on_s: float = 0.0
    every_s: float = 0.0

    def spans(self) -> list[tuple[float, float]]:
        """The [start, end) spans where the fault is active, in time order, adjacent ones merged."""
        if self.every_s <= 0:
            return [(self.start_s, self.end_s)] if self.end_s > self.start_s else []
        spans: list[tuple[float, float]] = []
        cycle = 0
        while (begin := self.start_s + cycle * self.every_s) < self.end_s:
            end = min(begin + self.on_s, self.end_s)
            if end > begin:
                if spans and spans[-1][1] >= begin:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((begin, end))
            cycle += 1
        return spans


@dataclass(frozen=True)
class Scenario:
    """A scenario as the judge reads it; ``requests`` is the trace mapped onto scenario time."""

    name: str
    trace: Trace
    trace_start_s: float
    duration_s: float
    rate: float
    rate_changes: tuple[tuple[float, float], ...]
    seed: int
    slo: SloTargets
    subsets: tuple[Subset, ...]
    faults: tuple[Fault, ...] = ()

    @cached_property
    def requests(self) -> Trace:
        return warp(self.trace, self.trace_start_s, self.duration_s, self.rate, self.rate_changes)

    @property
    def has_canary(self) -> bool:
        return any(s.name == CANARY for s in self.subsets)

    def subset(self, name: str) -> Subset:
        for subset in self.subsets:
            if subset.name == name:
                return subset
        raise ValueError(f"unknown subset {name!r}; known: {', '.join(s.name for s in self.subsets)}")


def warp(
    trace: Trace,
    trace_start_s: float,
    duration_s: float,
    rate: float,
    rate_changes: tuple[tuple[float, float], ...] = (),
) -> Trace:
    """The trace's requests that arrive in [0, duration_s) of scenario time, indexed by arrival."""
    steps = [(0.0, rate), *sorted(rate_changes, key=lambda change: change[0])]
    period = float(trace.arrival_s[-1]) + 1.0 if len(trace) else 1.0
    times: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    tau_start = trace_start_s
    for number, (from_s, speed) in enumerate(steps):
        if speed <= 0:
            raise ValueError(f"rates must be > 0, got {speed}")
        begin = max(from_s, 0.0)
        end = min(steps[number + 1][0], duration_s) if number + 1 < len(steps) else duration_s
        if end <= begin:
            continue
        tau_end = tau_start + speed * (end - begin)
        if len(trace):
            for loop in range(math.floor(tau_start / period), math.floor(tau_end / period) + 1):
                tau = trace.arrival_s + loop * period
                inside = np.flatnonzero((tau >= tau_start) & (tau < tau_end))
                times.append(begin + (tau[inside] - tau_start) / speed)
                rows.append(inside)
        tau_start = tau_end
    arrival = np.concatenate(times) if times else np.zeros(0)
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    keep = arrival < duration_s
    arrival, row = arrival[keep], row[keep]
    order = np.argsort(arrival, kind="stable")
    return Trace(trace.name, arrival[order], trace.prompt_tokens[row[order]], trace.output_tokens[row[order]])


def load_scenario(path: str | Path, data_dir: str | Path | None = None) -> Scenario:
    """Read a scenario file; its trace is found as given, next to the file, or in ``data_dir``."""
    path = Path(path)
    text = path.read_text()
    raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    trace_path = _find_trace(str(raw["trace"]), path.parent, data_dir)
    return parse_scenario(raw, load_trace(trace_path), default_name=path.stem)


def parse_scenario(raw: Mapping[str, Any], trace: Trace, default_name: str = "scenario") -> Scenario:
    """Build a scenario from its parsed file and its (trace-time) trace."""
    duration_s = float(raw["duration_s"])
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    slo_raw = raw.get("slo") or {}
    default = SloTargets()
    slo = SloTargets(
        ttft_s=float(slo_raw.get("ttft_s", default.ttft_s)),
        tpot_s=float(slo_raw.get("tpot_s", default.tpot_s)),
        quantile=float(slo_raw.get("quantile", default.quantile)),
        window_s=float(slo_raw.get("window_s", default.window_s)),
    )
    defaults = {k: float(v) for k, v in (raw.get("defaults") or {}).items() if k in SETTING_FIELDS}
    subsets = tuple(_parse_subset(entry, defaults) for entry in raw["subsets"])
    if not subsets:
        raise ValueError("a scenario needs at least one subset")
    if len({s.name for s in subsets}) != len(subsets):
        raise ValueError("subset names must be unique")
    scenario = Scenario(
        name=str(raw.get("name", default_name)),
        trace=trace,
        trace_start_s=float(raw.get("trace_start_s", 0.0)),
        duration_s=duration_s,
        rate=float(raw.get("rate", 1.0)),
        rate_changes=tuple((float(a), float(b)) for a, b in raw.get("rate_changes") or ()),
        seed=int(raw.get("seed", 0)),
        slo=slo,
        subsets=subsets,
    )
    faults = tuple(_parse_fault(entry, scenario) for entry in raw.get("faults") or ())
    return replace(scenario, faults=faults)


def _parse_subset(entry: Mapping[str, Any], defaults: Mapping[str, float]) -> Subset:
    hosts = int(entry["hosts"])
    speed = float(entry.get("speed", 1.0))
    if hosts < 1:
        raise ValueError(f"subset {entry['name']!r}: hosts must be >= 1, got {hosts}")
    if speed <= 0:
        raise ValueError(f"subset {entry['name']!r}: speed must be > 0, got {speed}")
    own = {k: float(v) for k, v in entry.items() if k in SETTING_FIELDS}
    return Subset(str(entry["name"]), hosts, speed, ProxySettings().with_values({**defaults, **own}))


def _parse_fault(entry: Mapping[str, Any], scenario: Scenario) -> Fault:
    kind = entry["type"]
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault type {kind!r}; known: {', '.join(FAULT_KINDS)}")
    subset = scenario.subset(str(entry["subset"]))
    hosts = tuple(int(h) for h in entry["hosts"]) if entry.get("hosts") is not None else tuple(range(subset.hosts))
    if any(not 0 <= h < subset.hosts for h in hosts):
        raise ValueError(f"fault on {subset.name}: host indices must lie in [0, {subset.hosts})")
    fault = Fault(
        kind=kind,
        subset=subset.name,
        hosts=hosts,
        start_s=float(entry.get("start_s", 0.0)),
        end_s=float(entry["end_s"]) if entry.get("end_s") is not None else scenario.duration_s,
        p=float(entry.get("p", 1.0)),
        status=int(entry.get("status", 500)),
        factor=float(entry.get("factor", 1.0)),
        max_seqs=int(entry.get("max_seqs", 0)),
        on_s=float(entry.get("on_s", 0.0)),
        every_s=float(entry.get("every_s", 0.0)),
    )
    if not 500 <= fault.status <= 599:
        raise ValueError(f"fault status must be a 5xx, got {fault.status}")
    if not 0.0 <= fault.p <= 1.0:
        raise ValueError(f"fault p must lie in [0, 1], got {fault.p}")
    if fault.every_s > 0 and not 0 < fault.on_s <= fault.every_s:
        raise ValueError(f"a flapping fault needs 0 < on_s <= every_s, got on_s {fault.on_s}, every_s {fault.every_s}")
    if fault.factor <= 0:
        raise ValueError(f"slow factor must be > 0, got {fault.factor}")
    if fault.kind == "seq_limit" and fault.max_seqs < 1:
        raise ValueError(f"a seq_limit fault needs max_seqs >= 1, got {fault.max_seqs}")
    return fault


def _find_trace(name: str, scenario_dir: Path, data_dir: str | Path | None) -> Path:
    candidates = [Path(name)] if Path(name).is_absolute() else []
    candidates.append(scenario_dir / name)
    if data_dir is not None:
        candidates.append(Path(data_dir) / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"trace {name!r} not found in {', '.join(str(c) for c in candidates)}")
