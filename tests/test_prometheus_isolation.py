"""One policy's Prometheus trouble stays that policy's: deadlines per request, backoff per cause, cache per credentials.

Issue 12, finding 2: a slow-drip answer outlived its timeout many times over (the timeout was per
socket read), one slow query or one bad token backed off every policy reading that Prometheus, and
a policy without a token received the value another policy had read with one. Each test here sets
up one misbehaving endpoint (``tests/harness/faults.py``) next to a healthy one and checks that the
healthy reads are untouched.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec
from tests.harness.faults import Answer, Drip, FaultyPrometheus, RecordedRequest, Refuse, Stall, by_token


class FakeClock:
    """Time for the pool's cache and backoff, moved by the test instead of slept through."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
async def test_a_drip_ends_at_the_timeout(headers: bool) -> None:
    # ~100 bytes, one every 0.2 s: 20 s to the end, though no single read waits even 0.3 s.
    with FaultyPrometheus(Drip(every_s=0.2, headers=headers)) as drip:
        pool = PrometheusPool()
        started = time.monotonic()
        with pytest.raises(MetricError) as caught:
            await pool.query(PrometheusSpec(url=drip.url, timeout_s=1.0), Credentials(), "up")
        elapsed = time.monotonic() - started
    assert caught.value.reason == "Timeout"
    assert elapsed < 1.5, f"the whole request is bounded by its timeout, took {elapsed:.1f}s"


async def test_one_slow_query_does_not_back_off_the_other_queries() -> None:
    def route(request: RecordedRequest) -> Stall | Answer:
        return Stall(30.0) if request.query == "heavy" else Answer(3.0)

    clock = FakeClock()
    with FaultyPrometheus(route) as server:
        pool = PrometheusPool(clock=clock)
        spec = PrometheusSpec(url=server.url, timeout_s=0.5)
        with pytest.raises(MetricError) as caught:
            await pool.query(spec, Credentials(), "heavy")
        assert caught.value.reason == "Timeout"
        assert await pool.query(spec, Credentials(), "light") == 3.0, "another policy's query is not backed off"
        with pytest.raises(MetricError) as caught:
            await pool.query(spec, Credentials(), "heavy")
        assert caught.value.reason == "BackingOff", "the slow query itself waits before it is sent again"
        assert [r.query for r in server.requests] == ["heavy", "light"]


async def test_a_bad_token_is_that_policys_error_only() -> None:
    clock = FakeClock()
    with FaultyPrometheus(by_token({"good": Answer(5.0)}, default=Refuse(401))) as server:
        pool = PrometheusPool(clock=clock)
        spec = PrometheusSpec(url=server.url, timeout_s=2.0)
        with pytest.raises(MetricError) as caught:
            await pool.query(spec, Credentials(bearer_token="expired"), "sum(a)")
        assert caught.value.reason == "Unauthorized"
        assert await pool.query(spec, Credentials(bearer_token="good"), "sum(b)") == 5.0


async def test_cached_values_are_not_shared_across_credentials() -> None:
    clock = FakeClock()
    with FaultyPrometheus(by_token({"tenant-a": Answer(42.0)}, default=Refuse(403, "forbidden"))) as server:
        pool = PrometheusPool(clock=clock)
        spec = PrometheusSpec(url=server.url, timeout_s=2.0)
        assert await pool.query(spec, Credentials(bearer_token="tenant-a"), "sum(secret_load)") == 42.0
        for other in (Credentials(), Credentials(bearer_token="tenant-b")):
            with pytest.raises(MetricError) as caught:
                await pool.query(spec, other, "sum(secret_load)")
            assert caught.value.reason == "Unauthorized", "read with its own credentials, refused"
        assert server.tokens_seen() == {"Bearer tenant-a", None, "Bearer tenant-b"}
        # Identical credentials still share one request per coalescing window.
        again = await asyncio.gather(
            *(pool.query(spec, Credentials(bearer_token="tenant-a"), "sum(secret_load)") for _ in range(10))
        )
        assert again == [42.0] * 10 and len(server.requests) == 3


async def test_a_range_too_heavy_to_answer_backs_off_for_the_next_cycles_range_too() -> None:
    clock = FakeClock()
    with FaultyPrometheus(Stall(30.0)) as server:
        pool = PrometheusPool(clock=clock)
        spec = PrometheusSpec(url=server.url, timeout_s=0.5)
        with pytest.raises(MetricError) as caught:
            await pool.range_query(spec, Credentials(), "sum(heavy)", start=0, end=3600, step_s=15)
        assert caught.value.reason == "Timeout"
        clock.now += 1.0  # the next cycle asks for a range one step later
        with pytest.raises(MetricError) as caught:
            await pool.range_query(spec, Credentials(), "sum(heavy)", start=15, end=3615, step_s=15)
        assert caught.value.reason == "BackingOff"
        assert len(server.requests) == 1
