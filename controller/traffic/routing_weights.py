"""One reconcile cycle of a RoutingPolicy: observe -> decide -> act -> report. No Kopf here.

Observe the VirtualService or HTTPRoute (refused when Flagger or Argo Rollouts manage it) and every
backend's readings; decide the weights (:func:`controller.traffic.decide.decide_weights`, the step the
backtest runs too) from the hysteresis and canary state kept in the status; write the changed
weights in ``Auto`` mode; report. The canary's revision is the policy's ``metadata.generation``:
editing the spec starts a new rollout, and a rollback stays final until then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.actuators.gateway import HTTPRouteActuator
from controller.actuators.istio import VirtualServiceActuator
from controller.actuators.objects import TrafficObject
from controller.actuators.weights import RouteObservation
from controller.observability.decisions import DecisionRecord
from controller.reconcile.cycle import CycleOutcome, Deps, PolicySnapshot, apply_in_auto, target_key
from controller.reconcile.report import Reporter
from controller.traffic.cycle import (
    backend_inputs,
    backend_status,
    observe_backends,
    parse_or_stop,
    wording,
)
from controller.traffic.decide import RoutingStep, decide_weights
from controller.traffic.signals import BackendReading, SignalMemory
from controller.traffic.spec import RoutingPolicySpec, parse_routing_policy
from policies import CanaryState, Reason, RoutingState, health_from_dict, health_to_dict

KIND = "RoutingPolicy"
WORDING = wording(KIND)

_CANARY_ACTIONS = {Reason.CanaryStep: "Step", Reason.CanaryPromoted: "Promote", Reason.CanaryRolledBack: "Rollback"}


async def reconcile_routing(
    policy: PolicySnapshot,
    deps: Deps,
    memory: SignalMemory,
    now: float,
    older_policies: tuple[str, ...] = (),
    forecast_replicas: Mapping[Any, Iterable[float]] | None = None,
) -> CycleOutcome:
    """One cycle; ``older_policies`` are the RoutingPolicies that claimed the same target first;
    ``forecast_replicas`` the replicas forecast-driven ScalingPolicies decided, by workload
    (:func:`controller.reconcile.cycle.target_key`)."""
    report = Reporter(policy, deps, now)
    spec = await parse_or_stop(report, parse_routing_policy, older_policies)
    if isinstance(spec, CycleOutcome):
        return spec

    target = TrafficObject(deps.kube, policy.namespace, spec.target)
    actuator = (
        HTTPRouteActuator(target, {b.name: b.backend_ref for b in spec.backends}, spec.route_name)
        if spec.is_gateway
        else VirtualServiceActuator(target, {b.name: b.subset for b in spec.backends}, spec.route_name)
    )
    seen = await observe_backends(
        report,
        actuator.observe,
        spec,
        memory,
        none_found="no backend is",
        # A canary without its stable backend (or the reverse) cannot be compared: stop.
        needs_every_backend="the canary needs both backends" if spec.canary is not None else None,
    )
    if isinstance(seen, CycleOutcome):
        return seen
    observed, readings = seen.observed, seen.readings

    status_in = policy.status or {}
    state = RoutingState(health_from_dict(status_in.get("health")), CanaryState.from_dict(status_in.get("canary")))
    scaled = _forecast_replicas(policy.namespace, spec, forecast_replicas or {})
    step = decide_weights(
        spec, readings, observed.weights, observed.total, state, str(policy.generation), memory, now, scaled
    )
    decision = step.decision
    weights = dict(decision.weights)
    current = {name: round(w) for name, w in observed.weights.items()}
    changed = weights != current
    applied, apply_error = await apply_in_auto(spec.mode, changed, lambda: actuator.apply(weights, observed))
    record = _record(policy, spec, step, observed, changed, applied, readings, now)
    # A canary step that was not written did not happen: the step interval restarts from the last real one.
    following = step.next_state(state, written=applied or not changed or spec.mode == "Recommend")
    status: dict[str, Any] = {
        "backends": backend_status(decision.verdicts, step.signals),
        "health": health_to_dict(following.health),
        "weights": [{"name": name, "weight": weight} for name, weight in decision.weights],
        "summary": ",".join(f"{name}={weight}" for name, weight in decision.weights),
    }
    if following.canary is not None:
        status["canary"] = following.canary.to_dict()
    return await report.decided(record, observed.live.ref, apply_error, WORDING, seen.conditions(), status)


def _forecast_replicas(
    namespace: str, spec: RoutingPolicySpec, by_workload: Mapping[Any, Iterable[float]]
) -> dict[str, float]:
    """Per backend, the replicas a forecast-driven ScalingPolicy decided for its workload; none
    when no such policy scales it (or, against the one-writer rule, several do)."""
    scaled = {}
    for backend in spec.backends:
        workload = backend.workload
        key = target_key(
            namespace, {"targetRef": {"apiVersion": workload.api_version, "kind": workload.kind, "name": workload.name}}
        )
        decided = list(by_workload.get(key, ()))
        if len(decided) == 1:
            scaled[backend.name] = decided[0]
    return scaled


def _record(
    policy: PolicySnapshot,
    spec: RoutingPolicySpec,
    step: RoutingStep,
    observed: RouteObservation,
    changed: bool,
    applied: bool,
    readings: list[BackendReading],
    now: float,
) -> DecisionRecord:
    """``from``/``to``: the weight of the canary (Canary) or of the first backend (Capacity)."""
    decision = step.decision
    reasons = tuple(str(r) for r in decision.reasons)
    focus = spec.canary.canary if spec.canary else decision.weights[0][0]
    action = "Hold"
    if changed:
        action = _CANARY_ACTIONS.get(decision.reasons[0], "Shift") if spec.canary else "Shift"
    return policy.record(
        spec,
        now,
        action=action,
        from_=round(observed.weights.get(focus, 0.0)),
        to=decision.weight(focus),
        applied=applied,
        reasons=reasons,
        message=decision.message,
        inputs={
            "strategy": spec.strategy,
            "backends": [
                {**entry, "weight": observed.weights.get(entry["name"])}
                for entry in backend_inputs(step.signals, readings)
            ],
        },
        output={
            "backends": [
                {
                    "name": v.name,
                    "failureScore": v.score,
                    "ejected": v.health.flagged,
                    "weight": decision.weight(v.name),
                    "weightRatio": decision.weight(v.name) / observed.total,
                }
                for v in decision.verdicts
            ],
            "weights": dict(decision.weights),
            "target": dict(decision.target),
            "total": observed.total,
        },
    )
