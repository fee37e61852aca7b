"""Parse CircuitBreakerPolicy and RoutingPolicy specs into frozen, validated values.

As for ScalingPolicy (:mod:`controller.scaling.spec`), the CRD schema rejects wrong types and ranges at
admission; what is checked here is what OpenAPI cannot say (rules across fields, which the CRD
states as CEL rules the API server may not evaluate everywhere) and objects stored before a
schema change. Every refusal is a :class:`SpecError` with a stable reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controller.clients.refs import BackendRef, PrometheusSpec, TargetRef
from controller.errors import SpecError
from controller.reconcile.spec import (
    Mode,
    guarded_parse,
    parse_interval,
    parse_mode,
    parse_named_list,
    parse_prometheus,
    parse_target_ref,
)
from policies import BreakerBounds, HealthLimits, Tightening

Strategy = Literal["Capacity", "Canary"]

ISTIO_API_VERSION = "networking.istio.io/v1"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


@dataclass(frozen=True)
class BackendSpec:
    name: str
    workload: TargetRef
    model_name: str | None = None
    subset: str | None = None
    backend_ref: BackendRef | None = None
    requests_per_replica: float | None = None
    capacity_per_replica: float = 1.0


_SECONDS = {"s": 1, "m": 60, "h": 3600}


def window_seconds(window: str) -> int:
    """A rate window in seconds; the CRD allows one number and a unit (``30s``, ``1m``, ``2h``)."""
    return int(window[:-1]) * _SECONDS[window[-1]]


#: The spec's default ``health.maxErrorRate``.
DEFAULT_MAX_ERROR_RATE = 0.05


@dataclass(frozen=True)
class HealthSpec:
    limits: HealthLimits
    rate_window: str = "1m"

    @property
    def error_limit(self) -> float:
        """The least 5xx share that counts against a backend or a pod (``maxErrorRate``, else its default)."""
        limit = self.limits.max_error_rate
        return DEFAULT_MAX_ERROR_RATE if limit is None else limit


@dataclass(frozen=True)
class CapacitySpec:
    quantile: float = 0.9
    horizon_s: int = 300


@dataclass(frozen=True)
class CircuitBreakerPolicySpec:
    target: TargetRef
    mode: Mode
    interval_s: int
    prometheus: PrometheusSpec
    backends: tuple[BackendSpec, ...]
    health: HealthSpec
    capacity: CapacitySpec
    bounds: BreakerBounds


@dataclass(frozen=True)
class CanaryConfig:
    stable: str
    canary: str
    step_percent: int = 10
    step_interval_s: int = 60
    ttft_margin: float = 0.2
    tpot_margin: float = 0.2
    error_rate_margin: float = 0.01
    min_requests: int = 100
    max_weight_percent: int = 100


@dataclass(frozen=True)
class RoutingPolicySpec:
    target: TargetRef
    route_name: str | None
    mode: Mode
    interval_s: int
    prometheus: PrometheusSpec
    strategy: Strategy
    backends: tuple[BackendSpec, ...]
    health: HealthSpec
    max_step_percent: int
    probe_percent: int
    canary: CanaryConfig | None

    @property
    def is_gateway(self) -> bool:
        return self.target.kind == "HTTPRoute"


def parse_circuit_breaker_policy(spec: Mapping[str, Any]) -> CircuitBreakerPolicySpec:
    return guarded_parse(_parse_circuit_breaker, spec)


def parse_routing_policy(spec: Mapping[str, Any]) -> RoutingPolicySpec:
    return guarded_parse(_parse_routing, spec)


def _target(spec: Mapping[str, Any], allowed: Mapping[str, str]) -> TargetRef:
    target = parse_target_ref(spec.get("targetRef"))
    if allowed.get(target.kind) != target.api_version:
        kinds = ", ".join(f"{api} {kind}" for kind, api in allowed.items())
        raise SpecError("InvalidTargetRef", f"targetRef must be one of {kinds}, got {target.api_version} {target.kind}")
    return target


def _parse_circuit_breaker(spec: Mapping[str, Any]) -> CircuitBreakerPolicySpec:
    target = _target(spec, {"DestinationRule": ISTIO_API_VERSION})
    backends = _parse_backends(spec)
    for backend in backends:
        if backend.requests_per_replica is None or backend.requests_per_replica <= 0:
            raise SpecError("InvalidBackend", f"backend {backend.name!r}: requestsPerReplica must be > 0")
    subsets = [b.subset for b in backends]
    if len(set(subsets)) != len(subsets):
        raise SpecError("InvalidBackend", "two backends name the same subset (or both the top-level trafficPolicy)")
    capacity = spec.get("capacity") or {}
    return CircuitBreakerPolicySpec(
        target=target,
        mode=parse_mode(spec),
        interval_s=parse_interval(spec),
        prometheus=parse_prometheus(spec.get("prometheus")),
        backends=backends,
        health=_parse_health(spec.get("health") or {}),
        capacity=CapacitySpec(
            quantile=float(capacity.get("quantile", 0.9)), horizon_s=int(capacity.get("horizonSeconds", 300))
        ),
        bounds=_parse_bounds(spec.get("outlierDetection") or {}, spec.get("connectionPool") or {}),
    )


def _parse_routing(spec: Mapping[str, Any]) -> RoutingPolicySpec:
    target = _target(spec, {"VirtualService": ISTIO_API_VERSION, "HTTPRoute": GATEWAY_API_VERSION})
    backends = _parse_backends(spec)
    field = "backendRef" if target.kind == "HTTPRoute" else "subset"
    lacking = [b.name for b in backends if (b.backend_ref if field == "backendRef" else b.subset) is None]
    if lacking:
        raise SpecError("InvalidBackend", f"a {target.kind} target needs {field} on every backend: {lacking}")
    strategy = str(spec.get("strategy", "Capacity"))
    if strategy not in ("Capacity", "Canary"):
        raise SpecError("InvalidStrategy", f"strategy {strategy!r} is not Capacity or Canary")
    canary = _parse_canary(spec.get("canary") or {}, backends) if strategy == "Canary" else None
    return RoutingPolicySpec(
        target=target,
        route_name=str(spec["routeName"]) if spec.get("routeName") else None,
        mode=parse_mode(spec),
        interval_s=parse_interval(spec),
        prometheus=parse_prometheus(spec.get("prometheus")),
        strategy=strategy,  # type: ignore[arg-type]  # checked above
        backends=backends,
        health=_parse_health(spec.get("health") or {}),
        max_step_percent=int(spec.get("maxStepPercent", 20)),
        probe_percent=int(spec.get("probePercent", 5)),
        canary=canary,
    )


def _parse_backends(spec: Mapping[str, Any]) -> tuple[BackendSpec, ...]:
    return parse_named_list(
        spec.get("backends"),
        _parse_backend,
        what="backend",
        empty_reason="NoBackends",
        duplicate_reason="InvalidBackend",
    )


def _parse_backend(raw: Mapping[str, Any]) -> BackendSpec:
    name = str(raw.get("name") or "")
    if not name:
        raise SpecError("InvalidBackend", "every backend needs a name")
    ref = raw.get("backendRef")
    rpr = raw.get("requestsPerReplica")
    return BackendSpec(
        name=name,
        workload=parse_target_ref(raw.get("workloadRef"), field=f"backend {name!r}: workloadRef"),
        model_name=str(raw["modelName"]) if raw.get("modelName") else None,
        subset=str(raw["subset"]) if raw.get("subset") else None,
        backend_ref=BackendRef(
            name=str(ref["name"]), group=str(ref.get("group", "")), kind=str(ref.get("kind", "Service"))
        )
        if ref
        else None,
        requests_per_replica=float(rpr) if rpr is not None else None,
        capacity_per_replica=float(raw.get("capacityPerReplica", 1.0)),
    )


def _optional(raw: Mapping[str, Any], key: str) -> float | None:
    return float(raw[key]) if raw.get(key) is not None else None


def _parse_health(raw: Mapping[str, Any]) -> HealthSpec:
    try:
        limits = HealthLimits(
            max_error_rate=_optional({"maxErrorRate": DEFAULT_MAX_ERROR_RATE, **raw}, "maxErrorRate"),
            max_latency_ms=_optional(raw, "maxLatencyMs"),
            max_ttft_s=_optional(raw, "maxTTFTSeconds"),
            max_tpot_s=_optional(raw, "maxTPOTSeconds"),
            max_saturation=_optional(raw, "maxKVCacheUsage"),
            upper=float(raw.get("upperScore", 0.5)),
            lower=float(raw.get("lowerScore", 0.2)),
            hold_s=float(raw.get("recoveryHoldSeconds", 120)),
        )
    except ValueError as exc:
        raise SpecError("InvalidHealth", f"invalid health: {exc}") from exc
    window = str(raw.get("rateWindow", "1m"))
    if not re.fullmatch(r"[1-9][0-9]{0,3}[smh]", window):
        raise SpecError("InvalidHealth", f"health.rateWindow {window!r} is not a number of s, m or h (e.g. 1m)")
    return HealthSpec(limits=limits, rate_window=window)


def _tightening(raw: Mapping[str, Any], key: str, default: Tightening) -> Tightening:
    given = raw.get(key) or {}
    return Tightening(int(given.get("tight", default.tight)), int(given.get("relaxed", default.relaxed)))


def _parse_bounds(outlier: Mapping[str, Any], pool: Mapping[str, Any]) -> BreakerBounds:
    default = BreakerBounds()
    health = outlier.get("minHealthPercent") or {}
    low = int(health.get("min", default.min_health_percent.low))
    high = int(health.get("max", default.min_health_percent.high))
    if low > high:
        raise SpecError("InvalidBounds", f"outlierDetection.minHealthPercent: min {low} exceeds max {high}")
    try:
        return BreakerBounds(
            consecutive_5xx_errors=_tightening(outlier, "consecutive5xxErrors", default.consecutive_5xx_errors),
            consecutive_gateway_errors=_tightening(
                outlier, "consecutiveGatewayErrors", default.consecutive_gateway_errors
            ),
            interval_s=_tightening(outlier, "intervalSeconds", default.interval_s),
            base_ejection_time_s=_tightening(outlier, "baseEjectionTimeSeconds", default.base_ejection_time_s),
            max_ejection_percent=_tightening(outlier, "maxEjectionPercent", default.max_ejection_percent),
            min_health_percent=Tightening(low, high),
            max_retries=_tightening(pool, "maxRetries", default.max_retries),
            target_in_flight_per_replica=int(
                pool.get("targetInFlightPerReplica", default.target_in_flight_per_replica)
            ),
            pending_per_replica=int(pool.get("pendingPerReplica", default.pending_per_replica)),
            client_proxies=int(pool.get("clientProxies", default.client_proxies)),
        )
    except ValueError as exc:
        raise SpecError("InvalidBounds", f"invalid bounds: {exc}") from exc


def _parse_canary(raw: Mapping[str, Any], backends: tuple[BackendSpec, ...]) -> CanaryConfig:
    stable, canary = str(raw.get("stable") or ""), str(raw.get("canary") or "")
    names = {b.name for b in backends}
    if not stable or not canary or stable == canary or {stable, canary} != names:
        raise SpecError(
            "InvalidCanary",
            f"strategy Canary needs canary.stable and canary.canary naming the two backends {sorted(names)}",
        )
    margins = raw.get("margins") or {}
    return CanaryConfig(
        stable=stable,
        canary=canary,
        step_percent=int(raw.get("stepPercent", 10)),
        step_interval_s=int(raw.get("stepIntervalSeconds", 60)),
        ttft_margin=float(margins.get("ttft", 0.2)),
        tpot_margin=float(margins.get("tpot", 0.2)),
        error_rate_margin=float(margins.get("errorRate", 0.01)),
        min_requests=int(raw.get("minRequests", 100)),
        max_weight_percent=int(raw.get("maxWeightPercent", 100)),
    )
