"""``infercast explain NAMESPACE/POLICY``: what a policy saw, predicted and decided, and why, for a person.

Two sources, one format: the policy's ``status`` (its conditions and ``lastDecision``, read from
the API) and, optionally, the operator's log, whose decision lines (docs/decision-log.md) give
the history that the status cannot keep. The formatting is a pure function of those two
(:func:`explain`), so it is tested on records; only :func:`read_status` talks to the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.clients.kube import Kube
from controller.clients.refs import API_VERSION


@dataclass(frozen=True)
class PolicyKind:
    kind: str
    short: str


KINDS = {
    k.short: k
    for k in (
        PolicyKind("ScalingPolicy", "sp"),
        PolicyKind("CircuitBreakerPolicy", "cbp"),
        PolicyKind("RoutingPolicy", "rp"),
    )
}


def decision_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Every decision record among any log lines, in log order.

    An operator log mixes Kopf's lines with the decisions and, when it comes through
    ``kubectl logs``, perhaps a prefix per line: anything that is not a JSON decision object is
    skipped.
    """
    found = []
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "decision":
            found.append(record)
    return found


def decision_lines(lines: Iterable[str], kind: str, policy: str) -> list[dict[str, Any]]:
    """The decision records of one policy (``NAMESPACE/NAME``) of ``kind`` among any log lines."""
    return [r for r in decision_records(lines) if r.get("kind") == kind and r.get("policy") == policy]


