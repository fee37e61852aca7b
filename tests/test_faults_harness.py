"""The fault-injecting Prometheus (tests/harness/faults.py) misbehaves exactly as told, and records what it got."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.faults import (
    Answer,
    Drip,
    FaultyPrometheus,
    Forward,
    Garbage,
    Refuse,
    Reset,
    Stall,
    by_token,
)
from tests.harness.polling import wait_until


def get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_answers_a_vector_and_a_matrix_as_prometheus_does() -> None:
    with FaultyPrometheus(Answer(2.5, {"pod": "a"})) as server:
        status, body = get(f"{server.url}/api/v1/query?query=up")
        assert status == 200
        assert json.loads(body)["data"]["result"][0]["metric"] == {"pod": "a"}
        assert json.loads(body)["data"]["result"][0]["value"][1] == "2.5"
        status, body = get(f"{server.url}/api/v1/query_range?query=up&start=100&end=160&step=15s")
        values = json.loads(body)["data"]["result"][0]["values"]
        assert [t for t, _ in values] == [100, 115, 130, 145, 160]


def test_a_drip_takes_as_long_as_its_bytes_whatever_the_read_timeout() -> None:
    with FaultyPrometheus(Drip(every_s=0.01)) as server:
        started = time.monotonic()
        status, body = get(f"{server.url}/api/v1/query?query=up", timeout=0.5)
        elapsed = time.monotonic() - started
    assert status == 200 and json.loads(body)["status"] == "success"
    assert elapsed >= 0.01 * len(body), "each byte came after its pause"


def test_refusals_carry_a_prometheus_error_body_and_routes_pick_by_token() -> None:
    route = by_token({"good": Answer(1.0), None: Refuse(401)}, default=Refuse(403, "forbidden", "no"))
    with FaultyPrometheus(route) as server:
        assert get(f"{server.url}/api/v1/query?query=up", "good")[0] == 200
        status, body = get(f"{server.url}/api/v1/query?query=up")
        assert (status, json.loads(body)["errorType"]) == (401, "unauthorized")
        status, body = get(f"{server.url}/api/v1/query?query=up", "stolen")
        assert (status, json.loads(body)) == (403, {"status": "error", "errorType": "forbidden", "error": "no"})
        assert server.tokens_seen() == {"Bearer good", None, "Bearer stolen"}
        assert [r.query for r in server.requests] == ["up"] * 3


def test_garbage_reset_and_a_behaviour_changed_while_running() -> None:
    with FaultyPrometheus(Garbage(b"not json", "text/plain", 200)) as server:
        assert get(f"{server.url}/api/v1/query?query=up") == (200, b"not json")
        server.behave(Reset())
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
            get(f"{server.url}/api/v1/query?query=up")


def test_counts_requests_in_flight_and_ends_stalls_on_stop() -> None:
    server = FaultyPrometheus(Stall(0.3)).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: get(f"{server.url}/api/v1/query?query=up")[0], range(4)))
        assert statuses == [200] * 4
        assert server.max_in_flight == 4
        wait_until(lambda: server.in_flight == 0)  # a handler may still be closing after its client has read
        server.behave(Stall(3600.0))
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(get, f"{server.url}/api/v1/query?query=up", None, 30.0)
            wait_until(lambda: server.in_flight == 1)  # inside the stall before the stop
            started = time.monotonic()
            server.stop()
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
                pending.result()
            assert time.monotonic() - started < 5.0
    finally:
        server.stop()


def test_forwards_to_an_upstream() -> None:
    with FaultyPrometheus(Answer(7.0)) as upstream, FaultyPrometheus(Forward(upstream.url)) as proxy:
        status, body = get(f"{proxy.url}/api/v1/query?query=up")
        assert (status, json.loads(body)["data"]["result"][0]["value"][1]) == (200, "7.0")
        assert [r.query for r in upstream.requests] == ["up"]
