"""Route weights over backends: follow healthy capacity, or step a canary, a bounded move per cycle.

Weights are integers summing to ``total`` (100 for an Istio VirtualService, whose tools expect
percentages; the same for a Gateway API HTTPRoute, whose weights are relative). Two strategies:

**Capacity.** Each healthy backend's target share is proportional to its forecast capacity:
replicas x relative capacity per replica (an H100 pool serves more per replica than an L4 pool),
the replicas being the ready ones, or fewer when a forecast-driven scaler has already decided the
backend will have fewer (``forecast_replicas``): its share moves away before the replicas go,
instead of the scale-down overloading the ones left. Replicas the forecast adds count only once
they are ready: weight sent ahead of readiness would queue on the replicas already there. A flagged
backend (:mod:`policies.health`) is drained to ``probe`` weight rather than to zero: with no
traffic it would produce no metrics, and a backend nobody can see never recovers. When every
backend is flagged, the least-bad ones (lowest failure score) keep serving as if healthy:
routing everything to nothing is never an option. A backend already drained to its probe is not
among them while another still serves: the pool that took its load over may look worse for that
load alone, and handing the traffic back would only move the overload to the broken pool. The
weights then move towards the target by at most ``max_step`` per cycle, all of them scaled by one
factor so that the sum stays ``total``.

**Canary.** The canary's weight goes up ``step`` at a time, at most once per ``step_interval_s``,
up to ``max_weight``, while its TTFT, TPOT and error rate stay within the margins of the stable
backend's; one more step interval at ``max_weight`` within the margins promotes it (all the
weight). A canary worse beyond a margin (or flagged outright) is rolled back to zero at once, with
no step limit: when a new version is bad, every cycle at its weight costs requests. Latency grows
with load, so TTFT and TPOT are compared only while the canary carries no more load per replica
than stable (requests over ready replicas, within :data:`COMPARABLE_LOAD`): a canary busier than
stable is slower for that reason alone, and rolling it back would punish the rollout, not the
version. A lightly loaded canary hides a regression the same way (it is faster than stable for
that reason alone), which is what ``max_weight`` is for: at the weight where the canary's share of
the load equals its share of the replicas (50 with as many replicas as stable), the comparison is
fair, and the canary is promoted only after passing it there. A rollback is final for
the canary's revision; a new revision (a spec change) starts over. The comparison needs
``min_requests`` on both sides within the window the quantiles are computed over: a p95 over a
handful of requests is mostly noise, and would roll back a good canary (or promote a bad one) by
chance. With fewer, the weight holds (the first step, from zero, needs no canary data); a canary
flagged by its own health (:mod:`policies.health`, with its hysteresis) is still rolled back.

A backend whose data is missing keeps its current weight; the others share the rest. Nothing
moves when no backend can be judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from policies.health import BackendHealth, BackendSignals, BackendVerdict, HealthLimits, finite, judge
from policies.reasons import Reason

CanaryPhase = Literal["Progressing", "Promoted", "RolledBack"]
#: The canary's TTFT and TPOT are compared with stable's while its load per replica is at most this
#: many times stable's (a little above 1: at equal weights per replica the counts of one window differ by noise).
COMPARABLE_LOAD = 1.1


@dataclass(frozen=True)
class RoutedBackend:
    """One backend of the route: its signals, how much one replica serves, and its live weight."""

    signals: BackendSignals
    current_weight: float
    capacity_per_replica: float = 1.0
    forecast_replicas: float | None = None  # what a forecast-driven scaler decided; None: not scaled so

    @property
    def name(self) -> str:
        return self.signals.name


@dataclass(frozen=True)
class CanarySpec:
    """The canary strategy; ``revision`` identifies one rollout (a new one forgets a rollback)."""

    stable: str
    canary: str
    revision: str
    step: int = 10
    step_interval_s: float = 60.0
    ttft_margin: float = 0.2
    tpot_margin: float = 0.2
    error_rate_margin: float = 0.01
    min_requests: float = 0.0
    max_weight: int | None = None  # the weight promoted from; None: the route's total

    def __post_init__(self) -> None:
        if self.stable == self.canary:
            raise ValueError("the canary and the stable backend must differ")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.max_weight is not None and self.max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {self.max_weight}")


@dataclass(frozen=True)
class RoutingInputs:
    backends: tuple[RoutedBackend, ...]
    limits: HealthLimits = field(default_factory=HealthLimits)
    max_step: int = 20
    probe: int = 5
    total: int = 100
    canary: CanarySpec | None = None

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError("at least one backend is required")
        if len({b.name for b in self.backends}) != len(self.backends):
            raise ValueError("backend names must be unique")
        if self.total < 1 or self.max_step < 1 or not 0 <= self.probe <= self.total:
            raise ValueError(f"need total >= 1, max_step >= 1, 0 <= probe <= total; got {self}")
        if self.canary and {self.canary.stable, self.canary.canary} != {b.name for b in self.backends}:
            raise ValueError("a canary route has exactly two backends: the stable one and the canary")


@dataclass(frozen=True)
class CanaryState:
    revision: str
    phase: CanaryPhase = "Progressing"
    since: float | None = None  # when the canary's weight last changed

    def to_dict(self) -> dict[str, object]:
        return {"revision": self.revision, "phase": self.phase, "since": self.since}

    @classmethod
    def from_dict(cls, data: object) -> CanaryState | None:
        """Never raises: a malformed canary state is no state (the rollout starts over)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("revision"), str):
            return None
        phase = data.get("phase")
        since = data.get("since")
        return cls(
            revision=str(data["revision"]),
            phase=phase if phase in ("Progressing", "Promoted", "RolledBack") else "Progressing",  # type: ignore[arg-type]
            since=finite(float(since)) if isinstance(since, int | float) and not isinstance(since, bool) else None,
        )


