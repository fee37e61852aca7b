"""Forecasting-planner baselines: the approach of NVIDIA Dynamo's throughput planner, on our fleet model.

Dynamo's planner (aggregated mode) works in planning intervals (180 s by default): at the end of
one it reads the interval's request count and mean input and output lengths from the frontend's
metrics, predicts each for the next interval with one predictor
(:mod:`controller.backtest.load_predictors`: constant, ARIMA, Kalman or Prophet), and sets

    replicas = ceil(predicted requests/s / engine_rps(predicted ISL, OSL))

where ``engine_rps`` is the highest request rate one engine sustains within the TTFT and ITL
targets, from a profile of the engine made before deployment. So: a point forecast of the next
interval, divided by a fixed per-replica capacity, with no quantile and no lead time (a replica
asked for now serves only after its cold start).

Our profile (:func:`engine_rps`) is what Dynamo's pre-deployment profiling measures, made on the
backtest's own engine model: the highest Poisson request rate at which one replica serving
requests of exactly that ISL and OSL keeps its mean TTFT and mean TPOT within the SLO (Dynamo's
planner compares averages), found by bisection and cached per ISL/OSL bucket. It knows the
engine exactly, which Dynamo's profile approximates: the baseline's misses come from its method,
not from a poor profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from controller.backtest.engine import EngineParams, Finished, FirstToken, FleetEngine, Request
from controller.backtest.load_predictors import LoadPredictor, PredictorName, make_predictor
from controller.backtest.simulate import FleetView, Observations

#: Dynamo's default planning interval (``throughput_adjustment_interval``), seconds.
INTERVAL_S = 180.0
#: Length of one profiling run, simulated seconds, and the bisection's steps.
PROFILE_S = 300.0
PROFILE_STEPS = 12
#: ISL and OSL are profiled on a grid of quarter powers of two (a profile's interpolation grid).
BUCKETS_PER_OCTAVE = 4


def _bucket(tokens: float) -> int:
    """The grid point nearest ``tokens`` (at least one token)."""
    return max(1, round(2 ** (round(BUCKETS_PER_OCTAVE * math.log2(max(tokens, 1.0))) / BUCKETS_PER_OCTAVE)))


@lru_cache(maxsize=1024)
def _profiled_rps(params: EngineParams, isl: int, osl: int, ttft_slo_s: float, tpot_slo_s: float) -> float:
    def within_slo(rate: float) -> bool:
        rng = np.random.default_rng(0)
        arrivals = np.cumsum(rng.exponential(1.0 / rate, size=max(1, int(rate * PROFILE_S))))
        engine = FleetEngine(params, initial_replicas=1)
        events = engine.advance(float(arrivals[-1]), [Request(float(t), isl, osl) for t in arrivals])
        events += engine.advance(engine.now_s + 3600.0)
        ttft = [e.ttft_s for e in events if isinstance(e, FirstToken)]
        first = {id(e.request): e.ttft_s for e in events if isinstance(e, FirstToken)}
        tpot = [(e.e2e_s - first[id(e.request)]) / (osl - 1) for e in events if isinstance(e, Finished) and osl > 1]
        return float(np.mean(ttft)) <= ttft_slo_s and (not tpot or float(np.mean(tpot)) <= tpot_slo_s)

    low, high = 0.0, params.prefill_tokens_per_s / isl  # the prefill rate bounds any sustainable rate
    for _ in range(PROFILE_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if within_slo(middle) else (low, middle)
    return float(max(low, high / 2**PROFILE_STEPS))


def engine_rps(params: EngineParams, isl: float, osl: float, ttft_slo_s: float, tpot_slo_s: float) -> float:
    """Requests/s one replica sustains within the SLO (mean TTFT and TPOT) at this ISL and OSL."""
    return _profiled_rps(params, _bucket(isl), _bucket(osl), ttft_slo_s, tpot_slo_s)


@dataclass
class PlannerBaseline:
    """Dynamo's throughput planner: next-interval point forecast / profiled per-replica rate."""

    predictor: PredictorName
    params: EngineParams
    ttft_slo_s: float = 2.0
    tpot_slo_s: float = 0.05
    interval_s: float = INTERVAL_S
    min_replicas: int = 1
    max_replicas: int = 64
    requests: LoadPredictor = field(init=False)
    isl: LoadPredictor = field(init=False)
    osl: LoadPredictor = field(init=False)

    def __post_init__(self) -> None:
        self.requests, self.isl, self.osl = (make_predictor(self.predictor, self.interval_s) for _ in range(3))

    @property
    def name(self) -> str:
        return f"dynamo-{self.predictor}"

    def decide(self, now: float, observations: Observations, fleet: FleetView) -> int:
        start = now - self.interval_s
        arrivals = observations.mean("arrivals", start, now)
        if arrivals is None:
            return fleet.desired
        prompt = observations.mean("prompt_tokens", start, now) or 0.0
        finished = observations.mean("finished", start, now) or 0.0
        generated = observations.mean("generated_tokens", start, now) or 0.0
        self.requests.add(arrivals * self.interval_s)
        if arrivals > 0:
            self.isl.add(prompt / arrivals)
        if finished > 0:
            self.osl.add(generated / finished)
        demand = self.requests.predict_next() / self.interval_s
        isl, osl = self.isl.predict_next(), self.osl.predict_next()
        if demand <= 0 or isl <= 0 or osl <= 0:
            return max(self.min_replicas, min(fleet.desired, self.max_replicas))
        wanted = math.ceil(demand / engine_rps(self.params, isl, osl, self.ttft_slo_s, self.tpot_slo_s))
        return min(max(wanted, self.min_replicas), self.max_replicas)
