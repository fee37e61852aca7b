"""Our CircuitBreakerPolicy and RoutingPolicy, closed loop on a traffic simulation, as the operator runs them.

Each policy keeps what its daemon keeps in a cluster (a :class:`~controller.traffic.signals.SignalMemory`
with its detectors and request-rate history; the health and canary state its ``status`` carries) and
decides every ``spec.interval`` seconds through the operator's own decide step
(:mod:`controller.traffic.decide`). Only the observe and act steps differ: the readings come from the
simulation through :class:`~controller.backtest.traffic.readings.PrometheusView` (what the
operator's queries would return over the policy's ``rateWindow``), the live settings are the
simulator's settings in force, and the decided settings are written as the judge's fields through
:mod:`controller.backtest.traffic.mapping`. Every decision is applied, as in ``Auto`` mode.

A backend serves the scenario's subset named by its ``subset`` (or, on an HTTPRoute, its
``backendRef.name``). As in a cluster, a policy serves the backends it finds and ignores the others;
a Canary policy needs both of its backends; a policy that finds none does nothing. A second policy
of the same kind on a subset already served is refused (one writer per object). Why a policy does
not act is kept in :attr:`TrafficPolicies.notes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controller.backtest.traffic.mapping import WEIGHT, judge_values, live_breakers
from controller.backtest.traffic.observe import Observation
from controller.backtest.traffic.readings import PrometheusView
from controller.backtest.traffic.scenario import Scenario
from controller.backtest.traffic.timeline import SettingUpdate
from controller.traffic.decide import decide_circuit_breakers, decide_weights
from controller.traffic.signals import BackendReading, SignalMemory
from controller.traffic.spec import BackendSpec, CircuitBreakerPolicySpec, RoutingPolicySpec, window_seconds
from policies import BackendHealth, BackendVerdict, RoutingState

CIRCUIT_BREAKER = "CircuitBreakerPolicy"
ROUTING = "RoutingPolicy"


@dataclass(frozen=True)
class PolicyDocument:
    """One policy of the file: its kind, name, parsed spec and ``metadata.generation`` (the canary revision)."""

    kind: str
    name: str
    spec: CircuitBreakerPolicySpec | RoutingPolicySpec
    generation: int = 1


@dataclass(frozen=True)
class Verdict:
    """How a policy judged one backend at one decision, for the plots."""

    time_s: float
    policy: str
    subset: str
    flagged: bool
    score: float | None
    reason: str


def subset_of(backend: BackendSpec) -> str | None:
    """The scenario subset a backend serves: its DestinationRule/VirtualService subset, or its backendRef."""
    if backend.subset is not None:
        return backend.subset
    return backend.backend_ref.name if backend.backend_ref is not None else None


SpecT = TypeVar("SpecT", CircuitBreakerPolicySpec, RoutingPolicySpec)


@dataclass
class _Loop(Generic[SpecT]):
    """What one policy's daemon keeps: its backends found (by subset), its memory and its state."""

    name: str
    spec: SpecT
    subsets: dict[str, str]  # backend name -> subset, in the spec's order
    memory: SignalMemory = field(default_factory=SignalMemory)

    @property
    def interval_s(self) -> int:
        return self.spec.interval_s

    def readings(self, view: PrometheusView) -> list[BackendReading]:
        """What the operator's queries would return for each backend (the same error limit for failing
        pods, the same interval for stalled ones)."""
        health = self.spec.health
        window = window_seconds(health.rate_window)
        return [
            view.reading(b, subset, window, health.error_limit, self.interval_s) for b, subset in self.subsets.items()
        ]

    def verdicts(self, now: float, verdicts: Sequence[BackendVerdict]) -> list[Verdict]:
        return [
            Verdict(now, self.name, self.subsets[v.name], v.health.flagged, v.score, str(v.reason)) for v in verdicts
        ]


@dataclass
class _BreakerLoop(_Loop[CircuitBreakerPolicySpec]):
    health: dict[str, BackendHealth] = field(default_factory=dict)

    def decide(self, view: PrometheusView, observation: Observation) -> tuple[list[SettingUpdate], list[Verdict]]:
        now = observation.end_s
        live = {backend: observation.subset(subset).settings for backend, subset in self.subsets.items()}
        current = {backend: live_breakers(settings) for backend, settings in live.items()}
        step = decide_circuit_breakers(self.spec, self.readings(view), current, self.health, self.memory, now)
        self.health = step.next_health(self.health)
        updates = [
            SettingUpdate(self.subsets[breaker.name], name, value)
            for breaker in step.decision.backends
            for name, value in judge_values(breaker.settings).items()
            if getattr(live[breaker.name], name) != value
        ]
        return updates, self.verdicts(now, [b.verdict for b in step.decision.backends])