@dataclass(frozen=True)
class RoutingState:
    health: Mapping[str, BackendHealth] = field(default_factory=dict)
    canary: CanaryState | None = None


@dataclass(frozen=True)
class RoutingDecision:
    """``weights`` in the order of the inputs' backends; ``target`` is where they are heading."""

    weights: tuple[tuple[str, int], ...]
    target: tuple[tuple[str, float], ...]
    verdicts: tuple[BackendVerdict, ...]
    reasons: tuple[Reason, ...]
    message: str
    state: RoutingState

    def weight(self, name: str) -> int:
        return dict(self.weights)[name]


def decide_routing(inputs: RoutingInputs, state: RoutingState, now: float) -> RoutingDecision:
    remembered = state.health
    if inputs.canary and (state.canary is None or state.canary.revision != inputs.canary.revision):
        # A new revision is a new canary: what its predecessor did says nothing about it.
        remembered = {name: h for name, h in state.health.items() if name != inputs.canary.canary}
    verdicts = tuple(judge(b.signals, remembered, inputs.limits, now) for b in inputs.backends)
    health = {v.name: v.health for v in verdicts}
    current = _normalized([b.current_weight for b in inputs.backends], inputs.total)
    if inputs.canary is not None:
        return _decide_canary(inputs, inputs.canary, state, verdicts, current, health, now)
    return _decide_capacity(inputs, verdicts, current, health)


def _decide_capacity(
    inputs: RoutingInputs,
    verdicts: tuple[BackendVerdict, ...],
    current: list[float],
    health: dict[str, BackendHealth],
) -> RoutingDecision:
    reasons: list[Reason] = []
    judged = [i for i, v in enumerate(verdicts) if not v.missing]
    if not judged:
        return _result(inputs, current, current, verdicts, [Reason.BackendDataMissing, Reason.WeightsHeld], health)
    if len(judged) < len(verdicts):
        reasons.append(Reason.BackendDataMissing)
    serving = [i for i in judged if not verdicts[i].health.flagged]
    if not serving:
        # A drained backend comes back by recovering, not because the pool that took its load over
        # looks worse under that load: the least bad is chosen among those still serving.
        candidates = [i for i in judged if current[i] > inputs.probe] or judged
        scores = {i: _score(verdicts[i]) for i in candidates}
        serving = [i for i in candidates if scores[i] == min(scores.values())]
        reasons.append(Reason.AllBackendsUnhealthy)
    elif len(serving) < len(judged):
        reasons.append(Reason.BackendDegraded)

    available = inputs.total - sum(current[i] for i in range(len(current)) if i not in judged)
    drained = [i for i in judged if i not in serving]
    # Probes never take more than half of what the judged backends carry together.
    probe = min(float(inputs.probe), available / 2 / len(drained)) if drained else 0.0
    capacities = [_capacity(inputs.backends[i]) for i in serving]
    if sum(capacities) <= 0:
        capacities = [1.0] * len(serving)
    share = available - probe * len(drained)
    target = list(current)
    for i in drained:
        target[i] = probe
    for i, capacity in zip(serving, capacities, strict=True):
        target[i] = share * capacity / sum(capacities)
    reasons.append(Reason.WeightsFollowCapacity)
    moved, limited = _step(current, target, inputs.max_step)
    if limited:
        reasons.append(Reason.WeightStepLimited)
    return _result(inputs, moved, target, verdicts, reasons, health)


