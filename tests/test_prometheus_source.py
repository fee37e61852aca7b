"""Reading metrics from real Prometheus: one value or a clear error, shared queries, backoff and recovery."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec
from controller.scaling.observe import LOAD_AGE, predictive_queries, read_instant
from controller.scaling.spec import parse_scaling_policy
from devtools.prometheus_server import Prometheus, free_port
from tests.harness.exporter import Exporter
from tests.harness.series import spec_for, two_pod_gauge


class FakeClock:
    """Time for the pool's cache and backoff, moved by the test instead of slept through."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def series(exporter: Exporter, prometheus: Prometheus) -> str:
    """A gauge name unique to the test, exposed for two pods and already scraped."""
    return two_pod_gauge(exporter, prometheus, "infercast_test", "count({name}) == 2")


async def test_reads_a_single_value(series: str, prometheus: Prometheus) -> None:
    pool = PrometheusPool()
    assert await pool.query(spec_for(prometheus), Credentials(), f"sum({series})") == pytest.approx(7.5)


@pytest.mark.parametrize(
    ("template", "reason", "rejected"),
    [
        pytest.param("sum({name}{{pod='nobody'}})", "NoData", False, id="empty"),
        pytest.param("{name}", "AmbiguousResult", False, id="two-series"),
        pytest.param("sum({name}) / 0 - sum({name}) / 0", "InvalidValue", False, id="nan"),
        pytest.param("sum({name}) / 0", "InvalidValue", False, id="inf"),
        pytest.param("sum(rate({name}[1m])", "QueryRejected", True, id="syntax-error"),
    ],
)
async def test_nothing_is_read_as_zero(
    series: str, prometheus: Prometheus, template: str, reason: str, rejected: bool
) -> None:
    pool = PrometheusPool()
    with pytest.raises(MetricError) as caught:
        await pool.query(spec_for(prometheus), Credentials(), template.format(name=series))
    assert caught.value.reason == reason
    assert caught.value.rejected is rejected


async def test_several_values_in_one_request_each_fail_alone(series: str, prometheus: Prometheus) -> None:
    """What each query would have read (or why not) on its own, in one request: the predictive
    policies' server signals, seven per cycle."""
    pool = PrometheusPool()
    queries = {
        "total": f"sum({series})",
        "largest": f"max({series}) * 2",
        "empty": f"sum({series}{{pod='nobody'}})",
        "two": series,
        "nan": f"sum({series}) / 0 - sum({series}) / 0",
    }

    values = await pool.query_each(spec_for(prometheus), Credentials(), queries)

    assert pool.requests_sent == 1
    alone = {name: await _value_or_reason(pool, spec_for(prometheus), promql) for name, promql in queries.items()}
    assert {name: v.reason if isinstance(v, MetricError) else v for name, v in values.items()} == alone
    assert alone["total"] == pytest.approx(7.5)
    assert [alone[name] for name in ("empty", "two", "nan")] == ["NoData", "AmbiguousResult", "InvalidValue"]


async def _value_or_reason(pool: PrometheusPool, spec: PrometheusSpec, promql: str) -> float | str:
    try:
        return await pool.query(spec, Credentials(), promql)
    except MetricError as exc:
        return exc.reason


async def test_a_rejected_union_fails_every_value(series: str, prometheus: Prometheus) -> None:
    pool = PrometheusPool()
    with pytest.raises(MetricError) as caught:
        await pool.query_each(spec_for(prometheus), Credentials(), {"ok": f"sum({series})", "bad": f"sum({series}"})
    assert caught.value.rejected


async def test_a_cycles_preset_queries_are_one_request_and_the_specs_own_one_each(
    series: str, exporter: Exporter, prometheus: Prometheus
) -> None:
    """A predictive cycle's instant queries: a preset metric's value and freshness, the load's
    freshness and the server's signals in one request; each query of the spec's own alone."""
    run = f"t{secrets.token_hex(4)}"  # the labels vLLM's series have on the session's exporter
    exporter.set_gauge("vllm:num_requests_waiting", 6.0, model_name="m", namespace=run, pod="a")
    prometheus.wait_for_series(f'vllm:num_requests_waiting{{namespace="{run}"}}', timeout=20)
    target = {"type": "AverageValue", "value": 4}
    spec = parse_scaling_policy(
        {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
            "minReplicas": 1,
            "maxReplicas": 8,
            "prometheus": {"url": prometheus.url},
            "metrics": [
                {
                    "name": "waiting",
                    "preset": "vllm-requests-waiting",
                    "labelSelector": f'namespace="{run}"',
                    "target": target,
                },
                {"name": "own", "query": f"sum({series})", "target": target},
            ],
            "forecast": {"capacity": {"unit": "RequestsPerSecond", "perReplica": 100}},
        }
    )
    assert spec.forecast is not None
    pool = PrometheusPool()
    try:
        reads = await read_instant(pool, "nobody", spec, Credentials())
    finally:
        await pool.close()
    assert [(r.value, r.error) for r in reads.metrics] == [(6.0, None), (7.5, None)]
    assert pool.requests_sent == 2, "the presets' union, then the spec's own query"
    signals = predictive_queries("nobody", spec, spec.forecast).signals()
    assert set(reads.predictive) == {*signals, LOAD_AGE}
    assert all(isinstance(v, MetricError) and v.reason == "NoData" for v in reads.predictive.values())


