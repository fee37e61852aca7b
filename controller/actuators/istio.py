"""Istio ``networking.istio.io/v1``: DestinationRule traffic policies and VirtualService route weights.

Owned fields, and nothing else:

* DestinationRule, per backend (``spec.subsets[i].trafficPolicy``, or ``spec.trafficPolicy`` for a
  backend without a subset): ``outlierDetection.{consecutive5xxErrors, consecutiveGatewayErrors,
  interval, baseEjectionTime, maxEjectionPercent, minHealthPercent}`` and
  ``connectionPool.http.{http2MaxRequests, http1MaxPendingRequests, maxRetries}``;
* VirtualService: ``spec.http[i].route[j].weight`` of the destinations whose subset is a backend's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.actuators.objects import LiveObject, TrafficObject
from controller.actuators.patching import Path
from controller.actuators.weights import RouteObservation, pick_route, write_weights
from controller.errors import TargetError
from policies import BreakerSettings, ConnectionPool, OutlierDetection

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(value: Any) -> int | None:
    """Whole seconds of an Istio duration (``30s``, ``1m``, ``500ms``); ``None`` when unparsable."""
    match = _DURATION.match(str(value)) if value is not None else None
    if not match:
        return None
    return round(float(match.group(1)) * _UNIT_S[match.group(2)])


def _outlier_fields(outlier: OutlierDetection) -> dict[str, Any]:
    return {
        "consecutive5xxErrors": outlier.consecutive_5xx_errors,
        "consecutiveGatewayErrors": outlier.consecutive_gateway_errors,
        "interval": f"{outlier.interval_s}s",
        "baseEjectionTime": f"{outlier.base_ejection_time_s}s",
        "maxEjectionPercent": outlier.max_ejection_percent,
        "minHealthPercent": outlier.min_health_percent,
    }


def _pool_fields(pool: ConnectionPool) -> dict[str, Any]:
    return {
        "http2MaxRequests": pool.http2_max_requests,
        "http1MaxPendingRequests": pool.http1_max_pending_requests,
        "maxRetries": pool.max_retries,
    }


def _live_settings(policy: Mapping[str, Any]) -> BreakerSettings:
    """The owned fields as they are; a part with any field missing or unreadable counts as unset."""
    outlier_raw = policy.get("outlierDetection") or {}
    http = (policy.get("connectionPool") or {}).get("http") or {}
    outlier: OutlierDetection | None = None
    try:
        interval, ejection = (
            parse_duration_s(outlier_raw.get("interval")),
            parse_duration_s(outlier_raw.get("baseEjectionTime")),
        )
        if interval is not None and ejection is not None:
            outlier = OutlierDetection(
                int(outlier_raw["consecutive5xxErrors"]),
                int(outlier_raw["consecutiveGatewayErrors"]),
                interval,
                ejection,
                int(outlier_raw["maxEjectionPercent"]),
                int(outlier_raw["minHealthPercent"]),
            )
    except (KeyError, TypeError, ValueError):
        outlier = None
    try:
        pool: ConnectionPool | None = ConnectionPool(
            int(http["http2MaxRequests"]), int(http["http1MaxPendingRequests"]), int(http["maxRetries"])
        )
    except (KeyError, TypeError, ValueError):
        pool = None
    return BreakerSettings(outlier, pool)


@dataclass(frozen=True)
class DestinationRuleObservation:
    live: LiveObject
    settings: Mapping[str, BreakerSettings]  # per backend found
    paths: Mapping[str, Path]  # per backend found: where its trafficPolicy lives
    guards: Mapping[Path, Any]


@dataclass
class DestinationRuleActuator:
    """``subsets``: per backend name, the subset whose traffic policy it owns (``None``: the top-level one)."""

    target: TrafficObject
    subsets: Mapping[str, str | None]

    async def observe(self) -> DestinationRuleObservation:
        ref, body = await self.target.read()
        spec = body.get("spec") or {}
        subsets = [str(s.get("name")) for s in spec.get("subsets") or []]
        paths: dict[str, Path] = {}
        guards: dict[Path, Any] = {}
        missing = []
        for backend, subset in self.subsets.items():
            if subset is None:
                paths[backend] = ("spec", "trafficPolicy")
            elif subset in subsets:
                index = subsets.index(subset)
                paths[backend] = ("spec", "subsets", index, "trafficPolicy")
                guards[("spec", "subsets", index, "name")] = subset
            else:
                missing.append(backend)
        settings = {name: _live_settings(_at(body, path)) for name, path in paths.items()}
        return DestinationRuleObservation(LiveObject(ref, body, tuple(missing)), settings, paths, guards)

    async def apply(self, desired: Mapping[str, BreakerSettings], observed: DestinationRuleObservation) -> bool:
        changes: dict[Path, Any] = {}
        for name, settings in desired.items():
            base = observed.paths.get(name)
            if base is None:
                continue
            if settings.outlier is not None:
                for key, value in _outlier_fields(settings.outlier).items():
                    changes[(*base, "outlierDetection", key)] = value
            if settings.pool is not None:
                for key, value in _pool_fields(settings.pool).items():
                    changes[(*base, "connectionPool", "http", key)] = value
        return await self.target.write(observed.live.body, changes, dict(observed.guards))


def _at(body: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    node: Any = body
    for step in path:
        node = node[step] if isinstance(step, int) else (node or {}).get(step)
    return node or {}


VS_TOTAL = 100


@dataclass
class VirtualServiceActuator:
    """``subsets``: per backend name, the subset of its destination in the route named ``route_name`` (or the first)."""

    target: TrafficObject
    subsets: Mapping[str, str | None]
    route_name: str | None

    async def observe(self) -> RouteObservation:
        ref, body = await self.target.read()
        routes = (body.get("spec") or {}).get("http") or []
        index = pick_route(routes, self.route_name, self.target.target.describe())
        destinations = routes[index].get("route") or []
        subsets = [str((d.get("destination") or {}).get("subset", "")) for d in destinations]
        weights: dict[str, float] = {}
        paths: dict[str, Path] = {}
        guards: dict[Path, Any] = {}
        missing = []
        ours = set()
        for backend, subset in self.subsets.items():
            if subset is None or subset not in subsets:
                missing.append(backend)
                continue
            j = subsets.index(subset)
            ours.add(j)
            # A lone destination without a weight takes all of the traffic.
            weights[backend] = float(destinations[j].get("weight", VS_TOTAL if len(destinations) == 1 else 0))
            paths[backend] = ("spec", "http", index, "route", j, "weight")
            guards[("spec", "http", index, "route", j, "destination", "subset")] = subset
        foreign = sum(int(d.get("weight") or 0) for j, d in enumerate(destinations) if j not in ours)
        if foreign >= VS_TOTAL and weights:
            raise TargetError("NoWeightLeft", f"destinations infercast does not manage already carry {foreign}%")
        live = LiveObject(ref, body, tuple(missing))
        return RouteObservation(live, weights, VS_TOTAL - foreign, paths, guards)

    async def apply(self, desired: Mapping[str, int], observed: RouteObservation) -> bool:
        return await write_weights(self.target, desired, observed)
