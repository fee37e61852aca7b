"""How fast do the operator's failure scores and Envoy's consecutive-5xx rule see GPU inference failures?

    python benchmarks/inference_failures.py [--episodes 12] [--policy examples/traffic-backtest.yaml]
                                            [--out results/inference_failures]

Labelled episodes (:mod:`benchmarks.failure_episodes`: XID errors, OOM errors, latency creep,
KV-cache saturation, throughput collapse, a hung replica) and long healthy runs are simulated with
the project's traffic simulator (:mod:`controller.backtest.traffic`, the reference judge's engine and
proxy) on the Azure LLM traces of ``../shared/data/llm_traces``: episodes on 4-host backends of the
conversation trace at 2x (the judge's load per host) and of the code trace at its own rate, healthy
runs on the two 3-day shapes at their own rate (rate warp 1, real days) on the fewest hosts that
keep each under the judge's peak load per host (:data:`PEAK_RATE_PER_HOST`). Without ``../shared``
the episodes use the repository's trace slices and the healthy runs are skipped (it says so).

The operator's readings of every tick (:mod:`benchmarks.failure_signals`) go through its own scoring
code after its own warm-up (:mod:`benchmarks.failure_detection`); Envoy's rule counts every host's
responses in order. Printed, per failure kind and rule: the median and p90 delay from the fault's
onset to the first flag (to the N-th consecutive 5xx for Envoy), the episodes missed while the fault
lasted, then false alarms per backend-day on the healthy runs and on the episodes' healthy stretches
before their onsets, which signals raised the flags, and the CPU time of one detector update.
Simulations are cached under ``<out>/recordings`` (keyed by the episode and the simulator's source),
so a second run with another detector only scores; ``<out>`` also gets every result as JSON lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.failure_detection import RULES, Scored, alarms, first_flag, score_recording
from benchmarks.failure_episodes import (
    BACKEND,
    FAILURE_KINDS,
    Episode,
    FailureKind,
    Workload,
    backend_scenario,
    draw_episode,
)
from benchmarks.failure_signals import CONSECUTIVE, Recording, record
from controller.backtest.trace import Trace, load_trace
from controller.backtest.traffic.command import load_policies
from controller.backtest.traffic.scenario import Scenario
from controller.errors import InputError
from controller.traffic.signals import FALSE_ALARMS_PER_BACKEND_DAY, TESTS_PER_BACKEND, WARMUP_POINTS, alert_level
from controller.traffic.spec import CircuitBreakerPolicySpec, window_seconds
from policies.health import HealthLimits

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared/data/llm_traces"
REPO_TRACES = ROOT / "data/traces"
SECONDS_PER_DAY = 86_400.0
#: The judge's reference load at its peak: its 8 healthy hosts meet the SLO in every minute at 4x the
#: conversation trace, whose 5-minute peak (7.5 requests/s x 4) is 3.75 requests/s per host.
PEAK_RATE_PER_HOST = 3.75
#: The 3-day shapes' first day (2024-03-04 00:00 UTC): their times of day are real.
SHAPES_EPOCH_S = 1_709_510_400.0
ENVOY = tuple(f"envoy {n} consecutive 5xx" for n in CONSECUTIVE)
#: The fastest any rule reading the operator's ticks can flag a fault that fails requests: the
#: first tick at or after the fault's first 5xx (a reading holds the responses of its window).
FLOOR = "floor: first tick after the first 5xx"
ALL_RULES = (*RULES, *ENVOY, FLOOR)
#: The sources whose change changes a recording.
SIMULATION_SOURCES = (
    *sorted((ROOT / "controller/backtest/traffic").glob("*.py")),
    ROOT / "benchmarks/failure_episodes.py",
    ROOT / "benchmarks/failure_signals.py",
)
EnvoyAlarms = dict[str, list[float]]


@dataclass(frozen=True)
class EpisodeResult:
    """One episode's delays per rule (``None``: missed) and its false alarms before the onset."""

    kind: FailureKind
    number: int
    workload: str
    parameters: str
    onset_s: float
    delays_s: dict[str, float | None]
    healthy_s: float
    alarms_before: dict[str, int]
    flagged_by: dict[str, list[str]]
    updates: int
    cpu_s: float


