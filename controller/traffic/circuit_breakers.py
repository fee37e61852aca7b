"""One reconcile cycle of a CircuitBreakerPolicy: observe -> decide -> act -> report. No Kopf here.

Observe the DestinationRule (refused when Flagger or Argo Rollouts manage it) and every backend's
readings; decide (:func:`controller.traffic.decide.decide_circuit_breakers`, the step the backtest
runs too) from the hysteresis state kept in ``status.health``; write the changed owned fields in
``Auto`` mode; report. A missing subset is a
condition and an Event, and the backends that exist are still served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from controller.actuators.istio import DestinationRuleActuator
from controller.actuators.objects import TrafficObject
from controller.observability.decisions import DecisionRecord
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, apply_in_auto
from controller.reconcile.report import Reporter
from controller.traffic.cycle import (
    backend_inputs,
    backend_status,
    observe_backends,
    parse_or_stop,
    wording,
)
from controller.traffic.decide import decide_circuit_breakers
from controller.traffic.signals import SignalMemory
from controller.traffic.spec import CircuitBreakerPolicySpec, parse_circuit_breaker_policy
from policies import (
    BackendBreaker,
    BackendHealth,
    BreakerDecision,
    BreakerSettings,
    health_from_dict,
    health_to_dict,
)

KIND = "CircuitBreakerPolicy"
WORDING = wording(KIND)


async def reconcile_circuit_breakers(
    policy: PolicySnapshot, deps: Deps, memory: SignalMemory, now: float, older_policies: tuple[str, ...] = ()
) -> CycleOutcome:
    """One cycle; ``older_policies`` are the CircuitBreakerPolicies that claimed the same target first."""
    report = Reporter(policy, deps, now)
    spec = await parse_or_stop(report, parse_circuit_breaker_policy, older_policies)
    if isinstance(spec, CycleOutcome):
        return spec

    actuator = DestinationRuleActuator(
        TrafficObject(deps.kube, policy.namespace, spec.target), {b.name: b.subset for b in spec.backends}
    )
    seen = await observe_backends(report, actuator.observe, spec, memory, none_found="no backend's subset is")
    if isinstance(seen, CycleOutcome):
        return seen
    observed, readings = seen.observed, seen.readings

    previous = health_from_dict((policy.status or {}).get("health"))
    step = decide_circuit_breakers(spec, readings, observed.settings, previous, memory, now)
    decision = step.decision
    desired = {b.name: b.settings for b in decision.backends}
    changed = any(_differs(observed.settings.get(name, BreakerSettings()), s) for name, s in desired.items())
    applied, apply_error = await apply_in_auto(spec.mode, changed, lambda: actuator.apply(desired, observed))
    record = _record(policy, spec, decision, previous, changed, applied, backend_inputs(step.signals, readings), now)
    verdicts = [b.verdict for b in decision.backends]
    # Health is about the backend, not the object: it moves on even when a write failed.
    status = {
        "backends": backend_status(verdicts, step.signals),
        "health": health_to_dict(step.next_health(previous)),
        "flaggedBackends": sum(1 for v in verdicts if v.health.flagged),
    }
    return await report.decided(record, observed.live.ref, apply_error, WORDING, seen.conditions(), status)


def _differs(live: BreakerSettings, desired: BreakerSettings) -> bool:
    """Whether writing ``desired`` changes anything; its ``None`` parts leave the live ones alone."""
    return (desired.outlier is not None and desired.outlier != live.outlier) or (
        desired.pool is not None and desired.pool != live.pool
    )


def _action(decision: BreakerDecision, previous: Mapping[str, BackendHealth], changed: bool) -> str:
    before = {name for name, h in previous.items() if h.flagged}
    after = {name for name, h in decision.health.items() if h.flagged}
    if after - before:
        return "Tighten"
    if before & set(decision.health) - after:
        return "Relax"
    return "Update" if changed else "Hold"


def _record(
    policy: PolicySnapshot,
    spec: CircuitBreakerPolicySpec,
    decision: BreakerDecision,
    previous: Mapping[str, BackendHealth],
    changed: bool,
    applied: bool,
    inputs: list[dict[str, Any]],
    now: float,
) -> DecisionRecord:
    """``from``/``to`` count the backends at the tight end of the bounds before and after."""
    reasons = tuple(str(r) for r in decision.reasons)
    return policy.record(
        spec,
        now,
        action=_action(decision, previous, changed),
        from_=sum(1 for b in decision.backends if previous.get(b.name, BackendHealth()).flagged),
        to=sum(1 for b in decision.backends if b.verdict.health.flagged),
        applied=applied,
        reasons=reasons,
        message=decision.message,
        inputs={"backends": inputs},
        output={
            "backends": [
                {
                    "name": b.name,
                    "failureScore": b.verdict.score,
                    "ejected": b.verdict.health.flagged,
                    "outlierDetection": _outlier_out(b.settings),
                    "connectionPool": asdict(b.settings.pool) if b.settings.pool else None,
                }
                for b in decision.backends
            ],
            # docs/decision-log.md: one set of values; the most urgent backend's (the message's first).
            "outlierDetection": _outlier_out(_most_urgent(decision).settings),
        },
    )


def _most_urgent(decision: BreakerDecision) -> BackendBreaker:
    flagged = [b for b in decision.backends if b.verdict.health.flagged]
    return (flagged or list(decision.backends))[0]


def _outlier_out(settings: BreakerSettings) -> dict[str, int] | None:
    """The Istio field names, durations in seconds."""
    outlier = settings.outlier
    if outlier is None:
        return None
    return {
        "consecutive5xxErrors": outlier.consecutive_5xx_errors,
        "consecutiveGatewayErrors": outlier.consecutive_gateway_errors,
        "intervalSeconds": outlier.interval_s,
        "baseEjectionTimeSeconds": outlier.base_ejection_time_s,
        "maxEjectionPercent": outlier.max_ejection_percent,
        "minHealthPercent": outlier.min_health_percent,
    }
