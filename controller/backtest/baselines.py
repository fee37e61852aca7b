"""Reactive baselines to compare against: the Kubernetes HPA and the Knative KPA.

Both read what their real counterparts read, the requests in flight (running + waiting) per
ready replica, against the default concurrency target of 0.7 x 128. The HPA is our own
reactive policy (:func:`policies.decide_reactive`, the HPA v2 algorithm with default behavior)
fed a metric lagged by a scrape and an adapter; the KPA follows Knative's
``pkg/autoscaler/scaling/autoscaler.go`` (stable and panic windows, rate bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller.backtest.simulate import FleetView, Observations
from policies import MetricObservation, ReactiveInputs, ScalingState, decide_reactive

DEFAULT_CONCURRENCY_TARGET = 0.7 * 128


@dataclass
class HpaBaseline:
    """HPA v2 with a Pods metric (in-flight requests per ready replica), default behavior.

    The metric is seen ``lag_s`` late (Prometheus scrape + metrics adapter) and averaged over
    ``window_s``; cold-starting pods count as idle when scaling up (the HPA's unready-pod rule).
    """

    target: float = DEFAULT_CONCURRENCY_TARGET
    interval_s: float = 15.0
    lag_s: float = 30.0
    window_s: float = 15.0
    min_replicas: int = 1
    max_replicas: int = 64
    name: str = "hpa"
    state: ScalingState = field(default_factory=ScalingState)

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        end = now - self.lag_s
        total = observations.mean("inflight", end - self.window_s, end)
        ready = observations.mean("ready", end - self.window_s, end)
        if total is None or not ready or fleet.ready == 0:
            return fleet.desired
        per_ready = total / ready
        metric = MetricObservation("inflight", per_ready * fleet.ready, "AverageValue", self.target)
        inputs = ReactiveInputs(fleet.desired, fleet.ready, self.min_replicas, self.max_replicas, (metric,))
        decision = decide_reactive(inputs, self.state, now)
        self.state = decision.state
        return decision.desired_replicas


@dataclass
class KpaBaseline:
    """Knative's KPA: ceil(concurrency / target) over a 60 s stable and a 6 s panic window.

    Panic starts when the panic window asks for at least twice the ready count; while panicking
    the count never falls, and panic ends a stable window after the last over-threshold tick.
    Each tick may scale up to ``max_scale_up_rate`` x ready and down to ready / ``max_scale_down_rate``.
    """

    target: float = DEFAULT_CONCURRENCY_TARGET
    interval_s: float = 2.0
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 64
    name: str = "kpa"
    panic_since: float | None = None
    max_panic_replicas: int = 0

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        stable = observations.mean("inflight", now - self.stable_window_s, now)
        panic = observations.mean("inflight", now - self.panic_window_s, now)
        if stable is None or panic is None:
            return fleet.desired
        ready = max(1.0, float(fleet.ready))
        highest = math.ceil(self.max_scale_up_rate * ready)
        lowest = math.floor(ready / self.max_scale_down_rate)
        stable_wants = math.ceil(stable / self.target)
        panic_wants = math.ceil(panic / self.target)
        if panic_wants / ready >= self.panic_threshold:
            self.panic_since = now
        elif self.panic_since is not None and now > self.panic_since + self.stable_window_s:
            self.panic_since, self.max_panic_replicas = None, 0
        desired = min(max(stable_wants, lowest), highest)
        if self.panic_since is not None:
            desired = max(desired, min(max(panic_wants, lowest), highest), self.max_panic_replicas)
            self.max_panic_replicas = desired
        return min(max(desired, self.min_replicas), self.max_replicas)