def _decide_canary(
    inputs: RoutingInputs,
    spec: CanarySpec,
    state: RoutingState,
    verdicts: tuple[BackendVerdict, ...],
    current: list[float],
    health: dict[str, BackendHealth],
    now: float,
) -> RoutingDecision:
    names = [b.name for b in inputs.backends]
    stable_i, canary_i = names.index(spec.stable), names.index(spec.canary)
    previous = state.canary if state.canary and state.canary.revision == spec.revision else None
    phase: CanaryPhase = previous.phase if previous else "Progressing"
    since = previous.since if previous else None
    canary_weight = current[canary_i]
    stable_signals = inputs.backends[stable_i].signals
    canary_signals = inputs.backends[canary_i].signals
    too_few = _too_few_requests(canary_signals, stable_signals, spec.min_requests)
    worse = [] if too_few else _worse_than_stable(canary_signals, stable_signals, spec)
    if verdicts[canary_i].health.flagged and not verdicts[canary_i].missing:
        worse = [f"flagged ({verdicts[canary_i].reason})", *worse]

    if phase == "RolledBack" or (phase == "Progressing" and worse):
        reasons = [Reason.CanaryRolledBack]
        if phase != "RolledBack":
            phase, since = "RolledBack", now
        weight, detail = 0.0, ("; ".join(worse) or "rolled back earlier for this revision")
    elif phase == "Promoted":
        reasons, weight, detail = [Reason.CanaryPromoted], float(inputs.total), "carries all traffic"
    elif canary_weight > 0 and too_few:
        reasons, weight, detail = [Reason.CanaryTooFewRequests], canary_weight, too_few
    elif canary_weight > 0 and not _comparable(canary_signals, stable_signals):
        reasons, weight, detail = [Reason.CanaryWaiting], canary_weight, "no comparable TTFT, TPOT or error rate"
    elif since is not None and now - since < spec.step_interval_s:
        reasons, weight = [Reason.CanaryWaiting], canary_weight
        detail = f"{now - since:.0f}s of {spec.step_interval_s:.0f}s at this weight"
    else:
        top = min(inputs.total, spec.max_weight or inputs.total)
        weight = float(inputs.total) if canary_weight >= top else min(float(top), math.floor(canary_weight) + spec.step)
        since = now
        phase = "Promoted" if weight >= inputs.total else "Progressing"
        reasons = [Reason.CanaryPromoted if phase == "Promoted" else Reason.CanaryStep]
        detail = "within the margins of stable" if canary_weight > 0 else "first step"
    target = [0.0] * len(current)
    target[canary_i], target[stable_i] = weight, inputs.total - weight
    new_state = RoutingState(health, CanaryState(spec.revision, phase, since))
    decision = _result(inputs, target, target, verdicts, reasons, health, detail=f"canary {spec.canary}: {detail}")
    return RoutingDecision(decision.weights, decision.target, verdicts, decision.reasons, decision.message, new_state)


def _worse_than_stable(canary: BackendSignals, stable: BackendSignals, spec: CanarySpec) -> list[str]:
    """Each signal on which the canary is worse than stable beyond its margin, described; latency only
    while the canary is not the busier of the two per replica."""
    worse = []
    latencies = (
        ("TTFT", canary.ttft_s, stable.ttft_s, spec.ttft_margin),
        ("TPOT", canary.tpot_s, stable.tpot_s, spec.tpot_margin),
    )
    for label, c, s, margin in latencies if _not_busier(canary, stable) else ():
        seen_c, seen_s = finite(c), finite(s)
        if seen_c is not None and seen_s is not None and seen_c > seen_s * (1 + margin):
            worse.append(f"{label} {seen_c:.3g}s > stable {seen_s:.3g}s x {1 + margin:g}")
    error_c, error_s = finite(canary.error_rate), finite(stable.error_rate)
    if error_c is not None and error_s is not None and error_c > error_s + spec.error_rate_margin:
        worse.append(f"error rate {error_c:.3f} > stable {error_s:.3f} + {spec.error_rate_margin:g}")
    return worse


