"""What the route actuators share (Istio VirtualService, Gateway API HTTPRoute): the weights observed, the
route they are in, and the guarded write of the weights.

A route holds the destinations of several backends; the actuators own the weights of the backends
a policy names and nothing else, and leave the share of any other destination as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.actuators.objects import LiveObject, TrafficObject
from controller.actuators.patching import Path
from controller.errors import TargetError


@dataclass(frozen=True)
class RouteObservation:
    """A route's weights: ours per backend found, the total left to us after foreign destinations."""

    live: LiveObject
    weights: Mapping[str, float]
    total: int
    paths: Mapping[str, Path]  # per backend found: the weight's path
    guards: Mapping[Path, Any]


def pick_route(routes: list[Mapping[str, Any]], name: str | None, described: str) -> int:
    """Index of the route (rule) named ``name``, or the first one."""
    if not routes:
        raise TargetError("NoRoute", f"{described} has no routes")
    if name is None:
        return 0
    for index, route in enumerate(routes):
        if route.get("name") == name:
            return index
    raise TargetError("RouteNotFound", f"{described} has no route named {name!r}")


async def write_weights(target: TrafficObject, desired: Mapping[str, int], observed: RouteObservation) -> bool:
    """Patch the weights of the backends found that differ from the live ones; whether anything was written."""
    changes = {observed.paths[name]: weight for name, weight in desired.items() if name in observed.paths}
    return await target.write(observed.live.body, changes, dict(observed.guards))
