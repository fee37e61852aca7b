"""The traffic simulator's proxy rules on hand-made scenarios: faults, ejection, pool, timeouts, retries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.backtest.traffic.draws import ERROR_STREAM, draw
from controller.backtest.traffic.proxy import ProxyParams
from controller.backtest.traffic.simulator import Ejection
from tests.harness.traffic_backtest import every, scenario, simulate, trace

STEP_1 = 0.012 + 0.00012
TWO_HOSTS = ({"name": "stable", "hosts": 2},)


def _error(p: float, status: int, hosts: list[int] | None = None, **span: float) -> dict[str, object]:
    return {"type": "error", "subset": "stable", "hosts": hosts, "p": p, "status": status, **span}


def test_an_error_fault_fails_the_attempts_its_draw_picks_at_once() -> None:
    arrivals = every(1.0, 200)
    record = simulate(scenario(trace(arrivals), faults=[_error(0.5, 502)], seed=3))
    expected = np.array([draw(3, i, 0, ERROR_STREAM) < 0.5 for i in range(len(arrivals))])
    assert 60 < expected.sum() < 140
    assert np.array_equal(record.status == 502, expected)
    assert np.array_equal(record.status == 200, ~expected)
    assert not record.local.any()
    assert np.isnan(record.ttft_s[expected]).all()
    assert record.faulty.all()


def test_the_largest_p_of_overlapping_error_faults_applies() -> None:
    arrivals = every(1.0, 200)
    faults = [_error(0.3, 500), _error(0.6, 503)]
    record = simulate(scenario(trace(arrivals), faults=faults, seed=4))
    expected = np.array([draw(4, i, 0, ERROR_STREAM) < 0.6 for i in range(len(arrivals))])
    assert np.array_equal(record.status == 503, expected)
    assert not (record.status == 500).any()


def test_a_flapping_fault_is_active_only_in_its_on_spans() -> None:
    arrivals = every(0.5, 80)
    flapping = _error(1.0, 503, start_s=10, end_s=70, on_s=10, every_s=20)
    record = simulate(scenario(trace(arrivals), faults=[flapping]))
    t = np.asarray(arrivals)
    inside = ((t >= 10) & (t < 20)) | ((t >= 30) & (t < 40)) | ((t >= 50) & (t < 60))
    assert np.array_equal(record.status == 503, inside)


OUTLIER = {"consecutive5xxErrors": 1, "interval_s": 10, "baseEjectionTime_s": 30}


@pytest.mark.parametrize(("max_percent", "ejections"), [(0, 0), (10, 1), (50, 2)])
def test_max_ejection_percent_always_lets_a_first_host_out(max_percent: float, ejections: int) -> None:
    subsets = ({"name": "stable", "hosts": 4, **OUTLIER, "maxEjectionPercent": max_percent},)
    record = simulate(scenario(trace(every(0.25, 20)), subsets, faults=[_error(1.0, 500, hosts=[0, 1])]))
    # 10 % of 4 hosts: the first ejection is allowed (0 % < 10 %), a second is not (25 %).
    assert len(record.ejections) == ejections
    assert {e.host for e in record.ejections} <= {0, 1}


def test_ejection_time_grows_with_each_ejection_up_to_the_cap_and_ends_at_a_sweep() -> None:
    subsets = ({"name": "stable", "hosts": 2, **OUTLIER, "maxEjectionPercent": 100},)
    proxy = ProxyParams(max_ejection_time_s=70)
    record = simulate(scenario(trace(every(0.25, 400)), subsets, faults=[_error(1.0, 500, hosts=[0])]), proxy=proxy)
    ejections = [e for e in record.ejections if e.end_s is not None]
    assert len(ejections) >= 4
    assert all(e.host == 0 for e in record.ejections)
    for count, ejection in enumerate(ejections, start=1):
        assert ejection.end_s is not None
        out_until = ejection.start_s + min(30.0 * count, 70.0)
        # Returned by the first sweep (every 10 s from t = 10) at or after the ejection's end.
        assert ejection.end_s == math.ceil(out_until / 10) * 10


def test_an_ejected_host_gets_no_traffic_until_the_sweep_returns_it() -> None:
    subsets = ({"name": "stable", "hosts": 2, **OUTLIER, "maxEjectionPercent": 100},)
    record = simulate(scenario(trace(every(0.25, 100)), subsets, faults=[_error(1.0, 500, hosts=[0])]))
    first = record.ejections[0]
    assert first == Ejection("stable", 0, first.start_s, math.ceil((first.start_s + 30) / 10) * 10)
    assert first.end_s is not None
    arrivals = np.asarray(every(0.25, 100))
    out = (arrivals > first.start_s) & (arrivals < first.end_s)
    assert out.sum() > 100 and (record.status[out] == 200).all()


@pytest.mark.parametrize("panic_threshold", [50.0, 0.0])
def test_panic_routes_to_every_host_when_too_few_are_left(panic_threshold: float) -> None:
    subsets = ({"name": "stable", "hosts": 2, **OUTLIER, "maxEjectionPercent": 100},)
    faults = [_error(1.0, 500)]
    record = simulate(
        scenario(trace(every(0.25, 20)), subsets, faults=faults), proxy=ProxyParams(panic_threshold=panic_threshold)
    )
    assert len(record.ejections) == 2
    assert (record.status != 200).all()
    if panic_threshold:
        assert not record.local.any() and (record.status == 500).all()
    else:
        # No host left to try: the proxy itself answers 503 ("no healthy upstream").
        assert record.local[2:].all() and (record.status[2:] == 503).all()


POOL = {"http2MaxRequests": 1, "http1MaxPendingRequests": 1}


def test_a_full_pending_queue_overflows_with_a_local_503() -> None:
    subsets = ({"name": "stable", "hosts": 1, **POOL},)
    record = simulate(scenario(trace([0.0, 0.25, 0.5], prompt_tokens=12_000), subsets))
    assert record.status.tolist() == [200, 200, 503]
    assert record.local.tolist() == [False, False, True]
    assert record.attempts.tolist() == [1, 1, 1]
    # The second waits for the first stream to end (1 s prefill + one decode step), then prefills 1 s.
    assert record.ttft_s[1] == pytest.approx(1.0 + STEP_1 + 1.0 - 0.25)


def test_raising_the_pool_limit_sends_waiting_attempts_at_once() -> None:
    subsets = ({"name": "stable", "hosts": 1, **POOL},)
    record = simulate(
        scenario(trace([0.0, 0.25], prompt_tokens=12_000), subsets), rows=[(0.5, "stable", "http2MaxRequests", 2)]
    )
    # Sent at 0.5, queued on the host behind the first prefill (until 1.0), prefilled by 2.0.
    assert record.ttft_s[1] == pytest.approx(2.0 - 0.25)


def test_a_change_at_a_faults_start_runs_first() -> None:
    subsets = ({"name": "stable", "hosts": 1, **POOL},)
    fault = _error(1.0, 500, start_s=5.0, end_s=100.0)
    requests = trace([0.0, 1.0, 10.0], prompt_tokens=12_000, output_tokens=1000)
    record = simulate(scenario(requests, subsets, faults=[fault]), rows=[(5.0, "stable", "http2MaxRequests", 2)])
    # The raised limit sends the waiting request before the error fault starts; a later one fails.
    assert record.status.tolist() == [200, 200, 500]


def test_a_new_sweep_interval_takes_effect_after_the_next_sweep() -> None:
    subsets = ({"name": "stable", "hosts": 2, **OUTLIER, "baseEjectionTime_s": 11, "maxEjectionPercent": 100},)
    faulty = _error(1.0, 500, hosts=[0], end_s=0.5)
    rows = [(10.0, "stable", "interval_s", 3)]
    record = simulate(scenario(trace(every(0.25, 20)), subsets, faults=[faulty]), rows=rows)
    # Ejected before 0.5 s until about 11 s; the sweep at 10 s already runs every 3 s.
    assert [e.end_s for e in record.ejections] == [13.0]


def test_a_pending_timeout_is_local_and_never_retried() -> None:
    subsets = ({"name": "stable", "hosts": 1, "http2MaxRequests": 1, "maxRetries": 2, "consecutive5xxErrors": 1},)
    long_stream = trace([0.0, 1.0], prompt_tokens=1200, output_tokens=5000)
    record = simulate(scenario(long_stream, subsets))
    assert record.status.tolist() == [200, 504]
    assert record.local.tolist() == [False, True]
    assert record.attempts.tolist() == [1, 1]
    assert record.ejections == []  # not a host response
    # The first request streams past the timeout: only the first token is timed.
    assert record.ttft_s[0] == pytest.approx(0.1)


def test_a_host_timeout_is_the_hosts_504_retried_and_seen_by_outlier_detection() -> None:
    subsets = ({"name": "stable", "hosts": 1, "maxRetries": 1, "consecutive5xxErrors": 2, "maxEjectionPercent": 100},)
    hang = {"type": "hang", "subset": "stable", "start_s": 0, "end_s": 100}
    record = simulate(scenario(trace([0.0]), subsets, faults=[hang]))
    assert record.status.tolist() == [504]
    assert not record.local[0]
    assert record.attempts.tolist() == [2]
    # Timeouts at 30 s and, after the 25 ms backoff, at 60.025 s: the second ejects the host.
    assert [e.start_s for e in record.ejections] == [pytest.approx(60.025)]


def test_a_retry_avoids_the_hosts_already_tried() -> None:
    subsets = ({"name": "stable", "hosts": 2, "maxRetries": 1},)
    record = simulate(scenario(trace(every(1.0, 100)), subsets, faults=[_error(1.0, 500, hosts=[0])]))
    assert (record.status == 200).all()
    assert np.array_equal(record.attempts == 2, record.faulty)
    assert 10 < record.faulty.sum() < 90


def test_a_retry_goes_back_to_the_only_host() -> None:
    subsets = ({"name": "stable", "hosts": 1, "maxRetries": 1},)
    record = simulate(scenario(trace([0.0]), subsets, faults=[_error(1.0, 500)]))
    assert record.status.tolist() == [500] and record.attempts.tolist() == [2]


def test_a_hang_times_out_waiting_attempts_and_delays_decoding_ones() -> None:
    hang = {"type": "hang", "subset": "stable", "start_s": 0.5, "end_s": 40}
    record = simulate(scenario(trace([0.0, 1.0], prompt_tokens=1200, output_tokens=101), faults=[hang]))
    assert record.status.tolist() == [200, 504]
    # Prefilled by 0.1 s, 100 tokens to decode, frozen for 39.5 s in the middle.
    assert record.tpot_s[0] == pytest.approx((100 * STEP_1 + 39.5) / 100)


def test_timeline_rows_apply_before_arrivals_at_the_same_time_and_in_file_order() -> None:
    subsets = ({"name": "a", "hosts": 1, "weight": 100}, {"name": "b", "hosts": 1, "weight": 0})
    rows = [
        (0.0, "a", "consecutive5xxErrors", 3),
        (5.0, "a", "weight", 0),
        (5.0, "b", "weight", 100),
        (5.0, "b", "maxRetries", 1),
        (5.0, "b", "maxRetries", 2),
        (11.0, "a", "weight", 7),  # after the duration: ignored
    ]
    record = simulate(scenario(trace(every(0.5, 10)), subsets, duration_s=10), rows=rows)
    arrivals = np.asarray(every(0.5, 10))
    assert np.array_equal(record.subset, np.where(arrivals < 5.0, 0, 1))
    assert record.final_settings["a"].weight == 0
    assert record.final_settings["a"].consecutive5xxErrors == 3
    assert record.final_settings["b"].maxRetries == 2
    # The decisions hold every field at t = 0, then the changes in the order applied.
    assert [(c.time_s, c.subset, c.field) for c in record.decisions[18:]] == [
        (5.0, "a", "weight"),
        (5.0, "b", "weight"),
        (5.0, "b", "maxRetries"),
        (5.0, "b", "maxRetries"),
    ]


def test_no_weight_anywhere_fails_requests_with_a_local_no_route() -> None:
    subsets = ({"name": "stable", "hosts": 1, "weight": 0},)
    record = simulate(scenario(trace([0.0, 1.0]), subsets), rows=[(0.5, "stable", "weight", 1)])
    assert record.status.tolist() == [503, 200]
    assert record.local.tolist() == [True, False]
    assert record.attempts.tolist() == [0, 1]
