"""A recording scored by the operator's own code, and when each rule flags the backend.

The scores come from :class:`controller.traffic.signals.SignalMemory`, the object the operator's
traffic daemons keep: one :class:`forecasting.detector.StreamingDetector` per (backend, signal),
warmed by :meth:`~controller.traffic.signals.SignalMemory.replay` with the first
:data:`~controller.traffic.signals.WARMUP_POINTS` readings (what the operator replays from Prometheus
history when it starts), then fed one reading per tick with
:meth:`~controller.traffic.signals.SignalMemory.score`. A backend is flagged as the circuit breaker
flags it: :func:`policies.health.failure_score` against the spec's limits, judged by
:func:`policies.health.assess` (flagged at ``upper``, released after ``hold_s`` below ``lower``).

A rule is a view (which readings) and a kind: ``detector`` is the largest detector score over the
view's signals, ``policy`` that together with the spec's limits. Views:

* ``backend``: the subset as a whole, error rate, p95 TTFT and p95 TPOT: what the operator reads today;
* ``pods``: each pod alone, the same signals, the backend's score being its worst pod's;
* ``pods+source``: the same with the client's count of 5xx (timeouts included);
* ``pods+source+queue``: and vLLM's waiting requests per pod;
* ``backend+stall``: the backend's signals, and whether a pod stalled over the tick's interval
  (:func:`controller.clients.servers.stalled`: requests running or waiting at both ticks, no token
  generated between them), which tightens the operator's circuit breaker as a failing replica does:
  a tick with a stalled pod scores 1 (the signal ``stalled``: 1, or 0 when every pod could be judged
  and none stalled). A tick without a stall leaves the score to the backend's own signals: the lack
  of a stall is no evidence of calm, so a tick whose signals are missing stays missing and the
  hysteresis releases nothing on it. It is an invariant of the engine, not a calibrated test: no
  detector, no alert level.

The detectors' alert level is the operator's at the recording's interval
(:func:`controller.traffic.signals.alert_level`: a budget of one false alarm per backend-day).

Signals the operator does not read today (the client's 5xx, the queue) get the detector the
operator would create for them, fed the same way. Each signal is scored by its own detector, one
call per signal: the largest of them is what ``SignalMemory.score`` returns for the signals
together, and the per-signal scores say which signal raised a flag.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.failure_signals import Reading, Recording
from controller.clients.prometheus import RangeSamples
from controller.clients.servers import stalled
from controller.traffic.signals import WARMUP_POINTS, SignalMemory, alert_level
from forecasting.detector import StreamingDetector
from policies.health import BackendHealth, BackendSignals, HealthLimits, assess, failure_score

#: The readings' signals, each read under the name the operator reads it by (when it reads it).
SIGNALS = {"error_rate": "error_rate", "source_error_rate": "error_rate", "ttft_s": "ttft_s", "tpot_s": "tpot_s"}
SIGNALS_NOT_READ = ("waiting",)


@dataclass(frozen=True)
class View:
    """Which readings a rule judges: the backend's or each pod's, and which of their signals (an error rate first)."""

    name: str
    per_pod: bool
    signals: tuple[str, ...]
    stall: bool = False


STALLED = "stalled"
VIEWS = (
    View("backend", False, ("error_rate", "ttft_s", "tpot_s")),
    View("backend+stall", False, ("error_rate", "ttft_s", "tpot_s"), stall=True),
    View("pods", True, ("error_rate", "ttft_s", "tpot_s")),
    View("pods+source", True, ("source_error_rate", "ttft_s", "tpot_s")),
    View("pods+source+queue", True, ("source_error_rate", "ttft_s", "tpot_s", "waiting")),
)
RULES = tuple(f"{view.name} {kind}" for view in VIEWS for kind in ("detector", "policy"))


@dataclass(frozen=True)
class Scored:
    """The live ticks (after the warm-up): their times, each rule's score, each view's per-signal scores.

    Scores are NaN where nothing could be read. ``updates`` detector updates took ``cpu_s`` of CPU time.
    """

    times: np.ndarray
    rules: dict[str, np.ndarray]
    signals: dict[tuple[str, str], np.ndarray]
    updates: int
    cpu_s: float


class _Scorer:
    """Every detector of one recording: the operator's :class:`SignalMemory`, plus one detector per
    signal it does not read; with the CPU time and count of the updates."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.memory = SignalMemory()
        self.unread: dict[tuple[str, str], StreamingDetector] = {}
        self.updates = 0
        self.cpu_s = 0.0

    @staticmethod
    def _key(source: str, signal: str) -> str:
        return f"{source}/{signal}"  # one backend name per signal: its detectors never mix

    def warm(self, source: str, times: Sequence[float], readings: Sequence[Reading]) -> None:
        """Replay the readings as the operator replays Prometheus history into fresh detectors."""
        for signal, metric in SIGNALS.items():
            values = [getattr(r, signal) for r in readings]
            kept = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
            step_s = times[1] - times[0] if len(times) > 1 else 0.0
            history = RangeSamples(step_s, tuple(t for t, _ in kept), tuple(v for _, v in kept))
            self.memory.replay(self._key(source, signal), {metric: history}, self.interval_s)
        for signal in SIGNALS_NOT_READ:
            detector = self.unread.setdefault(
                (source, signal), StreamingDetector(alert_level=alert_level(self.interval_s))
            )
            for t, reading in zip(times, readings, strict=True):
                detector.update(pd.Timestamp(t, unit="s"), getattr(reading, signal))

    def score(self, source: str, now: float, reading: Reading, wanted: set[str]) -> dict[str, float]:
        """The ``wanted`` signals' detector scores for this reading (NaN: not read)."""
        scores = {}
        for signal in wanted:
            value = getattr(reading, signal)
            if value is None:
                scores[signal] = np.nan
                continue
            started = time.process_time()
            if signal in SIGNALS:
                score = self.memory.score(self._key(source, signal), now, {SIGNALS[signal]: value}, self.interval_s)
            else:
                score = self.unread[(source, signal)].update(pd.Timestamp(now, unit="s"), value)
            self.cpu_s += time.process_time() - started
            self.updates += 1
            scores[signal] = np.nan if score is None else score
        return scores


