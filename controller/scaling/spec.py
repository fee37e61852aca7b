"""Parse a ScalingPolicy's ``spec`` into frozen, validated values.

The CRD's OpenAPI schema already rejects wrong types and out-of-range numbers at admission.
What it cannot see is checked here: rules that span fields (``minReplicas <= maxReplicas``),
references to things only the operator knows (preset names, the labels a preset supports), and
objects written before a schema change. A :class:`SpecError` carries a stable ``reason`` that
ends up in the ``Ready`` condition and in an Event, so a person sees why a policy is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.clients.refs import PrometheusSpec, TargetRef
from controller.clients.servers import MetricSource
from controller.errors import SpecError
from controller.reconcile.spec import (
    Mode,
    guarded_parse,
    parse_interval,
    parse_metric_source,
    parse_mode,
    parse_named_list,
    parse_prometheus,
    parse_target_ref,
)
from controller.scaling.forecast_spec import ForecastSpec, parse_forecast
from policies import Behavior, ScalingPolicyRule, ScalingRules

TargetType = Literal["AverageValue", "Value"]
OnMetricsUnavailable = Literal["Hold", "Fallback"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    target_type: TargetType
    target: float
    source: MetricSource


@dataclass(frozen=True)
class FallbackSpec:
    replicas: int | None = None
    on_metrics_unavailable: OnMetricsUnavailable = "Hold"


@dataclass(frozen=True)
class ScalingPolicySpec:
    target: TargetRef
    min_replicas: int
    max_replicas: int
    mode: Mode
    interval_s: int
    prometheus: PrometheusSpec
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior = field(default_factory=Behavior)
    fallback: FallbackSpec = field(default_factory=FallbackSpec)
    forecast: ForecastSpec | None = None
    """``spec.forecast``: the predictive policy's settings; ``None`` keeps the reactive policy."""


def parse_scaling_policy(spec: Mapping[str, Any]) -> ScalingPolicySpec:
    """Turn a raw spec (as stored in the cluster) into a :class:`ScalingPolicySpec`, or raise."""
    return guarded_parse(_parse, spec)


def _parse(spec: Mapping[str, Any]) -> ScalingPolicySpec:
    target = parse_target_ref(spec.get("targetRef"))

    min_replicas = int(spec.get("minReplicas", 1))
    max_replicas = int(spec["maxReplicas"]) if "maxReplicas" in spec else 0
    if max_replicas < 1:
        raise SpecError("InvalidReplicaBounds", "maxReplicas must be set and at least 1")
    # No scale-to-zero: the policies need a replica to measure the load per replica on.
    if min_replicas < 1 or min_replicas > max_replicas:
        raise SpecError(
            "InvalidReplicaBounds", f"minReplicas ({min_replicas}) must be within 1..maxReplicas ({max_replicas})"
        )

    mode = parse_mode(spec)
    interval = parse_interval(spec)

    metrics = parse_named_list(
        spec.get("metrics"), _parse_metric, what="metric", empty_reason="NoMetrics", duplicate_reason="DuplicateMetric"
    )

    fallback = _parse_fallback(spec.get("fallback") or {})
    if fallback.replicas is not None and not min_replicas <= fallback.replicas <= max_replicas:
        raise SpecError("InvalidFallback", "fallback.replicas must lie within [minReplicas, maxReplicas]")

    return ScalingPolicySpec(
        target=target,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        mode=mode,
        interval_s=interval,
        prometheus=parse_prometheus(spec.get("prometheus")),
        metrics=metrics,
        behavior=_parse_behavior(spec.get("behavior") or {}),
        fallback=fallback,
        forecast=parse_forecast(spec.get("forecast")),
    )


def _parse_metric(raw: Mapping[str, Any]) -> MetricSpec:
    name = str(raw.get("name") or "")
    if not name:
        raise SpecError("InvalidMetric", "every metric needs a name")
    source = parse_metric_source(raw, f"metric {name!r}", "InvalidMetric", required=True)
    target = raw.get("target") or {}
    target_type = str(target.get("type", ""))
    if target_type not in ("AverageValue", "Value"):
        raise SpecError("InvalidMetric", f"metric {name!r}: target.type must be AverageValue or Value")
    value = float(target["value"])
    if not value > 0:
        raise SpecError("InvalidMetric", f"metric {name!r}: target.value must be > 0")
    return MetricSpec(
        name=name,
        target_type=target_type,  # type: ignore[arg-type]  # checked above
        target=value,
        source=source,
    )


def _parse_rules(raw: Mapping[str, Any], default: ScalingRules) -> ScalingRules:
    if not raw:
        return default
    try:
        policies_raw = raw.get("policies")
        policies = (
            default.policies
            if policies_raw is None
            else tuple(
                ScalingPolicyRule(type=str(p["type"]), value=int(p["value"]), period_seconds=int(p["periodSeconds"]))  # type: ignore[arg-type]  # checked by ScalingPolicyRule
                for p in policies_raw
            )
        )
        return ScalingRules(
            stabilization_window_seconds=int(
                raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
            ),
            select_policy=str(raw.get("selectPolicy", default.select_policy)),  # type: ignore[arg-type]  # checked by ScalingRules
            policies=policies,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError("InvalidBehavior", f"invalid behavior: {exc}") from exc


def _parse_behavior(raw: Mapping[str, Any]) -> Behavior:
    default = Behavior()
    return Behavior(
        scale_up=_parse_rules(raw.get("scaleUp") or {}, default.scale_up),
        scale_down=_parse_rules(raw.get("scaleDown") or {}, default.scale_down),
    )


def _parse_fallback(raw: Mapping[str, Any]) -> FallbackSpec:
    on_unavailable = str(raw.get("onMetricsUnavailable", "Hold"))
    if on_unavailable not in ("Hold", "Fallback"):
        raise SpecError("InvalidFallback", f"onMetricsUnavailable {on_unavailable!r} is not Hold or Fallback")
    replicas = raw.get("replicas")
    if on_unavailable == "Fallback" and replicas is None:
        raise SpecError("InvalidFallback", "onMetricsUnavailable: Fallback needs fallback.replicas")
    return FallbackSpec(
        replicas=None if replicas is None else int(replicas),
        on_metrics_unavailable=on_unavailable,  # type: ignore[arg-type]  # checked above
    )
