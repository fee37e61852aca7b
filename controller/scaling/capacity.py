"""Per-replica capacity learned from what the replicas do, per resource: prefill and decode.

The predictive policy divides the forecast load by the load one ready replica sustains within the
SLO: too high a capacity costs SLO minutes, too low costs GPUs. A replica runs out of one of two
resources, and which one depends on the workload:

* **prefill** (TTFT-bound): prompts are processed one after another at the replica's prefill
  rate. The estimate is that rate, measured directly: the prompt load prefilled over the seconds
  spent prefilling (vLLM's ``prompt_tokens`` over ``request_prefill_time_seconds``). The forecast
  load is burst-aware (:mod:`forecasting.burst`: the rate that prefills every recent burst
  within the TTFT SLO), so a fleet whose prefill rate covers it meets the TTFT target.
* **decode** (TPOT-bound): every running sequence advances one token per engine step, and a step
  grows with the batch and pauses while prompts are prefilled, so TPOT rises with both the
  generated tokens/s and the prompt load per replica. Under that linear cost model (the step's
  time is a fixed part plus a part per sequence and per prompt token) the inverse of TPOT falls
  linearly with the mean loads, ``1/TPOT = b0 - bx x - bg g``, reaching ``1/SLO`` at the
  capacity. The estimator fits that line to the p95 TPOT of each observed window (weighted least
  squares, windows near the SLO weighing most, older ones decaying with a half-life of a day) and
  reads the capacity off it along the workload's recent mix of generated tokens to prompt load,
  then expresses it in the forecast's unit with the recent ratio of the load's burst-aware peak
  to its mean (the forecast is of that peak; TPOT follows the mean).

The replicas needed are the **maximum over resources**, i.e. the capacity in the load's unit is
the minimum of the two (the decode capacity converted with the mix); that resource *binds*.

What it trusts:

* the prefill rate is used after :data:`MIN_PREFILL_SECONDS` of prefilling (before, the prior);
* the decode fit is combined with a *prior* by precision (in logs, the prior taken to be good to
  :data:`PRIOR_RELATIVE_ERROR`): ``spec.forecast.capacity.perReplica`` when set, else, once the
  workload was seen decoding, ``targetUtilization`` x the prefill rate. The resource is *learned*
  once the fit's relative standard error is within :data:`LEARNED_RELATIVE_ERROR` (its weight then
  exceeds 90 %), over at least :data:`MIN_WINDOWS` effective windows; with neither fit nor prior
  it is unknown;
* the fitted line is never extrapolated beyond :data:`MAX_EXTRAPOLATION` x the highest load per
  replica it was measured at;
* a window with a signal missing adds nothing for that resource, and no ready replica nothing
  at all: missing data never moves the estimate.

One code path for the operator (windows from Prometheus) and the backtester (windows from the
simulated replicas' metrics). Pure: no I/O, no clock (times come with the observations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Self

Resource = Literal["prefill", "decode"]
Source = Literal["learned", "prior", "unknown"]

#: Seconds of prefilling before the measured prefill rate is trusted.
MIN_PREFILL_SECONDS = 10.0
#: The decode capacity is learned once the fit's relative standard error is at most this.
LEARNED_RELATIVE_ERROR = 0.15
#: ... and rests on at least this many effective windows (fewer: the prior alone).
MIN_WINDOWS = 5.0
#: The relative error a prior is taken to have: a guess good to a factor of about two.
PRIOR_RELATIVE_ERROR = 0.5
#: The fitted TPOT line is not trusted beyond this multiple of the highest load per replica seen.
MAX_EXTRAPOLATION = 2.0
#: Relative ridge on the load slopes: separates them when the mix never changes (collinear loads).
RIDGE = 0.01
#: Windows whose p95 TPOT is this factor from the SLO weigh e^-1/2 of one at the SLO.
NEAR_SLO_FACTOR = 2.0
#: The workload's recent mix (generated tokens to load, peak to mean) decays with this half-life.
RECENT_HALF_LIFE_S = 600.0


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class CapacityObservation:
    """One window of the fleet, ending at ``time_s``: totals over the ready replicas, ``None`` when missing.

    ``load`` is the forecast's load (burst-aware, in the capacity's unit: its peak over the window,
    as the policy divides the forecast's peak by the capacity), ``load_mean`` the same series' mean
    rate over the window (``load`` stands in for it when missing), ``prefilled`` the same
    unit as processed by the prefills, ``prefill_busy`` the replica-seconds per second spent
    prefilling, ``generated`` the tokens/s generated; ``ttft_s`` and ``tpot_s`` are the window's
    p95; ``queue`` the waiting requests and ``running`` the running sequences (shown, not fitted).
    """

    time_s: float
    ready_replicas: float
    load: float | None = None
    load_mean: float | None = None
    generated: float | None = None
    prefilled: float | None = None
    prefill_busy: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    queue: float | None = None
    running: float | None = None


@dataclass(frozen=True)
class CapacityState:
    """The estimator's sufficient statistics: decayed sums, JSON-friendly for ``status.capacity.state``."""

    time_s: float | None = None
    """When the last window was added (a window starting before it overlaps and is skipped)."""
    prefilled: float = 0.0
    prefill_busy: float = 0.0
    # Weighted sums of the TPOT fit over the features (1, x, g) and the target y = 1/TPOT.
    w: float = 0.0
    w2: float = 0.0
    x: float = 0.0
    g: float = 0.0
    xx: float = 0.0
    xg: float = 0.0
    gg: float = 0.0
    y: float = 0.0
    xy: float = 0.0
    gy: float = 0.0
    yy: float = 0.0
    max_x: float = 0.0
    max_g: float = 0.0
    # The recent loads per replica (decaying faster): mean and peak of the load, generated tokens.
    recent_mean: float = 0.0
    recent_peak: float = 0.0
    recent_generated: float = 0.0

    def to_status(self) -> dict[str, float | None]:
        return {key: (None if value is None else float(f"{value:.6g}")) for key, value in asdict(self).items()}

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> CapacityState:
        """The sums a status holds; anything malformed gives an empty state, never a crash."""
        if not isinstance(raw, Mapping):
            return cls()
        values: dict[str, float | None] = {}
        for item in fields(cls):
            value = raw.get(item.name)
            if value is None and item.name == "time_s":
                values[item.name] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return cls()
            values[item.name] = float(value)
        state = cls(**values)  # type: ignore[arg-type]
        if min(state.w, state.prefilled, state.prefill_busy, state.max_x, state.max_g) < 0:
            return cls()
        return state


