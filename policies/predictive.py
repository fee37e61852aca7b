"""The predictive policy: provision for the forecast load before it arrives, react to what it missed.

A GPU replica takes minutes to become ready, so a count chosen from the load of *now* is late
by a whole start-up. This policy asks instead: how many ready replicas will the load need from
now until a replica started now could be ready, plus one decision interval? The forecaster
answers with the chosen quantile of load per future step (:class:`LoadForecast`); the policy
divides the highest of them over that window by the load one replica sustains within the SLO.

Three more rules cover what a forecast cannot:

* **Reactive path.** The load observed now may exceed what the count serves (the forecast
  missed a burst): scale up at once to what that load needs. The need is computed from the
  load, not from latency per ready replica, and is compared with the *desired* count, which
  already includes the replicas still starting: a panic never cascades 2 -> 4 -> 8 -> 16 while
  the first new pods load. A TTFT above its SLO with the load apparently covered means the
  capacity estimate is off: a latency panic then adds replicas, but only when none is starting.
* **Scale-down** happens only when the forecast's upper quantile stays below the remaining
  capacity for the whole window, and after the HPA's scale-down stabilization.
* **Missing or stale data.** Without a fresh forecast the policy follows the last good one for
  as long as its horizon still reaches into the window, then holds; it never scales down on
  missing data.

The HPA behavior rules (:mod:`policies.behavior`) and the bounds apply last. Every decision
names the *path* that set the count: ``forecast``, ``reactive``, ``hold`` or ``limit`` (a rate
limit or a bound changed what the others asked for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from policies.behavior import Direction, rate_limit, remember, stabilize, with_initial_recommendation
from policies.reasons import Reason
from policies.scaling_types import Action, Behavior, ScalingState

Path = Literal["forecast", "reactive", "hold", "limit"]

# Float noise must not turn 3.0000000000000004 replicas' worth of load into 4 replicas.
_EPSILON = 1e-9
# A latency panic at most doubles the ready count per decision, like Knative's panic mode.
_MAX_PANIC_FACTOR = 2.0


def _finite_non_negative(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class LoadForecast:
    """The chosen quantile of load for each future step, as plain numbers.

    ``upper[i]`` covers the step ``(issued_at + i * step_seconds, issued_at + (i + 1) * step_seconds]``
    and is in the same unit as the per-replica capacity (requests/s, prefill tokens/s...). The
    controller copies these numbers out of the forecaster, so the policy needs no ML library.
    """

    issued_at: float
    step_seconds: float
    upper: tuple[float, ...]
    quantile: float = 0.9

    def __post_init__(self) -> None:
        if not (math.isfinite(self.issued_at) and math.isfinite(self.step_seconds) and self.step_seconds > 0):
            raise ValueError("a forecast needs a finite issue time and a positive step")
        if not self.upper or not all(_finite_non_negative(value) for value in self.upper):
            raise ValueError("a forecast needs at least one step, every value finite and >= 0")
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")

    @property
    def ends_at(self) -> float:
        return self.issued_at + len(self.upper) * self.step_seconds

    def peak_between(self, start: float, end: float) -> float | None:
        """The highest value of the steps overlapping ``[start, end]``; ``None`` when none does."""
        first = max(0, math.floor((start - self.issued_at) / self.step_seconds))
        last = min(len(self.upper) - 1, math.ceil((end - self.issued_at) / self.step_seconds) - 1)
        if first > last:
            return None
        return max(self.upper[first : last + 1])

    def to_dict(self) -> dict[str, object]:
        return {
            "issuedAt": self.issued_at,
            "stepSeconds": self.step_seconds,
            "upper": list(self.upper),
            "quantile": self.quantile,
        }

    @classmethod
    def from_dict(cls, data: object) -> LoadForecast | None:
        """Rebuild from ``to_dict`` output; anything malformed gives ``None``, never an exception."""
        if not isinstance(data, Mapping):
            return None
        upper = data.get("upper")
        if not isinstance(upper, list):
            return None
        try:
            return cls(
                issued_at=_number(data.get("issuedAt")),
                step_seconds=_number(data.get("stepSeconds")),
                upper=tuple(_number(value) for value in upper),
                quantile=_number(data.get("quantile", 0.9)),
            )
        except ValueError:
            return None


def _number(value: object) -> float:
    # bool is an int subclass: a stray `true` must not become 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


@dataclass(frozen=True)
class PredictiveSettings:
    """The workload's constants as the controller knows them at this instant.

    ``capacity_per_replica`` is the load one ready replica sustains within the SLO, in the
    forecast's unit; ``lead_time_s`` the time from a scale-up to the new pods being Ready (the
    spec's default until measured). Both may change between decisions as they are learned.
    """

    capacity_per_replica: float
    lead_time_s: float
    interval_s: float
    ttft_slo_s: float | None = None
    behavior: Behavior = field(default_factory=Behavior)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_per_replica) and self.capacity_per_replica > 0):
            raise ValueError(f"capacity_per_replica must be > 0, got {self.capacity_per_replica}")
        if not (_finite_non_negative(self.lead_time_s) and math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError("lead_time_s must be >= 0 and interval_s > 0")
        if self.ttft_slo_s is not None and not (math.isfinite(self.ttft_slo_s) and self.ttft_slo_s > 0):
            raise ValueError(f"ttft_slo_s must be > 0, got {self.ttft_slo_s}")

    @property
    def window_s(self) -> float:
        """How far ahead the count must serve: a replica started now is ready after the lead time,
        and the next chance to correct comes one interval later."""
        return self.lead_time_s + self.interval_s


@dataclass(frozen=True)
class PredictiveInputs:
    """What the policy sees at one instant.

    ``forecast`` is ``None`` when no fresh forecast could be made this cycle (missing or stale
    history); ``observed_load`` (same unit as the forecast) and ``ttft_s`` (a recent TTFT
    quantile) are ``None``, NaN or negative when missing. ``spec_replicas`` is the target's
    desired count, so ``spec_replicas - ready_replicas`` replicas are still starting.
    """

    spec_replicas: int
    ready_replicas: int
    min_replicas: int
    max_replicas: int
    settings: PredictiveSettings
    forecast: LoadForecast | None
    observed_load: float | None = None
    ttft_s: float | None = None

    def __post_init__(self) -> None:
        if self.spec_replicas < 0 or self.ready_replicas < 0:
            raise ValueError("replica counts cannot be negative")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")

    @property
    def load_missing(self) -> bool:
        return not _finite_non_negative(self.observed_load)

    @property
    def starting_replicas(self) -> int:
        return max(0, self.spec_replicas - self.ready_replicas)


@dataclass(frozen=True)
class PredictiveState:
    """What the policy remembers: the behavior history and the last good forecast.

    Persisted in the CR's status; ``from_dict`` never raises, so a corrupted status degrades to
    "no history" (which forbids an immediate scale-down) instead of crashing the controller.
    """

    scaling: ScalingState = field(default_factory=ScalingState)
    last_forecast: LoadForecast | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "behavior": self.scaling.to_dict(),
            "lastForecast": self.last_forecast.to_dict() if self.last_forecast else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> PredictiveState:
        if not isinstance(data, Mapping):
            return cls()
        behavior = data.get("behavior")
        return cls(
            ScalingState.from_dict(behavior if isinstance(behavior, Mapping) else None),
            LoadForecast.from_dict(data.get("lastForecast")),
        )


@dataclass(frozen=True)
class PredictiveDecision:
    """The count to set, the path that set it, why, and the state to persist.

    ``forecast_replicas`` and ``reactive_replicas`` are what each path asked for (``None`` when
    it had nothing to say); ``reasons[0]`` explains ``path``, later codes are the rules applied
    afterwards, in order.
    """

    desired_replicas: int
    action: Action
    path: Path
    reasons: tuple[Reason, ...]
    message: str
    forecast_replicas: int | None
    reactive_replicas: int | None
    state: PredictiveState


def replicas_for(load: float, capacity_per_replica: float) -> int:
    """The fewest replicas whose capacity covers ``load``."""
    return max(0, math.ceil(load / capacity_per_replica - _EPSILON))


@dataclass(frozen=True)
class _Proposal:
    replicas: int
    reason: Reason
    text: str


def _forecast_proposal(
    forecast: LoadForecast, fresh: bool, spec: int, settings: PredictiveSettings, now: float
) -> _Proposal | None:
    peak = forecast.peak_between(now, now + settings.window_s)
    if peak is None:
        return None
    replicas = replicas_for(peak, settings.capacity_per_replica)
    window = f"q{forecast.quantile:g} load {peak:.4g} over the next {settings.window_s:g}s"
    if not fresh:
        return _Proposal(replicas, Reason.FollowingLastForecast, f"following the last good forecast: {window}")
    if replicas > spec:
        reason = Reason.ForecastScaleUp
    elif replicas < spec:
        reason = Reason.ForecastScaleDown
    else:
        reason = Reason.ForecastWithinCapacity
    return _Proposal(replicas, reason, f"{window} needs {replicas} at {settings.capacity_per_replica:g}/replica")


def _reactive_proposal(inputs: PredictiveInputs) -> _Proposal | None:
    """What the load and latency of now ask for, counting the replicas already starting."""
    settings = inputs.settings
    if inputs.load_missing or inputs.observed_load is None:
        return None
    load = inputs.observed_load
    needed = replicas_for(load, settings.capacity_per_replica)
    if needed > inputs.spec_replicas:
        return _Proposal(needed, Reason.ReactiveScaleUp, f"observed load {load:.4g} needs {needed} now")
    slow = (
        settings.ttft_slo_s is not None
        and _finite_non_negative(inputs.ttft_s)
        and inputs.ttft_s is not None
        and inputs.ttft_s > settings.ttft_slo_s
    )
    if slow and inputs.ttft_s is not None and settings.ttft_slo_s is not None:
        if inputs.starting_replicas:
            return _Proposal(
                inputs.spec_replicas,
                Reason.PendingReplicasCover,
                f"TTFT {inputs.ttft_s:.3g}s above the SLO, but {inputs.starting_replicas} replica(s) are starting",
            )
        factor = min(inputs.ttft_s / settings.ttft_slo_s, _MAX_PANIC_FACTOR)
        panic = max(inputs.ready_replicas + 1, math.ceil(inputs.ready_replicas * factor - _EPSILON))
        return _Proposal(
            panic, Reason.LatencyPanic, f"TTFT {inputs.ttft_s:.3g}s above the SLO {settings.ttft_slo_s:g}s"
        )
    return _Proposal(needed, Reason.WithinTolerance, f"observed load {load:.4g} needs {needed}")


def decide_predictive(inputs: PredictiveInputs, state: PredictiveState, now: float) -> PredictiveDecision:
    """Decide the replica count at ``now``; the returned state must be stored even on a hold."""
    spec = inputs.spec_replicas
    settings = inputs.settings
    history = with_initial_recommendation(state.scaling, spec, now)
    last_forecast = inputs.forecast or state.last_forecast
    remembered = PredictiveState(history, last_forecast)

    if spec == 0:
        return _hold(inputs, remembered, now, Reason.ScalingDisabled, "the target was scaled to zero: standing aside")
    if not inputs.min_replicas <= spec <= inputs.max_replicas:
        bound = min(max(spec, inputs.min_replicas), inputs.max_replicas)
        reason = Reason.ClampedToMax if spec > inputs.max_replicas else Reason.ClampedToMin
        return _finish(
            inputs, remembered, now, bound, "limit", [reason], [f"moved into the bounds at {bound}"], None, None
        )

    fresh = inputs.forecast is not None
    forecast = _forecast_proposal(last_forecast, fresh, spec, settings, now) if last_forecast is not None else None
    reactive = _reactive_proposal(inputs)
    if forecast is None and reactive is None:
        return _hold(inputs, remembered, now, Reason.ForecastExpired, "no fresh forecast or load, and none to follow")

    candidates = [proposal for proposal in (forecast, reactive) if proposal is not None]
    # The forecast leads on a tie: the reactive path decides only where the forecast fell short.
    decisive = max(candidates, key=lambda proposal: proposal.replicas)
    path: Path = "forecast" if decisive is forecast else "reactive"
    recommended = decisive.replicas
    reasons = [decisive.reason]
    parts = [decisive.text]
    if forecast is None:
        reasons.append(Reason.ForecastExpired)
        parts.append("no forecast covers the window")

    data_missing = not fresh or inputs.load_missing
    if data_missing and recommended < spec:
        # Missing data may scale up, never down: hold instead.
        parts.append("no scale-down while the forecast or the load is missing")
        return _finish(
            inputs,
            remembered,
            now,
            spec,
            "hold",
            [Reason.MetricMissing, *reasons],
            parts,
            forecast,
            reactive,
        )

    behavior = settings.behavior
    desired = stabilize(history.recommendations, recommended, spec, behavior, now)
    if desired != recommended:
        up = recommended > spec
        reasons.append(Reason.ScaleUpStabilized if up else Reason.ScaleDownStabilized)
        window = (behavior.scale_up if up else behavior.scale_down).stabilization_window_seconds
        parts.append(f"stabilized at {desired} by the recommendations of the last {window}s")
        path = "hold" if desired == spec else path
    if desired != spec:
        limited = _limit(desired, inputs, history, now)
        if limited is not None:
            desired, reason, why = limited
            reasons.append(reason)
            parts.append(why)
            path = "limit"
    return _finish(inputs, remembered, now, desired, path, reasons, parts, forecast, reactive, recommended)


def _limit(desired: int, inputs: PredictiveInputs, history: ScalingState, now: float) -> tuple[int, Reason, str] | None:
    """Cap a move by its direction's rate-limit policies and bound; ``None`` when it is allowed."""
    spec = inputs.spec_replicas
    direction: Direction = "up" if desired > spec else "down"
    behavior = inputs.settings.behavior
    rules, bound = (
        (behavior.scale_up, inputs.max_replicas) if direction == "up" else (behavior.scale_down, inputs.min_replicas)
    )
    limit = rate_limit(direction, spec, history, rules, now)
    sign = 1 if direction == "up" else -1  # compare both directions as if moving up
    allowed = sign * min(sign * limit.replicas, sign * bound)
    if sign * desired <= sign * allowed:
        return None
    if sign * limit.replicas >= sign * bound:
        clamped = Reason.ClampedToMax if direction == "up" else Reason.ClampedToMin
        return allowed, clamped, f"clamped to {'max' if direction == 'up' else 'min'}Replicas {allowed}"
    if limit.rule is None:
        disabled = Reason.ScaleUpDisabled if direction == "up" else Reason.ScaleDownDisabled
        return allowed, disabled, f"scale{'Up' if direction == 'up' else 'Down'} is disabled"
    limited = Reason.ScaleUpRateLimited if direction == "up" else Reason.ScaleDownRateLimited
    return allowed, limited, f"limited by policy {limit.rule}"


