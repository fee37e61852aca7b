"""The decide step of both traffic cycles: per-backend readings in, settings or weights out. No I/O.

A traffic cycle is observe (I/O: the target through its actuator, every backend's readings from
Prometheus and the API server) -> decide (this module) -> act (write the target in ``Auto``) ->
report. Deciding here means: turn each :class:`~controller.traffic.signals.BackendReading` into the
policy's :class:`~policies.BackendSignals` through the daemon's :class:`SignalMemory` (detector
scores, the forecast load's needed replicas), call :func:`policies.decide_breakers` or
:func:`policies.decide_routing` with the state remembered from the previous cycle (hysteresis,
canary progress), and say what state the next cycle starts from.

The operator (:mod:`controller.traffic.circuit_breakers`, :mod:`controller.traffic.routing_weights`)
and the traffic backtest (:mod:`controller.backtest.traffic.policy`) both call these functions, so
what is backtested is what runs in the cluster; only where the readings come from differs. Nothing
here reads a clock, Prometheus or the API server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.traffic.signals import BackendReading, SignalMemory, backend_signals
from controller.traffic.spec import BackendSpec, CapacitySpec, CircuitBreakerPolicySpec, RoutingPolicySpec
from policies import (
    BackendHealth,
    BackendSignals,
    BreakerDecision,
    BreakerInputs,
    BreakerSettings,
    CanarySpec,
    RoutedBackend,
    RoutingDecision,
    RoutingInputs,
    RoutingState,
    decide_breakers,
    decide_routing,
)


@dataclass(frozen=True)
class BreakerStep:
    """A circuit-breaker decision and the signals it was made from (for the audit record)."""

    decision: BreakerDecision
    signals: tuple[BackendSignals, ...]

    def next_health(self, previous: Mapping[str, BackendHealth]) -> dict[str, BackendHealth]:
        """The hysteresis state the next cycle starts from (backends not judged keep theirs)."""
        return {**previous, **self.decision.health}


@dataclass(frozen=True)
class RoutingStep:
    """A routing decision and the signals it was made from (for the audit record)."""

    decision: RoutingDecision
    signals: tuple[BackendSignals, ...]

    def next_state(self, previous: RoutingState, written: bool) -> RoutingState:
        """The state the next cycle starts from. Health moves on whatever happened to the route;
        a canary step that was not ``written`` did not happen, so its progress stays as it was."""
        health = {**previous.health, **self.decision.state.health}
        return RoutingState(health, self.decision.state.canary if written else previous.canary)


def judge_readings(
    backends: Sequence[BackendSpec],
    readings: Sequence[BackendReading],
    memory: SignalMemory,
    capacity: CapacitySpec | None,
    interval_s: int,
    window: str,
    now: float,
) -> tuple[BackendSignals, ...]:
    """Each reading's signals, in the readings' order (a reading names its backend)."""
    by_name = {b.name: b for b in backends}
    return tuple(backend_signals(by_name[r.name], r, memory, capacity, interval_s, window, now) for r in readings)


def decide_circuit_breakers(
    spec: CircuitBreakerPolicySpec,
    readings: Sequence[BackendReading],
    current: Mapping[str, BreakerSettings],
    previous: Mapping[str, BackendHealth],
    memory: SignalMemory,
    now: float,
) -> BreakerStep:
    """The circuit breakers of every backend read, from their readings and the live ``current`` settings."""
    signals = judge_readings(
        spec.backends, readings, memory, spec.capacity, spec.interval_s, spec.health.rate_window, now
    )
    inputs = BreakerInputs(backends=signals, current=current, bounds=spec.bounds, limits=spec.health.limits)
    return BreakerStep(decide_breakers(inputs, previous, now), signals)


def decide_weights(
    spec: RoutingPolicySpec,
    readings: Sequence[BackendReading],
    weights: Mapping[str, float],
    total: int,
    state: RoutingState,
    revision: str,
    memory: SignalMemory,
    now: float,
    forecast_replicas: Mapping[str, float] | None = None,
) -> RoutingStep:
    """The route's weights from the readings and the live ``weights`` (summing to ``total``).

    ``revision`` identifies the canary rollout (the policy's ``metadata.generation``);
    ``forecast_replicas`` are the replicas forecast-driven scalers decided, by backend.
    """
    signals = judge_readings(spec.backends, readings, memory, None, spec.interval_s, spec.health.rate_window, now)
    inputs = routing_inputs(spec, signals, weights, total, revision, forecast_replicas or {})
    return RoutingStep(decide_routing(inputs, state, now), signals)


def routing_inputs(
    spec: RoutingPolicySpec,
    signals: Sequence[BackendSignals],
    weights: Mapping[str, float],
    total: int,
    revision: str,
    forecast_replicas: Mapping[str, float],
) -> RoutingInputs:
    """The spec's percentages turned into weights of ``total``, with each backend's live weight."""
    capacity = {b.name: b.capacity_per_replica for b in spec.backends}
    canary = spec.canary
    return RoutingInputs(
        backends=tuple(
            RoutedBackend(s, weights.get(s.name, 0.0), capacity[s.name], forecast_replicas.get(s.name)) for s in signals
        ),
        limits=spec.health.limits,
        max_step=spec.max_step_percent * total // 100 or 1,
        probe=spec.probe_percent * total // 100,
        total=total,
        canary=CanarySpec(
            stable=canary.stable,
            canary=canary.canary,
            revision=revision,
            step=canary.step_percent * total // 100 or 1,
            step_interval_s=canary.step_interval_s,
            ttft_margin=canary.ttft_margin,
            tpot_margin=canary.tpot_margin,
            error_rate_margin=canary.error_rate_margin,
            min_requests=canary.min_requests,
            max_weight=max(1, canary.max_weight_percent * total // 100),
        )
        if canary
        else None,
    )