@dataclass(frozen=True)
class HealthyResult:
    name: str
    hosts: int
    backend_days: float
    alarms: dict[str, int]
    updates: int
    cpu_s: float


class Recordings:
    """Simulations, run once: cached on disk by what they depend on (``directory`` None: no cache)."""

    def __init__(self, directory: Path | None, interval_s: float, window_s: float) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.window_s = window_s
        digest = hashlib.sha256()
        for path in SIMULATION_SOURCES:
            digest.update(path.read_bytes())
        self.sources = digest.hexdigest()

    def get(self, scenario: Scenario, label: str) -> tuple[Recording, EnvoyAlarms]:
        key = hashlib.sha256(
            f"{self.sources} {label} {scenario.trace.name} {len(scenario.requests)} "
            f"{scenario.faults} {scenario.trace_start_s} {scenario.duration_s} {scenario.rate} "
            f"{scenario.subsets} {scenario.seed} {self.interval_s} {self.window_s}".encode()
        ).hexdigest()[:20]
        path = self.directory / f"{key}.pkl" if self.directory else None
        if path is not None and path.is_file():
            with path.open("rb") as cached:
                recording, envoy = pickle.load(cached)  # our own cache, written below
            return recording, envoy
        recording, counts = record(scenario, BACKEND, self.interval_s, self.window_s)
        envoy = {rule: [t for t, _, _ in counts.alarms[n]] for rule, n in zip(ENVOY, CONSECUTIVE, strict=True)}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                pickle.dump((recording, envoy), out)
        return recording, envoy


def signals_at(scored: Scored, rule: str, at_s: float, upper: float) -> list[str]:
    """The signals whose own score reached ``upper`` at tick ``at_s`` (empty for a limit's flag)."""
    view = rule.rsplit(" ", 1)[0]
    tick = int(np.searchsorted(scored.times, at_s))
    return sorted(m for (v, m), scores in scored.signals.items() if v == view and scores[tick] >= upper)


def evaluate_episode(episode: Episode, recording: Recording, envoy: EnvoyAlarms, limits: HealthLimits) -> EpisodeResult:
    """Each rule's delay from the onset to its first flag while the fault lasts, and its alarms before."""
    scored = score_recording(recording, limits)
    live_from = float(scored.times[0])
    delays: dict[str, float | None] = {}
    before: dict[str, int] = {}
    flagged_by: dict[str, list[str]] = {}
    for rule, scores in scored.rules.items():
        flag = first_flag(scored.times, scores, limits, episode.onset_s, episode.end_s)
        delays[rule] = None if flag is None else flag - episode.onset_s
        before[rule] = sum(t < episode.onset_s for t in alarms(scored.times, scores, limits))
        flagged_by[rule] = [] if flag is None else signals_at(scored, rule, flag, limits.upper)
    for rule, times in envoy.items():
        inside = [t for t in times if episode.onset_s <= t <= episode.end_s]
        delays[rule] = inside[0] - episode.onset_s if inside else None
        before[rule] = sum(live_from <= t < episode.onset_s for t in times)
    first_error = delays[ENVOY[0]]
    ticks = scored.times[scored.times >= episode.onset_s + (first_error or 0.0)]
    delays[FLOOR] = float(ticks[0]) - episode.onset_s if first_error is not None and len(ticks) else None
    return EpisodeResult(
        episode.kind,
        episode.number,
        episode.workload.name,
        episode.parameters,
        episode.onset_s,
        delays,
        episode.onset_s - live_from,
        before,
        flagged_by,
        scored.updates,
        scored.cpu_s,
    )


def evaluate_healthy(
    name: str, hosts: int, recording: Recording, envoy: EnvoyAlarms, limits: HealthLimits
) -> HealthyResult:
    """Every rule's flags over a healthy run's live ticks: each one a false alarm."""
    scored = score_recording(recording, limits, epoch_s=SHAPES_EPOCH_S)
    live_from, live_to = float(scored.times[0]), float(scored.times[-1])
    counts = {rule: len(alarms(scored.times, scores, limits)) for rule, scores in scored.rules.items()}
    for rule, times in envoy.items():
        counts[rule] = sum(live_from <= t <= live_to for t in times)
    days = (live_to - live_from) / SECONDS_PER_DAY
    return HealthyResult(name, hosts, days, counts, scored.updates, scored.cpu_s)