async def read_status(kube: Kube, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """The policy object from the API (raises :class:`~controller.clients.kube.KubeError`, 404 if absent)."""
    resource = await kube.resource(API_VERSION, kind)
    return await kube.get(resource, namespace, name)


def explain(
    kind: str,
    namespace: str,
    name: str,
    obj: Mapping[str, Any] | None,
    decisions: Sequence[Mapping[str, Any]],
    limit: int,
) -> str:
    """The report: the policy's state from ``obj`` (None when not read), then a decision timeline.

    The timeline is the last ``limit`` of ``decisions`` (log records), or the status'
    ``lastDecision`` when no log was given.
    """
    status: Mapping[str, Any] = (obj or {}).get("status") or {}
    spec: Mapping[str, Any] = (obj or {}).get("spec") or {}
    out = [_heading(kind, namespace, name, spec)]
    if obj is not None:
        out += _state(status)
    timeline = list(decisions[-limit:]) if decisions else []
    if timeline:
        shown = f"{len(timeline)} of {len(decisions)}" if len(decisions) > len(timeline) else f"{len(timeline)}"
        out.append(f"\nDecisions from the log (oldest first, {shown}):")
    elif status.get("lastDecision"):
        timeline = [status["lastDecision"]]
        out.append("\nLast decision (from status; pass --log for the history):")
    else:
        out.append("\nNo decision yet.")
    for record in timeline:
        out += _decision(record)
    return "\n".join(out) + "\n"


def _heading(kind: str, namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    ref = spec.get("targetRef") or {}
    target = f" -> {ref.get('kind')}/{ref.get('name')}" if ref.get("name") else ""
    mode = f" (mode {spec['mode']})" if spec.get("mode") else ""
    return f"{kind} {namespace}/{name}{target}{mode}"


def _state(status: Mapping[str, Any]) -> list[str]:
    if not status:
        return ["  no status yet: the operator has not reconciled this policy"]
    lines = [
        f"  {c.get('type')}={c.get('status')} ({c.get('reason')}): {c.get('message', '')}"
        for c in status.get("conditions") or ()
    ]
    counts = [
        f"{label} {status[field]}"
        for field, label in (("currentReplicas", "current"), ("readyReplicas", "ready"), ("desiredReplicas", "desired"))
        if field in status
    ]
    if counts:
        lines.append(f"  replicas: {', '.join(counts)}")
    return lines + [f"  {line}" for line in learned_lines(status)]


def learned_lines(status: Mapping[str, Any]) -> list[str]:
    """What a predictive policy learned and forecast, from ``status.leadTime``, ``capacity``, ``forecast``.

    One line each, for ``infercast explain`` and the demo's summary alike.
    """
    lines = []
    lead = status.get("leadTime")
    if isinstance(lead, Mapping):
        samples = ", ".join(f"{_num(s)}s" for s in lead.get("samples") or ())
        seen = f"; start-ups seen: {samples}" if samples else ""
        lines.append(f"lead time: {_num(lead.get('seconds'))}s ({lead.get('source', '?')}{seen})")
        if lead.get("supply") == "Short":
            lines.append(
                f"GPU nodes short: {lead.get('pendingReplicas', 0)} pending, "
                f"{_num(lead.get('schedulingDelaySeconds'))}s wait for a node in the lead time"
            )
    capacity = status.get("capacity")
    if isinstance(capacity, Mapping):
        per = capacity.get("perReplica")
        value = "unknown" if per is None else f"{_num(per)} {capacity.get('unit', '')} per replica"
        binding = f", {capacity['binding']} binds" if capacity.get("binding") else ""
        parts = [
            f"{r.get('resource')} "
            + ("not measured yet" if r.get("perReplica") is None else f"{_num(r['perReplica'])} {r.get('unit', '')}")
            + f" ({r.get('source')}, confidence {_num(r.get('confidence'))})"
            for r in capacity.get("resources") or ()
            if isinstance(r, Mapping)
        ]
        resources = f"; {'; '.join(parts)}" if parts else ""
        lines.append(f"capacity: {value} ({capacity.get('source', 'not learned yet')}{binding}{resources})")
    slo = status.get("slo")
    if isinstance(slo, Mapping):
        lines.append(
            f"SLO attainment: {_num(slo.get('realized'))} over the last {_num(slo.get('windowMinutes'))} minutes "
            f"for a target of {_num(slo.get('target'))}; headroom {_num(slo.get('headroom'))}"
            f"{'' if slo.get('adaptive', True) else ' (fixed: spec.forecast.quantile is set)'}"
        )
    forecast = status.get("forecast")
    if isinstance(forecast, Mapping):
        text = f"q{_num(forecast.get('quantile'))} peak {_num(forecast.get('peak'))}"
        text += f" over the next {_num(forecast.get('windowSeconds'))}s"
        text += f", issued {forecast['issuedAt']}" if forecast.get("issuedAt") else ", none issued yet"
        state = "fresh" if forecast.get("fresh") else "not fresh"
        text += f" ({state}{', refitting' if forecast.get('refitting') else ''}, model {forecast.get('model', '?')})"
        accuracy = forecast.get("accuracy") or {}
        if accuracy.get("errorRatio") is not None:
            text += f"; recent error {accuracy['errorRatio']:.0%} over {accuracy.get('windows', 0)} windows"
            text += f", coverage {_num(accuracy.get('coverage'))}"
        lines.append(f"forecast: {text}")
        if forecast.get("error"):
            lines.append(f"forecast error: {forecast['error']}")
    return lines


def _num(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float) and not value.is_integer():
        # Loads in tokens/s run to thousands: whole units there, three significant digits below.
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _decision(record: Mapping[str, Any]) -> list[str]:
    inputs: Mapping[str, Any] = record.get("inputs") or {}
    output: Mapping[str, Any] = record.get("output") or {}
    reasons = list(record.get("reasons") or ())
    applied = "applied" if record.get("applied") else "not applied"
    change = f"{record.get('from', '?')} -> {record.get('to', '?')}"
    lines = [
        f"{record.get('time', '?')}  {record.get('action', '?'):<10} {change}  {applied}"
        f"  [{record.get('reason', '?')}]  id {record.get('id', '?')}"
    ]
    path = output.get("path") or record.get("path")  # a log line has it in its output, status.lastDecision at the top
    if path:
        lines.append(f"    path:     {path} ({_PATHS.get(path, 'set the count')})")
    seen = _inputs(inputs)
    if seen:
        lines.append(f"    inputs:   {seen}")
    forecast = inputs.get("forecast")
    if forecast:
        lines.append(f"    forecast: {_forecast(forecast)}")
    weights = output.get("weights")
    weights = weights if isinstance(weights, Mapping) else {}
    for backend in inputs.get("backends") or ():
        if isinstance(backend, Mapping):
            lines.append(f"    backend:  {_backend(backend, weights.get(backend.get('name')))}")
    limit = _limit(reasons, output, record.get("to"))
    if limit:
        lines.append(f"    limited:  {limit}")
    if len(reasons) > 1:
        lines.append(f"    rules:    {' -> '.join(reasons)}")
    lines.append(f"    why:      {record.get('message', '')}")
    return lines


def _inputs(inputs: Mapping[str, Any]) -> str:
    parts = []
    for metric in inputs.get("metrics") or ():
        per = " per replica" if metric.get("type") == "AverageValue" else ""
        missing = f" ({metric['error']})" if metric.get("error") else ""
        parts.append(
            f"{metric.get('name')} {_num(metric.get('value'))}{missing} vs target {_num(metric.get('target'))}{per}"
        )
    if "readyReplicas" in inputs:
        parts.append(
            f"ready {inputs['readyReplicas']} of {inputs.get('specReplicas', '?')},"
            f" bounds {inputs.get('minReplicas', '?')}..{inputs.get('maxReplicas', '?')}"
        )
    return "; ".join(parts)


_PATHS = {
    "forecast": "the forecast's quantile over the lead time set the count",
    "reactive": "the load of now, or the reactive policy while the capacity is unknown, set the count",
    "hold": "held: no forecast to follow, or a scale-down held back",
    "limit": "a rate limit or bound changed what the paths asked for",
}


def _forecast(forecast: Mapping[str, Any]) -> str:
    """The predictive record's ``inputs.forecast`` (docs/decision-log.md) in one line."""
    level = f"q{_num(forecast.get('quantileLevel'))}"
    if "quantile" in forecast:
        text = f"{level} {_num(forecast['quantile'])} over the lead time"
        text += f" (issued {forecast['issuedAt']})" if forecast.get("issuedAt") else ""
    else:
        text = f"{level} none to follow"
    text += f"; lead time {_num(forecast.get('leadTimeSeconds'))}s"
    capacity = forecast.get("capacityPerReplica")
    binding = f" ({forecast['capacityBinding']} binds)" if forecast.get("capacityBinding") else ""
    text += "; capacity unknown" if capacity is None else f"; capacity {_num(capacity)} per replica{binding}"
    if "headroom" in forecast:
        text += f"; headroom {_num(forecast['headroom'])}"
    if forecast.get("sloAttainment") is not None:
        text += (
            f"; SLO attainment {_num(forecast['sloAttainment'])} (target {_num(forecast.get('sloAttainmentTarget'))})"
        )
    text += f"; observed load {_num(forecast.get('observedLoad'))}"
    if forecast.get("error"):
        text += f" ({forecast['error']}: {forecast.get('detail', '')})"
    details = [f"model {forecast['model']}"] if forecast.get("model") else []
    if forecast.get("recentErrorRatio") is not None:
        details.append(f"recent error {forecast['recentErrorRatio']:.0%}")
    details += [f"latency {_num(forecast['latencySeconds'])}s"] if "latencySeconds" in forecast else []
    details += [f"queue {_num(forecast['queue'])}"] if "queue" in forecast else []
    return text + (f" ({', '.join(details)})" if details else "")


def _backend(backend: Mapping[str, Any], weight: Any) -> str:
    parts = [str(backend.get("name")), f"failure score {_num(backend.get('failureScore'))}"]
    parts += [f"error rate {_num(backend['errorRate'])}"] if backend.get("errorRate") is not None else []
    if backend.get("weight") is not None or weight is not None:
        parts.append(f"weight {_num(backend.get('weight'))} -> {_num(weight)}")
    return ", ".join(parts)


def _limit(reasons: Sequence[str], output: Mapping[str, Any], to: Any) -> str:
    """The rule that stood between what the metrics asked for and what was decided, if any."""
    recommended = output.get("recommendedReplicas")
    if recommended is None or recommended == to or not reasons:
        return ""
    asked = "the forecast and reactive paths" if "path" in output else "the metrics"
    return f"{reasons[-1]} ({asked} asked for {recommended}, decided {to})"
