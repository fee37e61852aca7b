"""Requests per Prometheus endpoint are capped, connections are reused, and one endpoint's queue is its own.

The cap bounds what one endpoint takes of the operator's sockets and asks of Prometheus at once;
reuse spares a TCP (and TLS) handshake per query at scale. The queue of a slow endpoint
must not delay queries to another one, and a query that waited for a connection past its deadline
was never sent, so it backs nothing off.
"""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec
from tests.harness.faults import Answer, FaultyPrometheus, Stall

PARALLEL = 16


@pytest.mark.parametrize("cap", [PARALLEL, 4])
async def test_parallel_queries_stay_within_the_cap_and_reuse_connections(cap: int) -> None:
    with FaultyPrometheus(Stall(0.2, Answer(1.0))) as server:
        pool = PrometheusPool(max_connections=cap)
        spec = PrometheusSpec(url=server.url, timeout_s=5.0)
        values = []
        for round_ in range(2):  # the second round reuses the connections of the first
            values += await asyncio.gather(
                *(pool.query(spec, Credentials(), f"up{{round='{round_}',n='{i}'}}") for i in range(PARALLEL))
            )
        await pool.close()
    assert values == [1.0] * 2 * PARALLEL
    assert server.max_in_flight == cap
    assert server.connections == cap, "one connection per slot, kept open across rounds"


async def test_a_saturated_endpoint_does_not_delay_another() -> None:
    with FaultyPrometheus(Stall(30.0)) as slow, FaultyPrometheus(Answer(2.0)) as fast:
        pool = PrometheusPool(max_connections=2)
        stuck = PrometheusSpec(url=slow.url, timeout_s=1.0)
        waiting = [asyncio.create_task(pool.query(stuck, Credentials(), f"q{i}")) for i in range(6)]
        await asyncio.sleep(0)  # let them queue
        started = time.monotonic()
        assert await pool.query(PrometheusSpec(url=fast.url, timeout_s=1.0), Credentials(), "up") == 2.0
        assert time.monotonic() - started < 0.5
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        await pool.close()
    assert all(isinstance(o, MetricError) and o.reason == "Timeout" for o in outcomes)
    # The cap's worth leaves the queue first; a queued query whose deadline is a moment later than
    # theirs may still take a freed slot before it expires (the six deadlines are microseconds to
    # milliseconds apart), and one that left the queue may expire before its request arrives, so
    # exact counts are timing. What is not: a query reported as never having left the queue was
    # never sent, and the last ones in the queue never left it.
    left_the_queue = len(outcomes) - sum("stayed busy" in str(o) for o in outcomes)
    assert len(slow.requests) <= left_the_queue < len(outcomes)
    assert left_the_queue >= 2 and len(slow.requests) >= 1
    assert "stayed busy" in str(outcomes[-1]), "a query that never left the queue says so"


async def test_the_environment_proxy_is_honoured_and_no_netrc_login_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """HTTP_PROXY and NO_PROXY are read once per host, not at every request, and still followed: a
    host only the proxy reaches is read through it, an exempt one directly. The operator's
    ``~/.netrc`` login for a host is never sent there: a policy names the host, and its only
    credentials are its own Secrets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ops password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with FaultyPrometheus(Answer(3.0)) as proxy, FaultyPrometheus(Answer(5.0)) as direct:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        pool = PrometheusPool()
        hidden = PrometheusSpec(url="http://prometheus.invalid:9090", timeout_s=5.0)
        exempt = PrometheusSpec(url=direct.url, timeout_s=5.0)
        values = [await pool.query(hidden, Credentials(), f"up{{n='{i}'}}") for i in range(2)]
        values += [await pool.query(exempt, Credentials(), f"up{{n='{i}'}}") for i in range(2)]
        await pool.query(exempt, Credentials(bearer_token="policy-token"), "up{n='token'}")
        await pool.close()
    assert values == [3.0, 3.0, 5.0, 5.0]
    assert [r.query for r in proxy.requests] == ["up{n='0'}", "up{n='1'}"]
    assert [r.authorization for r in direct.requests][-1] == "Bearer policy-token"
    assert not any(r.authorization for r in direct.requests[:-1]), "the netrc login stays home"
