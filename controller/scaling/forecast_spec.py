"""``spec.forecast`` of a ScalingPolicy: the predictive policy's knobs, parsed and checked.

The CRD bounds every field; this module applies the defaults and the rules that span fields.
Absent ``spec.forecast`` means the reactive policy, exactly as before the section existed.
docs/scalingpolicy.md is the field reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.clients.servers import CAPACITY_UNITS, SERVERS, CapacityUnit, MetricSource, Server
from controller.errors import SpecError
from controller.reconcile.spec import parse_metric_source
from controller.scaling.attainment import DEFAULT_TARGET as DEFAULT_ATTAINMENT

ForecastModel = Literal["Auto", "SeasonalNaive", "DampedTrend", "Linear", "WindowPeak"]

FORECAST_MODELS: tuple[ForecastModel, ...] = ("Auto", "SeasonalNaive", "DampedTrend", "Linear", "WindowPeak")
#: The reason of every refusal of ``spec.forecast``.
INVALID = "InvalidForecast"


@dataclass(frozen=True)
class CapacitySpec:
    """The load one replica sustains within the SLO: learned from the replicas (:mod:`controller.scaling.capacity`).

    Both numbers are priors that observations override: ``per_replica`` stands in for every
    resource not learned yet; without it, the decode resource's prior is ``target_utilization``
    times the measured prefill rate (decoding pauses while a prompt is prefilled).
    """

    unit: CapacityUnit = "PrefillTokensPerSecond"
    per_replica: float | None = None
    target_utilization: float = 0.4


@dataclass(frozen=True)
class SloSpec:
    """The latency targets a minute's p95 must meet, and the share of minutes that must meet them."""

    ttft_s: float = 2.0
    tpot_s: float = 0.05
    attainment: float = DEFAULT_ATTAINMENT


#: The forecast quantile when the spec sets none: the shape of the headroom, which the attainment
#: feedback then scales (controller/scaling/attainment.py).
DEFAULT_QUANTILE = 0.9


@dataclass(frozen=True)
class ForecastSpec:
    quantile: float | None = None
    """The expert override: a fixed forecast quantile, and no attainment feedback (headroom 1)."""
    lead_time_s: float = 90.0
    """Start-up delay assumed until the controller has measured the workload's own."""
    refit_interval_s: float = 600.0
    step_s: int = 60
    history_s: float = 172_800.0
    model: ForecastModel = "Auto"
    capacity: CapacitySpec = CapacitySpec()
    slo: SloSpec = SloSpec()
    server: Server = "vLLM"
    """Whose metrics judge the capacity (latency and queue) and give the default load."""
    load: MetricSource = field(default_factory=MetricSource)
    """The series forecast, in the capacity's unit: a preset or the spec's own PromQL (one series);
    neither means the server's default preset for the capacity unit (prompt tokens/s or requests/s)."""

    @property
    def forecast_quantile(self) -> float:
        return DEFAULT_QUANTILE if self.quantile is None else self.quantile


def parse_forecast(raw: Mapping[str, Any] | None) -> ForecastSpec | None:
    """``None`` when the section is absent; raises :class:`SpecError` (``InvalidForecast``) on a bad one."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(INVALID, "forecast must be an object")
    default = ForecastSpec()
    capacity_raw = raw.get("capacity") or {}
    slo_raw = raw.get("slo") or {}
    problems = []
    try:
        load = parse_metric_source(raw.get("load") or {}, "load", INVALID, required=False)
    except SpecError as exc:
        problems.append(exc.message)
        load = MetricSource()
    try:
        unit = str(capacity_raw.get("unit", default.capacity.unit))
        per_replica = capacity_raw.get("perReplica")
        spec = ForecastSpec(
            quantile=None if raw.get("quantile") is None else float(raw["quantile"]),
            lead_time_s=float(raw.get("leadTimeSeconds", default.lead_time_s)),
            refit_interval_s=float(raw.get("refitIntervalSeconds", default.refit_interval_s)),
            step_s=int(raw.get("stepSeconds", default.step_s)),
            history_s=float(raw.get("historySeconds", default.history_s)),
            model=str(raw.get("model", default.model)),  # type: ignore[arg-type]  # checked below
            capacity=CapacitySpec(
                unit=unit,  # type: ignore[arg-type]  # checked below
                per_replica=None if per_replica is None else float(per_replica),
                target_utilization=float(capacity_raw.get("targetUtilization", default.capacity.target_utilization)),
            ),
            slo=SloSpec(
                ttft_s=float(slo_raw.get("ttftSeconds", default.slo.ttft_s)),
                tpot_s=float(slo_raw.get("tpotSeconds", default.slo.tpot_s)),
                attainment=float(slo_raw.get("attainment", default.slo.attainment)),
            ),
            server=str(raw.get("server", default.server)),  # type: ignore[arg-type]  # checked below
            load=load,
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(INVALID, f"malformed forecast: {exc}") from exc
    problems += _problems(spec)
    if problems:
        raise SpecError(INVALID, "; ".join(problems))
    return spec


def _problems(spec: ForecastSpec) -> list[str]:
    """What is wrong across the fields of a parsed ``spec.forecast``; empty when nothing is."""
    problems = []
    if spec.server not in SERVERS:
        problems.append(f"server {spec.server!r} is not one of {', '.join(SERVERS)}")
    elif spec.capacity.unit not in SERVERS[spec.server].load and not (spec.load.query or spec.load.preset):
        problems.append(
            f"{spec.server} exports no counter for {spec.capacity.unit}: use another capacity.unit or a load.query"
        )
    if spec.quantile is not None and not 0.5 <= spec.quantile < 1:
        problems.append(f"quantile {spec.quantile} must be in [0.5, 1)")
    if not 0.5 <= spec.slo.attainment < 1:
        problems.append(f"slo.attainment {spec.slo.attainment} must be in [0.5, 1)")
    if spec.model not in FORECAST_MODELS:
        problems.append(f"model {spec.model!r} is not one of {', '.join(FORECAST_MODELS)}")
    if spec.capacity.unit not in CAPACITY_UNITS:
        problems.append(f"capacity.unit {spec.capacity.unit!r} is not one of {', '.join(CAPACITY_UNITS)}")
    if spec.capacity.per_replica is not None and not spec.capacity.per_replica > 0:
        problems.append("capacity.perReplica must be > 0")
    if not 0 < spec.capacity.target_utilization <= 1:
        problems.append("capacity.targetUtilization must be in (0, 1]")
    if spec.refit_interval_s < spec.step_s:
        problems.append("refitIntervalSeconds must be at least stepSeconds")
    if spec.history_s < 4 * spec.step_s:
        problems.append("historySeconds must cover at least 4 steps")
    if not (spec.lead_time_s >= 0 and spec.slo.ttft_s > 0 and spec.slo.tpot_s > 0):
        problems.append("leadTimeSeconds must be >= 0 and the SLO targets > 0")
    return problems
