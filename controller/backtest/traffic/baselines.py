"""The judge's four baselines: static outlier-detection settings, and Flagger's canary analysis.

A baseline sets the same fields on every subset at t = 0 (weights stay the scenario's):

* ``none``: no outlier detection, no pool limits, no retries;
* ``istio-typical``: eject after 5 consecutive 5xx, 10 s sweep, 30 s base ejection, at most
  10 % of the hosts out (Envoy lets the first one out regardless), 2 retries;
* ``aggressive``: eject after 1 5xx, 1 s sweep, up to 100 % of the hosts, 2 retries;
* ``flagger``: the ``none`` settings with :class:`~controller.backtest.traffic.flagger.Flagger`
  driving the weights (scenarios with two subsets, one named ``canary``).

The t = 0 settings are a timeline of rows at time 0, so they show in the written decisions as
the judge writes them.
"""

from __future__ import annotations

from controller.backtest.traffic.flagger import Flagger, FlaggerParams
from controller.backtest.traffic.scenario import Scenario
from controller.backtest.traffic.settings import Change
from controller.backtest.traffic.timeline import Timeline

_NO_LIMITS: dict[str, float] = {"http2MaxRequests": 0, "http1MaxPendingRequests": 0}
_NONE: dict[str, float] = {"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 0, **_NO_LIMITS, "maxRetries": 0}

BASELINE_SETTINGS: dict[str, dict[str, float]] = {
    "none": _NONE,
    "istio-typical": {
        "consecutive5xxErrors": 5,
        "consecutiveGatewayErrors": 0,
        "interval_s": 10.0,
        "baseEjectionTime_s": 30.0,
        "maxEjectionPercent": 10.0,
        "maxRetries": 2,
        **_NO_LIMITS,
    },
    "aggressive": {
        "consecutive5xxErrors": 1,
        "consecutiveGatewayErrors": 0,
        "interval_s": 1.0,
        "baseEjectionTime_s": 30.0,
        "maxEjectionPercent": 100.0,
        "maxRetries": 2,
        **_NO_LIMITS,
    },
    "flagger": _NONE,
}
BASELINES = tuple(BASELINE_SETTINGS)


def baseline_timeline(name: str, scenario: Scenario) -> Timeline:
    """The baseline's settings as rows at t = 0 for every subset."""
    if name not in BASELINE_SETTINGS:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    rows = tuple(
        Change(0.0, subset.name, field, value)
        for subset in scenario.subsets
        for field, value in BASELINE_SETTINGS[name].items()
    )
    return Timeline(rows, name=name)


def baseline_controller(name: str, scenario: Scenario, params: FlaggerParams | None = None) -> Flagger | None:
    """The closed-loop part of a baseline: Flagger for ``flagger``, none for the static ones."""
    if name != "flagger":
        return None
    if len(scenario.subsets) != 2 or not scenario.has_canary:
        raise ValueError("the flagger baseline needs exactly two subsets, one named 'canary'")
    return Flagger(params)