@dataclass(frozen=True)
class ResourceCapacity:
    """One resource's capacity per ready replica: in its own unit, and in the load's unit."""

    resource: Resource
    unit: str
    per_replica: float | None
    in_load_unit: float | None
    source: Source
    confidence: float
    """1 minus the estimate's relative standard error, in [0, 1] (0 for a prior or an unknown)."""

    def to_status(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "unit": self.unit,
            "perReplica": _rounded(self.per_replica),
            "inLoadUnit": _rounded(self.in_load_unit),
            "source": self.source,
            "confidence": round(self.confidence, 3),
        }


@dataclass(frozen=True)
class Capacity:
    """The capacity in force, in the load's unit: the smallest of the resources', and which binds."""

    per_replica: float | None
    source: Source
    binding: Resource | None
    resources: tuple[ResourceCapacity, ...] = ()

    def resource(self, name: Resource) -> ResourceCapacity | None:
        return next((r for r in self.resources if r.resource == name), None)

    def to_status(self) -> dict[str, Any]:
        return {
            "perReplica": _rounded(self.per_replica),
            "source": self.source,
            **({"binding": self.binding} if self.binding is not None else {}),
            "resources": [r.to_status() for r in self.resources],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


@dataclass
class CapacityEstimator:
    """Learns the per-replica capacity of each resource from fleet windows (see the module docstring).

    Parameters are the SLO, the spec's priors and the time scales; ``state`` resumes from a
    persisted :class:`CapacityState`. :meth:`partial_fit` adds one window and returns the
    estimator; the learned state is ``state_``, and :meth:`estimate` reads the capacity from it.
    """

    tpot_slo_s: float
    prior_per_replica: float | None = None
    target_utilization: float = 0.4
    load_unit: str = "PrefillTokensPerSecond"
    window_s: float = 60.0
    half_life_s: float = 86_400.0
    state: CapacityState | None = None
    state_: CapacityState = field(init=False)

    def __post_init__(self) -> None:
        if not (self.tpot_slo_s > 0 and self.window_s > 0 and self.half_life_s > 0):
            raise ValueError("the TPOT SLO, the window and the half-life must be > 0")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        self.state_ = self.state or CapacityState()

    def partial_fit(self, seen: CapacityObservation) -> Self:
        """Add one window; a window overlapping the last one added, or with no ready replica, adds nothing."""
        state = self.state_
        if seen.ready_replicas <= 0 or not math.isfinite(seen.time_s):
            return self
        if state.time_s is not None and seen.time_s < state.time_s + self.window_s - 1e-9:
            return self
        elapsed = 0.0 if state.time_s is None else seen.time_s - state.time_s
        decay = 0.5 ** (elapsed / self.half_life_s)
        mix_decay = 0.5 ** (elapsed / RECENT_HALF_LIFE_S)
        updates: dict[str, float] = {name: getattr(state, name) * decay for name in _DECAYED}
        updates |= {name: getattr(state, name) * mix_decay for name in _RECENT}
        updates["max_x"], updates["max_g"] = state.max_x, state.max_g
        if _usable(seen.prefilled) and _usable(seen.prefill_busy) and seen.prefill_busy:
            assert seen.prefilled is not None and seen.prefill_busy is not None
            # Rates over the window, summed as amounts: the threshold counts seconds of prefilling.
            updates["prefilled"] += seen.prefilled * self.window_s
            updates["prefill_busy"] += seen.prefill_busy * self.window_s
        replicas = seen.ready_replicas
        if _usable(seen.load) and _usable(seen.generated):
            assert seen.load is not None and seen.generated is not None
            mean = seen.load_mean if _usable(seen.load_mean) and seen.load_mean is not None else seen.load
            x, g = mean / replicas, seen.generated / replicas
            updates["recent_mean"] += x
            updates["recent_peak"] += seen.load / replicas
            updates["recent_generated"] += g
            if _usable(seen.tpot_s) and seen.tpot_s:
                assert seen.tpot_s is not None
                self._add_tpot_window(updates, x, g, seen.tpot_s)
        self.state_ = replace(state, time_s=seen.time_s, **updates)
        return self

    def _add_tpot_window(self, sums: dict[str, float], x: float, g: float, tpot_s: float) -> None:
        weight = math.exp(-0.5 * (math.log(tpot_s / self.tpot_slo_s) / math.log(NEAR_SLO_FACTOR)) ** 2)
        y = 1.0 / tpot_s
        terms = {"w": 1.0, "x": x, "g": g, "xx": x * x, "xg": x * g, "gg": g * g}
        terms |= {"y": y, "xy": x * y, "gy": g * y, "yy": y * y}
        for name, value in terms.items():
            sums[name] += weight * value
        sums["w2"] += weight * weight
        sums["max_x"] = max(sums["max_x"], x)
        sums["max_g"] = max(sums["max_g"], g)

    # -- reading the capacity ------------------------------------------------------------------

    def prefill_rate(self) -> float | None:
        """The measured prefill rate per busy replica (load units per second), once trusted."""
        state = self.state_
        if state.prefill_busy < MIN_PREFILL_SECONDS or state.prefilled <= 0:
            return None
        return state.prefilled / state.prefill_busy

    def mix(self) -> float | None:
        """Generated tokens per unit of mean load, recently; ``None`` before any load was seen."""
        state = self.state_
        return state.recent_generated / state.recent_mean if state.recent_mean > 0 else None

    def peak_ratio(self) -> float:
        """The load's burst-aware peak over its mean, recently (1 before any load was seen)."""
        state = self.state_
        return max(1.0, state.recent_peak / state.recent_mean) if state.recent_mean > 0 else 1.0

    def estimate(self) -> Capacity:
        """The capacity in force now, per resource and overall (the smallest in the load's unit)."""
        prefill_rate = self.prefill_rate()
        if prefill_rate is not None:
            prefill = ResourceCapacity("prefill", self.load_unit, prefill_rate, prefill_rate, "learned", 1.0)
        elif self.prior_per_replica is not None:
            prefill = ResourceCapacity("prefill", self.load_unit, None, self.prior_per_replica, "prior", 0.0)
        else:
            prefill = ResourceCapacity("prefill", self.load_unit, None, None, "unknown", 0.0)
        resources = (prefill, self._decode(prefill_rate))
        known = [r for r in resources if r.in_load_unit is not None]
        if not known:
            return Capacity(None, "unknown", None, resources)
        binding = min(known, key=lambda r: r.in_load_unit or 0.0)
        return Capacity(binding.in_load_unit, binding.source, binding.resource, resources)

    def _decode(self, prefill_rate: float | None) -> ResourceCapacity:
        """The decode capacity: the fit combined with the prior by their precision (in logs)."""
        unit = "GeneratedTokensPerSecond"
        mix, ratio = self.mix(), self.peak_ratio()
        prior = self.prior_per_replica
        if prior is None and prefill_rate is not None and self.state_.w > 0:
            # Only a workload seen decoding (a window with a TPOT) has a decode resource to guess.
            prior = self.target_utilization * prefill_rate
        fitted = self._decode_fit(mix) if mix is not None else None
        if fitted is None:
            if prior is None:
                return ResourceCapacity("decode", unit, None, None, "unknown", 0.0)
            return ResourceCapacity("decode", unit, prior / ratio * mix if mix else None, prior, "prior", 0.0)
        mean_load, relative_error = fitted
        assert mix is not None
        log_capacity, precision = math.log(mean_load * ratio), relative_error**-2
        if prior is not None:
            log_capacity = (log_capacity * precision + math.log(prior) * PRIOR_RELATIVE_ERROR**-2) / (
                precision + PRIOR_RELATIVE_ERROR**-2
            )
            precision += PRIOR_RELATIVE_ERROR**-2
        in_load_unit = math.exp(log_capacity)
        source: Source = "learned" if relative_error <= LEARNED_RELATIVE_ERROR or prior is None else "prior"
        confidence = max(0.0, 1.0 - precision**-0.5)
        return ResourceCapacity("decode", unit, in_load_unit / ratio * mix, in_load_unit, source, confidence)

    def _decode_fit(self, mix: float) -> tuple[float, float] | None:
        """(capacity in mean load per replica along ``mix``, its relative standard error), or
        ``None`` when the fit is not usable (too few windows, or TPOT not rising with the load)."""
        s = self.state_
        effective = s.w * s.w / s.w2 if s.w2 > 0 else 0.0
        if effective < MIN_WINDOWS:
            return None
        moments = [[s.w, s.x, s.g], [s.x, s.xx, s.xg], [s.g, s.xg, s.gg]]
        regularized = [
            [value * (1 + RIDGE * (i == j > 0)) for j, value in enumerate(row)] for i, row in enumerate(moments)
        ]
        rhs = [s.y, s.xy, s.gy]
        inverse = _inverse3(regularized)
        if inverse is None:
            return None
        b0, bx, bg = (sum(inverse[i][j] * rhs[j] for j in range(3)) for i in range(3))
        slope = -(bx + bg * mix)  # how fast 1/TPOT falls per unit of load, along the mix
        headroom = b0 - 1.0 / self.tpot_slo_s
        if slope <= 0 or headroom <= 0:
            return None
        capacity = headroom / slope
        limits = [MAX_EXTRAPOLATION * s.max_x]
        if mix > 0:
            limits.append(MAX_EXTRAPOLATION * s.max_g / mix)
        capacity = min(capacity, *limits)
        coefficients = (b0, bx, bg)
        fitted = sum(
            b * sum(m * c for m, c in zip(row, coefficients, strict=True))
            for b, row in zip(coefficients, moments, strict=True)
        )
        residual = s.yy - 2 * (b0 * s.y + bx * s.xy + bg * s.gy) + fitted
        # Weights rescaled to sum to the effective number of windows: Cov(b) = RSS / (n - 3) x inverse.
        variance = max(residual, 0.0) / max(effective - 3.0, 1.0)
        # Delta method on capacity = headroom / slope.
        gradient = (-1.0 / slope, -headroom / slope**2, -headroom * mix / slope**2)
        spread = sum(gradient[i] * inverse[i][j] * gradient[j] for i in range(3) for j in range(3))
        error = math.sqrt(max(variance * spread, 0.0))
        return capacity, error / capacity if capacity > 0 else math.inf


_RECENT = ("recent_mean", "recent_peak", "recent_generated")
_DECAYED = tuple(f.name for f in fields(CapacityState) if f.name not in ("time_s", "max_x", "max_g", *_RECENT))


def _inverse3(m: list[list[float]]) -> list[list[float]] | None:
    """The inverse of a 3x3 matrix; ``None`` when it is (numerically) singular."""
    (a, b, c), (d, e, f), (g, h, i) = m
    cofactors = [
        [e * i - f * h, -(b * i - c * h), b * f - c * e],
        [-(d * i - f * g), a * i - c * g, -(a * f - c * d)],
        [d * h - e * g, -(a * h - b * g), a * e - b * d],
    ]
    determinant = a * cofactors[0][0] + b * cofactors[1][0] + c * cofactors[2][0]
    scale = abs(a * e * i) + abs(b * f * g) + abs(c * d * h) + 1e-300
    if abs(determinant) <= 1e-12 * scale:
        return None
    return [[value / determinant for value in row] for row in cofactors]