def _not_busier(canary: BackendSignals, stable: BackendSignals) -> bool:
    """Whether the canary serves at most :data:`COMPARABLE_LOAD` times stable's requests per ready
    replica; an unknown load counts as comparable (the comparison is all there is to go on)."""
    loads = []
    for side in (canary, stable):
        requests, ready = finite(side.requests), side.ready_replicas
        if requests is None or ready is None or ready <= 0:
            return True
        loads.append(requests / ready)
    return loads[0] <= loads[1] * COMPARABLE_LOAD


def _too_few_requests(canary: BackendSignals, stable: BackendSignals, least: float) -> str:
    """Why the two sides cannot be compared yet (too few requests, or unknown counts); empty when they can."""
    if least <= 0:
        return ""
    counts = {"canary": finite(canary.requests), "stable": finite(stable.requests)}
    if all(count is not None and count >= least for count in counts.values()):
        return ""
    seen = ", ".join(f"{side} {'?' if n is None else f'{n:.0f}'}" for side, n in counts.items())
    return f"too few requests in the window to compare ({seen}; {least:.0f} needed on each side)"


def _comparable(canary: BackendSignals, stable: BackendSignals) -> bool:
    pairs = ((canary.ttft_s, stable.ttft_s), (canary.tpot_s, stable.tpot_s), (canary.error_rate, stable.error_rate))
    return any(finite(c) is not None and finite(s) is not None for c, s in pairs)


def _score(verdict: BackendVerdict) -> float:
    """A judged backend always has a score; unknown would rank last."""
    return math.inf if verdict.score is None else verdict.score


def _capacity(backend: RoutedBackend) -> float:
    ready = backend.signals.ready_replicas
    per_replica = finite(backend.capacity_per_replica) or 0.0
    replicas: float | None = max(ready, 0) if ready is not None else None
    forecast = finite(backend.forecast_replicas)
    if forecast is not None:
        replicas = forecast if replicas is None else min(replicas, forecast)
    return replicas * per_replica if replicas is not None else per_replica


def _normalized(weights: Sequence[float], total: int) -> list[float]:
    """Live weights as shares of ``total``; weights summing to nothing count as an even split."""
    clean = [finite(w) or 0.0 for w in weights]
    if sum(clean) <= 0:
        return [total / len(clean)] * len(clean)
    return [w * total / sum(clean) for w in clean]


def _step(current: list[float], target: list[float], max_step: int) -> tuple[list[float], bool]:
    """Move towards ``target`` by at most ``max_step`` per weight; one factor for all keeps the sum."""
    largest = max(abs(t - c) for c, t in zip(current, target, strict=True))
    if largest <= max_step:
        return list(target), False
    factor = max_step / largest
    return [c + factor * (t - c) for c, t in zip(current, target, strict=True)], True


def _rounded(values: list[float], total: int) -> list[int]:
    """Integers summing to ``total`` (largest remainder), each the floor or ceiling of its value."""
    floors = [math.floor(v) for v in values]
    short = total - sum(floors)
    by_remainder = sorted(range(len(values)), key=lambda i: (floors[i] - values[i], i))
    for i in by_remainder[:short]:
        floors[i] += 1
    return floors


def _result(
    inputs: RoutingInputs,
    weights: list[float],
    target: list[float],
    verdicts: tuple[BackendVerdict, ...],
    reasons: list[Reason],
    health: dict[str, BackendHealth],
    detail: str = "",
) -> RoutingDecision:
    names = [b.name for b in inputs.backends]
    rounded = _rounded(weights, inputs.total)
    current = _rounded(_normalized([b.current_weight for b in inputs.backends], inputs.total), inputs.total)
    if rounded == current and Reason.WeightsHeld not in reasons:
        reasons = [*reasons, Reason.WeightsHeld]
    flagged = [v.name for v in verdicts if v.health.flagged]
    parts = [
        "weights " + ", ".join(f"{n}={w}" for n, w in zip(names, rounded, strict=True)),
        f"flagged: {', '.join(flagged)}" if flagged else "no backend flagged",
        *([detail] if detail else []),
    ]
    return RoutingDecision(
        weights=tuple(zip(names, rounded, strict=True)),
        target=tuple(zip(names, target, strict=True)),
        verdicts=verdicts,
        reasons=tuple(dict.fromkeys(reasons)),
        message="; ".join(parts),
        state=RoutingState(health, None),
    )