@dataclass
class _RoutingLoop(_Loop[RoutingPolicySpec]):
    revision: str = "1"
    state: RoutingState = field(default_factory=RoutingState)

    def decide(self, view: PrometheusView, observation: Observation) -> tuple[list[SettingUpdate], list[Verdict]]:
        now = observation.end_s
        weights = {b: float(observation.subset(s).settings.weight) for b, s in self.subsets.items()}
        ours = set(self.subsets.values())
        route_total = sum(s.settings.weight for s in observation.subsets) or 100
        total = route_total - sum(s.settings.weight for s in observation.subsets if s.name not in ours)
        if total < 1:
            return [], []
        step = decide_weights(
            self.spec, self.readings(view), weights, total, self.state, self.revision, self.memory, now
        )
        self.state = step.next_state(self.state, written=True)
        updates = [
            SettingUpdate(self.subsets[backend], WEIGHT, weight)
            for backend, weight in step.decision.weights
            if round(weights[backend]) != weight
        ]
        return updates, self.verdicts(now, step.decision.verdicts)


class TrafficPolicies:
    """The policies of one file as one closed-loop controller of a simulation (the
    :class:`~controller.backtest.traffic.timeline.Controller` protocol).

    It is called every ``interval_s`` (the greatest common divisor of the policies' intervals)
    with the window since its previous call; each policy decides when its own interval is due.
    """

    def __init__(self, documents: Sequence[PolicyDocument], scenario: Scenario) -> None:
        self.notes: list[str] = []
        self.verdicts: list[Verdict] = []
        self.loops: list[_BreakerLoop | _RoutingLoop] = []
        names = {s.name for s in scenario.subsets}
        served: dict[str, dict[str, str]] = {CIRCUIT_BREAKER: {}, ROUTING: {}}
        for document in documents:
            loop = self._loop(document, names, served[document.kind])
            if loop is not None:
                self.loops.append(loop)
                served[document.kind].update({subset: document.name for subset in loop.subsets.values()})
        windows = [w for loop in self.loops for w in (window_seconds(loop.spec.health.rate_window), loop.interval_s)]
        self.view = PrometheusView(max(windows, default=60))
        self._interval = math.gcd(*(loop.interval_s for loop in self.loops)) if self.loops else 0
        self._ticks = 0

    def _loop(
        self, document: PolicyDocument, subsets: set[str], served: Mapping[str, str]
    ) -> _BreakerLoop | _RoutingLoop | None:
        label = f"{document.kind} {document.name}"
        found = {b.name: s for b in document.spec.backends if (s := subset_of(b)) in subsets}
        missing = [b.name for b in document.spec.backends if b.name not in found]
        taken = sorted({served[s] for s in found.values() if s in served})
        if taken:
            self.notes.append(f"{label}: not acting, its subsets are already tuned by {', '.join(taken)}")
            return None
        if not found:
            self.notes.append(f"{label}: not acting, none of its backends' subsets is in the scenario")
            return None
        if isinstance(document.spec, RoutingPolicySpec) and document.spec.canary is not None and missing:
            self.notes.append(f"{label}: not acting, the canary needs both backends (missing: {', '.join(missing)})")
            return None
        if missing:
            self.notes.append(f"{label}: serving {', '.join(found)}; not in the scenario: {', '.join(missing)}")
        if isinstance(document.spec, CircuitBreakerPolicySpec):
            return _BreakerLoop(document.name, document.spec, found)
        return _RoutingLoop(document.name, document.spec, found, revision=str(document.generation))

    @property
    def interval_s(self) -> float:
        """Seconds between two calls; 0 when no policy acts on the scenario (nothing to call)."""
        return float(self._interval)

    def decide(self, observation: Observation) -> list[SettingUpdate]:
        self.view.add(observation)
        self._ticks += 1
        elapsed = self._ticks * self._interval
        updates: list[SettingUpdate] = []
        for loop in self.loops:
            if elapsed % loop.interval_s == 0:
                decided, verdicts = loop.decide(self.view, observation)
                updates.extend(decided)
                self.verdicts.extend(verdicts)
        return updates