def _hold(
    inputs: PredictiveInputs, state: PredictiveState, now: float, reason: Reason, text: str
) -> PredictiveDecision:
    return _finish(inputs, state, now, inputs.spec_replicas, "hold", [reason], [text], None, None)


def _finish(
    inputs: PredictiveInputs,
    state: PredictiveState,
    now: float,
    desired: int,
    path: Path,
    reasons: list[Reason],
    parts: list[str],
    forecast: _Proposal | None,
    reactive: _Proposal | None,
    recommended: int | None = None,
) -> PredictiveDecision:
    """Assemble the decision; only a recommendation that went through the behavior rules is
    recorded in the history, as the HPA does."""
    spec = inputs.spec_replicas
    action: Action = "ScaleUp" if desired > spec else "ScaleDown" if desired < spec else "Hold"
    scaling = remember(
        state.scaling,
        inputs.settings.behavior,
        now,
        current=spec,
        desired=desired,
        recommended=recommended,
    )
    return PredictiveDecision(
        desired_replicas=desired,
        action=action,
        path=path,
        reasons=tuple(reasons),
        message=f"{spec} -> {desired} ({path}): {'; '.join(parts)}",
        forecast_replicas=forecast.replicas if forecast else None,
        reactive_replicas=reactive.replicas if reactive else None,
        state=PredictiveState(scaling, state.last_forecast),
    )
