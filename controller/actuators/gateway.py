"""Gateway API ``gateway.networking.k8s.io/v1`` HTTPRoute: the weights of one rule's backendRefs.

A backendRef may be a Service or an InferencePool (``inference.networking.k8s.io``); it is matched
by group, kind and name. Owned fields: ``spec.rules[i].backendRefs[j].weight`` of those matches.
Gateway weights are relative (0..1,000,000); the policy writes them summing to 100, the share left
by backendRefs it does not manage being kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.actuators.objects import LiveObject, TrafficObject
from controller.actuators.patching import Path
from controller.actuators.weights import RouteObservation, pick_route, write_weights
from controller.clients.refs import BackendRef

GATEWAY_TOTAL = 100
DEFAULT_WEIGHT = 1  # the Gateway API's default for a backendRef without a weight


def _identity(ref: Mapping[str, Any]) -> BackendRef:
    return BackendRef(
        name=str(ref.get("name", "")), group=str(ref.get("group", "")), kind=str(ref.get("kind", "Service"))
    )


@dataclass
class HTTPRouteActuator:
    """``refs``: per backend name, the backendRef whose weight it owns, in the rule named ``rule_name``
    (or the first)."""

    target: TrafficObject
    refs: Mapping[str, BackendRef | None]
    rule_name: str | None

    async def observe(self) -> RouteObservation:
        ref, body = await self.target.read()
        rules = (body.get("spec") or {}).get("rules") or []
        index = pick_route(rules, self.rule_name, self.target.target.describe())
        refs = rules[index].get("backendRefs") or []
        identities = [_identity(r) for r in refs]
        weights: dict[str, float] = {}
        paths: dict[str, Path] = {}
        guards: dict[Path, Any] = {}
        missing = []
        for backend, wanted in self.refs.items():
            if wanted is None or wanted not in identities:
                missing.append(backend)
                continue
            j = identities.index(wanted)
            weights[backend] = float(refs[j].get("weight", DEFAULT_WEIGHT))
            paths[backend] = ("spec", "rules", index, "backendRefs", j, "weight")
            guards[("spec", "rules", index, "backendRefs", j, "name")] = wanted.name
        return RouteObservation(LiveObject(ref, body, tuple(missing)), weights, GATEWAY_TOTAL, paths, guards)

    async def apply(self, desired: Mapping[str, int], observed: RouteObservation) -> bool:
        return await write_weights(self.target, desired, observed)
