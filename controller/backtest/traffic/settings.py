"""The proxy settings of one subset (an Istio DestinationRule subset) and a change to one of them.

These are the fields a decisions timeline may set, with the judge's names, defaults and types:
integer fields are rounded when set, the others are floats. This module knows nothing of time
or of the simulation; it only validates and holds values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ProxySettings:
    """One subset's settings in force: routing weight, outlier detection, pool limits, retries.

    Zero turns a threshold or a limit off; ``interval_s`` is the period of the ejection sweep.
    """

    weight: int = 100
    consecutive5xxErrors: int = 0
    consecutiveGatewayErrors: int = 0
    interval_s: float = 10.0
    baseEjectionTime_s: float = 30.0
    maxEjectionPercent: float = 10.0
    http2MaxRequests: int = 0
    http1MaxPendingRequests: int = 0
    maxRetries: int = 0

    def with_values(self, values: dict[str, float]) -> ProxySettings:
        coerced: dict[str, Any] = {name: coerce(name, value) for name, value in values.items()}
        return replace(self, **coerced)

    def as_dict(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in SETTING_FIELDS}


SETTING_FIELDS = tuple(f.name for f in fields(ProxySettings))
INTEGER_FIELDS = frozenset(f.name for f in fields(ProxySettings) if f.type == "int")


def coerce(field: str, value: float) -> int | float:
    """A field's value as the proxy holds it: rounded for integer fields; negatives are errors."""
    if field not in SETTING_FIELDS:
        raise ValueError(f"unknown setting {field!r}; known: {', '.join(SETTING_FIELDS)}")
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value}")
    if field == "interval_s" and value == 0:
        raise ValueError("interval_s must be > 0")
    return round(value) if field in INTEGER_FIELDS else float(value)


@dataclass(frozen=True)
class Change:
    """Set ``field`` of ``subset`` to ``value`` from ``time_s`` on (one decisions-timeline row)."""

    time_s: float
    subset: str
    field: str
    value: int | float
