"""Warming a traffic policy's detectors from Prometheus history, so that they score from the first cycle."""

from __future__ import annotations

import random
from typing import cast

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool, RangeSamples
from controller.clients.refs import PrometheusSpec, TargetRef
from controller.traffic.signals import (
    DETECTED,
    WARMUP_POINTS,
    WARMUP_S,
    SignalMemory,
    SignalSource,
    warm_up,
)
from controller.traffic.spec import BackendSpec

NOW = 1_700_000_000.0
BACKEND = BackendSpec("h100", TargetRef("apps/v1", "Deployment", "vllm-h100"), subset="h100")
PROMETHEUS = PrometheusSpec(url="http://prometheus:9090")


def backend_queries() -> dict[str, str]:
    """The PromQL per signal the warm-up reads for BACKEND in namespace ``ns`` over a 1-minute window."""
    return SignalSource(cast(PrometheusPool, None), PROMETHEUS, Credentials(), "ns", "1m", "5s").queries(BACKEND)


def calm(start: float, step: float, points: int, level: float, noise: float, seed: int = 1) -> RangeSamples:
    rng = random.Random(seed)
    times = tuple(start + i * step for i in range(points))
    return RangeSamples(step, times, tuple(level + rng.uniform(-noise, noise) for _ in times))


class RecordingPool:
    """Answers range queries from canned history by signal; records what was asked."""

    def __init__(self, histories: dict[str, RangeSamples | MetricError]) -> None:
        self.by_query = {backend_queries()[m]: h for m, h in histories.items()}
        self.asked: list[tuple[str, float, float, float]] = []

    async def range_query(
        self, spec: PrometheusSpec, credentials: Credentials, promql: str, *, start: float, end: float, step_s: float
    ) -> RangeSamples:
        self.asked.append((promql, start, end, step_s))
        answer = self.by_query.get(promql, MetricError("NoData", "no series"))
        if isinstance(answer, MetricError):
            raise answer
        return answer


async def warm(memory: SignalMemory, pool: RecordingPool, interval_s: int = 5) -> None:
    # A duck-typed fake pool: it answers the range queries a warm-up makes.
    source = SignalSource(cast(PrometheusPool, pool), PROMETHEUS, Credentials(), "ns", "1m", "5s")
    await warm_up(source, BACKEND, memory, interval_s, NOW)


async def test_a_warmed_detector_scores_a_failure_at_once_where_a_cold_one_cannot() -> None:
    history = calm(NOW - WARMUP_POINTS * 5, 5, WARMUP_POINTS, level=0.3, noise=0.03)
    warmed, cold = SignalMemory(), SignalMemory()
    await warm(warmed, RecordingPool({"ttft_s": history}))
    failing: dict[str, float | None] = {"ttft_s": 2.5}
    score = warmed.score("h100", NOW, failing, 5)
    assert score is not None and score >= 0.5, "the learned baseline makes 2.5 s an alert"
    assert cold.score("h100", NOW, failing, 5) == 0.0, "a cold detector has nothing to compare with"


async def test_calm_live_points_after_the_history_stay_calm() -> None:
    memory = SignalMemory()
    history = calm(NOW - WARMUP_POINTS * 5, 5, WARMUP_POINTS, level=0.3, noise=0.03)
    await warm(memory, RecordingPool({"ttft_s": history}))
    live = calm(NOW, 5, 30, level=0.3, noise=0.03, seed=2)
    scores = [memory.score("h100", t, {"ttft_s": v}, 5) for t, v in zip(live.times, live.values, strict=True)]
    assert max(s for s in scores if s is not None) < 0.5


async def test_one_bounded_range_query_per_signal_once_per_backend() -> None:
    pool = RecordingPool({"error_rate": calm(NOW - 100, 5, 20, 0.01, 0.005)})
    memory = SignalMemory()
    for interval_s in (5, 60):
        memory.warmed.clear()
        pool.asked.clear()
        await warm(memory, pool, interval_s)
        queries = backend_queries()
        assert sorted(q for q, *_ in pool.asked) == sorted(queries[m] for m in (*DETECTED, "request_rate"))
        span = min(WARMUP_POINTS * interval_s, WARMUP_S)
        assert {(start, end, step) for _, start, end, step in pool.asked} == {(NOW - span, NOW, interval_s)}
    pool.asked.clear()
    await warm(memory, pool)
    assert pool.asked == [], "warmed once per backend: a second cycle asks nothing"


async def test_history_seeds_the_rate_forecast_and_missing_history_leaves_detectors_cold() -> None:
    rates = calm(NOW - 50 * 5, 5, 50, 40.0, 2.0)
    memory = SignalMemory()
    await warm(memory, RecordingPool({"request_rate": rates, "latency_ms": MetricError("Unreachable", "down")}))
    assert list(memory.rates["h100"]) == list(zip(rates.times, rates.values, strict=True))
    assert memory.detectors == {}, "no detector history was found: they start when live points come"


async def test_an_outage_defers_the_warm_up_until_prometheus_answers() -> None:
    down = MetricError("Unreachable", "cannot reach Prometheus")
    memory = SignalMemory()
    outage = RecordingPool({m: down for m in (*DETECTED, "request_rate")})
    await warm(memory, outage)
    assert "h100" not in memory.warmed and memory.detectors == {}
    history = calm(NOW - WARMUP_POINTS * 5, 5, WARMUP_POINTS, level=0.3, noise=0.03)
    await warm(memory, RecordingPool({"ttft_s": history}))
    assert "h100" in memory.warmed
    score = memory.score("h100", NOW, {"ttft_s": 2.5}, 5)
    assert score is not None and score >= 0.5, "the history read after the outage was replayed"


async def test_no_retry_once_live_points_were_learned_or_prometheus_answered() -> None:
    down = MetricError("Unreachable", "cannot reach Prometheus")
    learned = SignalMemory()
    learned.score("h100", NOW - 5, {"ttft_s": 0.3}, 5)
    await warm(learned, RecordingPool({m: down for m in (*DETECTED, "request_rate")}))
    assert "h100" in learned.warmed, "history older than a learned live point would be fed out of order"
    answered = SignalMemory()
    await warm(answered, RecordingPool({}))  # every signal: NoData, a real answer
    assert "h100" in answered.warmed