async def test_identical_queries_are_sent_once_per_cycle(series: str, prometheus: Prometheus) -> None:
    clock = FakeClock()
    pool = PrometheusPool(coalesce_s=4.0, clock=clock)
    spec = spec_for(prometheus)
    values = await asyncio.gather(*(pool.query(spec, Credentials(), f"sum({series})") for _ in range(50)))
    assert set(values) == {7.5}
    assert pool.requests_sent == 1, "50 concurrent identical queries share one request"
    await pool.query(spec, Credentials(), f"max({series})")
    assert pool.requests_sent == 2, "a different expression is its own request"
    clock.now += 5.0
    await pool.query(spec, Credentials(), f"sum({series})")
    assert pool.requests_sent == 3, "after the coalescing window the value is read again"


async def test_expired_answers_leave_the_cache_within_one_coalescing_window(
    series: str, prometheus: Prometheus
) -> None:
    clock = FakeClock()
    pool = PrometheusPool(coalesce_s=4.0, clock=clock)
    spec = spec_for(prometheus)
    await pool.query(spec, Credentials(), f"sum({series})")
    clock.now += 5.0
    await pool.query(spec, Credentials(), f"max({series})")
    kept = [promql for promql in (f"sum({series})", f"max({series})") if any(promql in key for key in pool._cache)]
    assert kept == [f"max({series})"], "the expired answer is gone, not kept until a size limit"


async def test_an_unreachable_prometheus_backs_off_and_recovers(series: str, prometheus: Prometheus) -> None:
    clock = FakeClock()
    pool = PrometheusPool(backoff_base_s=2.0, backoff_cap_s=8.0, clock=clock)
    dead = PrometheusSpec(url=f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(MetricError) as caught:
        await pool.query(dead, Credentials(), f"sum({series})")
    assert caught.value.reason == "Unreachable"
    with pytest.raises(MetricError) as caught:
        await pool.query(dead, Credentials(), f"max({series})")
    assert caught.value.reason == "BackingOff", "other queries to the same URL fail fast during the backoff"
    assert pool.requests_sent == 1
    delays = []
    for _ in range(4):
        retry_at = pool._backoff[dead.url].retry_at
        delays.append(retry_at - clock.now)
        clock.now = retry_at
        with pytest.raises(MetricError, match="cannot reach"):
            await pool.query(dead, Credentials(), f"sum({series})")
    assert delays == [2.0, 4.0, 8.0, 8.0], "exponential, capped"
    # The same pool recovers as soon as the URL answers again (here: the real server's URL).
    healthy = await pool.query(spec_for(prometheus), Credentials(), f"sum({series})")
    assert healthy == pytest.approx(7.5)


class FakePrometheus:
    """Something on a loopback port that is not a healthy Prometheus: slow, or answering garbage."""

    def __init__(self, *, delay_s: float = 0.0, body: bytes = b"{}", content_type: str = "application/json") -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if outer.release.wait(delay_s):  # the test may end a slow answer early
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.requests = 0
        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


async def test_a_slow_prometheus_times_out_and_backs_off() -> None:
    clock = FakeClock()
    with FakePrometheus(delay_s=5.0) as slow:
        pool = PrometheusPool(clock=clock)
        spec = PrometheusSpec(url=slow.url, timeout_s=0.5)
        with pytest.raises(MetricError) as caught:
            await pool.query(spec, Credentials(), "up")
        assert caught.value.reason == "Timeout"
        with pytest.raises(MetricError) as caught:
            await pool.query(spec, Credentials(), "up")
        assert caught.value.reason == "BackingOff"
        assert slow.requests == 1, "no second request while backing off"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"<html>a login page</html>", "text/html", id="html"),
        pytest.param(b'{"status": "success", "data": {"resultType": "vector"}}', "application/json", id="no-result"),
        pytest.param(b'{"status":"success","data":{"result":[{"value":[1,"many"]}]}}', "application/json", id="nan"),
    ],
)
async def test_garbage_is_an_error_not_a_number(body: bytes, content_type: str) -> None:
    with FakePrometheus(body=body, content_type=content_type) as fake:
        pool = PrometheusPool()
        with pytest.raises(MetricError) as caught:
            await pool.query(PrometheusSpec(url=fake.url, timeout_s=2.0), Credentials(), "up")
        assert caught.value.reason in ("BadResponse", "InvalidValue")