def mean_concurrency(trace: Trace, rate: float, hosts: int, recordings: Recordings) -> float:
    """Mean running sequences per host over one healthy pass of the trace at ``rate``."""
    workload = Workload("probe", trace, rate, hosts, 0.0)
    scenario = backend_scenario("probe", workload, float(trace.arrival_s[-1]) / rate)
    recording, _ = recordings.get(scenario, "probe")
    return float(np.mean(recording.running))


def hosts_for(trace: Trace, rate: float) -> int:
    """The fewest hosts whose peak 15-minute request rate per host stays under :data:`PEAK_RATE_PER_HOST`."""
    counts = np.bincount((trace.arrival_s / rate // 900).astype(np.int64))
    return max(1, math.ceil(int(counts.max()) / 900 / PEAK_RATE_PER_HOST))


def summary(values: Sequence[float | None]) -> str:
    """``median / p90`` of the delays found, and how many were missed."""
    found = [v for v in values if v is not None]
    missed = len(values) - len(found)
    if not found:
        return f"- ({missed} missed)"
    median, p90 = np.percentile(found, [50, 90])
    return f"{median:.0f} / {p90:.0f}" + (f" ({missed} missed)" if missed else "")


def print_tables(episodes: Sequence[EpisodeResult], healthy: Sequence[HealthyResult], interval_s: float) -> None:
    kinds = [k for k in FAILURE_KINDS if any(e.kind == k for e in episodes)]
    healthy_days = sum(h.backend_days for h in healthy)
    prefix_days = sum(e.healthy_s for e in episodes) / SECONDS_PER_DAY
    print(
        f"\nAlert level {alert_level(interval_s):.2f} at a {interval_s:g} s interval (a budget of "
        f"{FALSE_ALARMS_PER_BACKEND_DAY:g} false alarm per backend-day over {TESTS_PER_BACKEND} tests; "
        "no value was chosen on these runs, so each healthy run is held out)."
    )
    print("Detection delay in seconds from the onset, median / p90 (missed while the fault lasted),")
    print("and false alarms (FA) per backend-day:\n")
    per_run = [f"FA, {h.name}" for h in healthy]
    print("| rule | " + " | ".join([*kinds, *per_run]) + " | FA, 3-day runs | FA, before onsets |")
    print("|---|" + "---:|" * (len(kinds) + len(per_run) + 2))
    for rule in ALL_RULES:
        cells = [summary([e.delays_s[rule] for e in episodes if e.kind == kind]) for kind in kinds]
        if rule == FLOOR:  # a bound on delays, not a rule that raises alarms
            cells += ["-"] * (len(healthy) + 2)
        else:
            cells += [f"{h.alarms[rule] / h.backend_days:.2f}" for h in healthy]
            cells.append(f"{sum(h.alarms[rule] for h in healthy) / healthy_days:.2f}" if healthy_days else "-")
            cells.append(f"{sum(e.alarms_before[rule] for e in episodes) / prefix_days:.2f}" if prefix_days else "-")
        print(f"| {rule} | " + " | ".join(cells) + " |")
    print(
        f"\nEpisodes per kind: {len(episodes) // max(1, len(kinds))}; healthy: "
        + ", ".join(f"{h.name} on {h.hosts} hosts ({h.backend_days:.2f} backend-days)" for h in healthy)
        + f"; before onsets: {prefix_days:.2f} backend-days."
    )
    print("\nSignals whose own detector score reached the flag threshold at the first flag ('limit': none did):\n")
    print("| rule | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for rule in RULES:
        cells = []
        for kind in kinds:
            counts: dict[str, int] = {}
            for e in episodes:
                if e.kind == kind and e.delays_s[rule] is not None:
                    for signal in e.flagged_by[rule] or ["limit"]:
                        counts[signal] = counts.get(signal, 0) + 1
            cells.append(", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "-")
        print(f"| {rule} | " + " | ".join(cells) + " |")
    runs: list[EpisodeResult | HealthyResult] = [*episodes, *healthy]
    updates = sum(r.updates for r in runs)
    cpu_us = 1e6 * sum(r.cpu_s for r in runs) / max(1, updates)
    print(f"\nOne detector update: {cpu_us:.0f} µs of CPU time (mean of {updates:,} updates).")


def workloads(recordings: Recordings) -> list[Workload]:
    """The episodes' backends: the conversation trace at the judge's load per host, the code trace at its own."""
    if SHARED_TRACES.is_dir():
        conv = load_trace(SHARED_TRACES / "azure_llm_2023_conv.csv")
        code = load_trace(SHARED_TRACES / "azure_llm_2023_code.csv")
    else:
        print(f"{SHARED_TRACES} is absent: episodes on the repository's trace slices, no 3-day healthy runs.")
        conv = load_trace(REPO_TRACES / "azure_llm_2023_conv_from840s.csv.gz")
        code = load_trace(REPO_TRACES / "azure_llm_2023_code_first900s.csv.gz")
    made = [
        Workload("conv 2x", conv, 2.0, 4, mean_concurrency(conv, 2.0, 4, recordings)),
        Workload("code 1x", code, 1.0, 4, mean_concurrency(code, 1.0, 4, recordings)),
    ]
    for w in made:
        print(f"workload {w.name}: {w.hosts} hosts, {w.mean_concurrency:.2f} running sequences per host on average")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=12, help="episodes per failure kind")
    parser.add_argument("--kinds", nargs="*", choices=FAILURE_KINDS, default=list(FAILURE_KINDS))
    parser.add_argument(
        "--policy",
        type=Path,
        default=ROOT / "examples/traffic-backtest.yaml",
        help="the CircuitBreakerPolicy whose interval, rate window and health limits the operator's rules use",
    )
    parser.add_argument("--healthy-days", type=float, default=3.0, help="days of each 3-day shape to play (0: none)")
    parser.add_argument("--out", type=Path, help="directory for the results (JSON lines) and the recordings cache")
    args = parser.parse_args(argv)

    try:
        documents = load_policies(args.policy)
    except InputError as exc:
        parser.error(str(exc))
    breaker = next((d.spec for d in documents if isinstance(d.spec, CircuitBreakerPolicySpec)), None)
    if breaker is None:
        parser.error(f"{args.policy} holds no CircuitBreakerPolicy")
    limits, interval_s = breaker.health.limits, float(breaker.interval_s)
    window_s = float(window_seconds(breaker.health.rate_window))
    print(f"{args.policy}: interval {interval_s:g} s, rate window {window_s:g} s, {limits}")
    recordings = Recordings(args.out / "recordings" if args.out else None, interval_s, window_s)
    backends = workloads(recordings)
    episodes = []
    for kind in args.kinds:
        for number in range(args.episodes):
            episode = draw_episode(kind, number, backends[number % len(backends)], WARMUP_POINTS * interval_s)
            recording, envoy = recordings.get(episode.scenario(), f"{kind} {number}")
            episodes.append(evaluate_episode(episode, recording, envoy, limits))
            delays = episodes[-1].delays_s.items()
            print(
                f"{kind} {number} ({episode.workload.name}, {episode.parameters}): "
                + ", ".join(f"{rule} {'-' if d is None else round(d)}" for rule, d in delays),
                flush=True,
            )
    healthy = []
    if SHARED_TRACES.is_dir() and args.healthy_days > 0:
        for name in ("multiday_taxi_shape_3d", "multiday_elb_shape_3d"):
            trace = load_trace(SHARED_TRACES / f"{name}.csv.gz")
            trace = trace.with_arrivals_before(args.healthy_days * SECONDS_PER_DAY)
            workload = Workload(name, trace, 1.0, hosts_for(trace, 1.0), 0.0)
            scenario = backend_scenario(name, workload, float(trace.arrival_s[-1]) + 1.0)
            recording, envoy = recordings.get(scenario, name)
            healthy.append(evaluate_healthy(name, workload.hosts, recording, envoy, limits))
            print(f"healthy {name} on {workload.hosts} hosts: {healthy[-1].alarms}", flush=True)
    print_tables(episodes, healthy, interval_s)
    if args.out:
        with (args.out / "episodes.jsonl").open("w") as out:
            out.writelines(json.dumps(asdict(e)) + "\n" for e in episodes)
        with (args.out / "healthy.jsonl").open("w") as out:
            out.writelines(json.dumps(asdict(h)) + "\n" for h in healthy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