def stall_scores(recording: Recording) -> list[float]:
    """Per tick, 1 when a pod stalled since the previous tick, 0 when none did, NaN when none could be judged."""
    scores = [np.nan]
    for tick in range(1, len(recording.times)):
        verdicts = [
            stalled(
                (recording.running[tick - 1][h], recording.running[tick][h]),
                (recording.pods[tick - 1][h].waiting, recording.pods[tick][h].waiting),
                (recording.generated[tick - 1][h], recording.generated[tick][h]),
            )
            for h in range(len(recording.running[tick]))
        ]
        judged = [v for v in verdicts if v is not None]
        scores.append(float(any(judged)) if judged else np.nan)
    return scores


def _worst(scores: Sequence[float]) -> float:
    finite = [s for s in scores if not np.isnan(s)]
    return max(finite) if finite else np.nan


def _policy(detector: float, reading: Reading, error_signal: str, limits: HealthLimits) -> float:
    signals = BackendSignals(
        name="backend",
        failure_score=None if np.isnan(detector) else detector,
        error_rate=getattr(reading, error_signal),
        ttft_s=reading.ttft_s,
        tpot_s=reading.tpot_s,
    )
    score = failure_score(signals, limits)
    return np.nan if score is None else score


def score_recording(
    recording: Recording, limits: HealthLimits, warmup_points: int = WARMUP_POINTS, epoch_s: float = 0.0
) -> Scored:
    """Warm fresh detectors with the first ``warmup_points`` ticks, then score every later tick by every rule.

    ``epoch_s`` is added to the simulation's times before the detectors see them (their daily and
    weekly profiles bucket by wall-clock time).
    """
    times = [epoch_s + t for t in recording.times]
    warm = min(warmup_points, len(times))
    hosts = len(recording.pods[0]) if recording.pods else 0
    if len(recording.times) < 2:
        raise ValueError("a recording needs two ticks to have an interval")
    scorer = _Scorer(recording.times[1] - recording.times[0])
    scorer.warm("backend", times[:warm], recording.backend[:warm])
    for host in range(hosts):
        scorer.warm(f"pod-{host}", times[:warm], [r[host] for r in recording.pods[:warm]])
    wanted = {scope: {s for v in VIEWS if v.per_pod == scope for s in v.signals} for scope in (False, True)}
    live = range(warm, len(times))
    stall = stall_scores(recording)
    rules: dict[str, list[float]] = {rule: [] for rule in RULES}
    signals: dict[tuple[str, str], list[float]] = {
        (v.name, s): [] for v in VIEWS for s in (*v.signals, *((STALLED,) if v.stall else ()))
    }
    for tick in live:
        now = times[tick]
        backend = (recording.backend[tick], scorer.score("backend", now, recording.backend[tick], wanted[False]))
        pods = [(r, scorer.score(f"pod-{h}", now, r, wanted[True])) for h, r in enumerate(recording.pods[tick])]
        for view in VIEWS:
            sources = pods if view.per_pod else [backend]
            detectors = [_worst([scores[s] for s in view.signals]) for _, scores in sources]
            policies = [_policy(d, r, view.signals[0], limits) for d, (r, _) in zip(detectors, sources, strict=True)]
            # A stall flags; its absence is no calm score (a tick whose own signals are missing stays missing).
            extra = [stall[tick]] if view.stall and stall[tick] == 1.0 else []
            rules[f"{view.name} detector"].append(_worst([*detectors, *extra]))
            rules[f"{view.name} policy"].append(_worst([*policies, *extra]))
            for signal in view.signals:
                signals[(view.name, signal)].append(_worst([scores[signal] for _, scores in sources]))
            if view.stall:
                signals[(view.name, STALLED)].append(stall[tick])
    return Scored(
        times=np.asarray([recording.times[t] for t in live], dtype=float),
        rules={rule: np.asarray(values, dtype=float) for rule, values in rules.items()},
        signals={key: np.asarray(values, dtype=float) for key, values in signals.items()},
        updates=scorer.updates,
        cpu_s=scorer.cpu_s,
    )


def alarms(times: np.ndarray, scores: np.ndarray, limits: HealthLimits) -> list[float]:
    """The ticks where the backend becomes flagged (the policy's hysteresis), in time order."""
    health = BackendHealth()
    raised = []
    for now, score in zip(times.tolist(), scores.tolist(), strict=True):
        flagged = health.flagged
        health, _ = assess(None if np.isnan(score) else score, health, limits, now)
        if health.flagged and not flagged:
            raised.append(now)
    return raised


def first_flag(
    times: np.ndarray, scores: np.ndarray, limits: HealthLimits, onset_s: float, end_s: float
) -> float | None:
    """The first tick in [onset, end] whose score reaches the flag threshold; None when none does."""
    hits = np.flatnonzero((times >= onset_s) & (times <= end_s) & (scores >= limits.upper))
    return float(times[hits[0]]) if len(hits) else None
