"""One table between what our traffic policies write in Istio and the judge's proxy settings.

A CircuitBreakerPolicy writes a DestinationRule subset's ``trafficPolicy`` and a RoutingPolicy a
route's weights; the judge simulates the same Envoy settings under its own names. :data:`FIELDS`
pairs them, one row per field, and is used both ways: :func:`judge_values` turns a decision into
the judge's fields (the settings a decision writes), :func:`live_breakers` turns the settings in
force back into what the operator's actuator would observe in the DestinationRule.

Two of our fields have no judge counterpart:

* ``outlierDetection.minHealthPercent`` is Envoy's panic threshold, a fixed model option of the
  judge (50 %, ``--panic-threshold``), not a timeline field: it is not written, and read back as
  Istio's default, 0;
* ``connectionPool.http.maxRetries`` is written as the judge's ``maxRetries``, which the judge
  models as the retries of one request after a host 5xx (a VirtualService's ``retries.attempts``);
  in Istio the field caps the retries outstanding to the whole subset. Both are 0 for "no retries".
"""

from __future__ import annotations

from controller.backtest.traffic.settings import ProxySettings
from policies import BreakerSettings, ConnectionPool, OutlierDetection

#: (part of :class:`~policies.BreakerSettings`, its field, the judge's field).
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("outlier", "consecutive_5xx_errors", "consecutive5xxErrors"),
    ("outlier", "consecutive_gateway_errors", "consecutiveGatewayErrors"),
    ("outlier", "interval_s", "interval_s"),
    ("outlier", "base_ejection_time_s", "baseEjectionTime_s"),
    ("outlier", "max_ejection_percent", "maxEjectionPercent"),
    ("pool", "http2_max_requests", "http2MaxRequests"),
    ("pool", "http1_max_pending_requests", "http1MaxPendingRequests"),
    ("pool", "max_retries", "maxRetries"),
)
#: A RoutingPolicy's weight of a backend is the judge's ``weight`` of its subset.
WEIGHT = "weight"
#: Istio's value of the one outlier field the judge does not simulate.
MIN_HEALTH_PERCENT_READ_BACK = 0


def judge_values(settings: BreakerSettings) -> dict[str, int]:
    """The judge's fields a decision sets (a ``None`` part of it sets nothing)."""
    values: dict[str, int] = {}
    for part, ours, theirs in FIELDS:
        chosen = getattr(settings, part)
        if chosen is not None:
            values[theirs] = int(getattr(chosen, ours))
    return values


def live_breakers(proxy: ProxySettings) -> BreakerSettings:
    """The settings in force as the DestinationRule actuator would observe them."""
    parts: dict[str, dict[str, int]] = {"outlier": {}, "pool": {}}
    for part, ours, theirs in FIELDS:
        parts[part][ours] = round(getattr(proxy, theirs))
    outlier = OutlierDetection(**parts["outlier"], min_health_percent=MIN_HEALTH_PERCENT_READ_BACK)
    return BreakerSettings(outlier=outlier, pool=ConnectionPool(**parts["pool"]))
