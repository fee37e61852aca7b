"""The inference-failure benchmark's parts: episodes and their labels, the readings, Envoy's count, the flags.

Tiny hand-made traces only (nothing from ``../shared``); the benchmark itself is
``benchmarks/inference_failures.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.failure_detection import alarms, first_flag, score_recording, stall_scores
from benchmarks.failure_episodes import (
    BACKEND,
    FAILURE_KINDS,
    FAULT_S,
    LIVE_BEFORE_ONSET_S,
    RAMP_STEP_S,
    Workload,
    draw_episode,
    ramp,
)
from benchmarks.failure_signals import (
    CONSECUTIVE,
    TPOT_BUCKETS,
    ConsecutiveErrors,
    Reading,
    Recording,
    histogram_quantile,
    record,
)
from benchmarks.inference_failures import hosts_for
from controller.backtest.trace import Trace
from policies.health import HealthLimits
from tests.harness.traffic_backtest import every, scenario, simulate, trace

WARMUP_S = 120.0


def _workload(hosts: int = 2, output_tokens: int = 2, mean_concurrency: float = 3.0) -> Workload:
    return Workload("tiny", trace(every(0.5, 600), output_tokens=output_tokens), 1.0, hosts, mean_concurrency)


@pytest.mark.parametrize("kind", FAILURE_KINDS)
def test_an_episode_is_one_host_failing_in_its_labelled_span_drawn_from_its_seed(kind: str) -> None:
    workload = _workload(hosts=4)
    for number in range(6):
        episode = draw_episode(kind, number, workload, WARMUP_S)  # type: ignore[arg-type]
        assert episode == draw_episode(kind, number, workload, WARMUP_S)  # type: ignore[arg-type]
        low, high = (WARMUP_S + s for s in LIVE_BEFORE_ONSET_S)
        assert low <= episode.onset_s <= high
        assert episode.end_s == episode.onset_s + FAULT_S
        assert 0 <= episode.host < 4
        for fault in episode.scenario().faults:
            assert fault.subset == BACKEND and fault.hosts == (episode.host,)
            assert episode.onset_s <= fault.start_s < fault.end_s <= episode.end_s
            assert fault.status != 504  # a host's 504 is always a timeout
        assert episode.scenario().subsets[0].settings.consecutive5xxErrors == 0  # nothing ejects
    onsets = {draw_episode(kind, n, workload, WARMUP_S).onset_s for n in range(6)}  # type: ignore[arg-type]
    assert len(onsets) == 6


def test_each_kind_draws_its_parameters_from_its_stated_range() -> None:
    workload = _workload(hosts=4, mean_concurrency=10.0)
    for number in range(20):
        faults = {kind: draw_episode(kind, number, workload, WARMUP_S).scenario().faults for kind in FAILURE_KINDS}
        assert [(f.kind, f.p) for f in faults["xid_errors"]] == [("error", 1.0)]
        assert [f.kind for f in faults["oom_errors"]] == ["error"] and 0.05 <= faults["oom_errors"][0].p <= 0.5
        creep = faults["latency_creep"]
        assert {f.kind for f in creep} == {"slow"} and 1 / 0.9 <= creep[-1].factor <= 2.0
        assert 2 * 60 <= creep[-1].start_s - creep[0].start_s + RAMP_STEP_S <= 10 * 60 + RAMP_STEP_S
        assert [f.kind for f in faults["kv_saturation"]] == ["seq_limit"] and 3 <= faults["kv_saturation"][
            0
        ].max_seqs <= 8
        assert [f.kind for f in faults["throughput_collapse"]] == ["slow"]
        assert 4.0 <= faults["throughput_collapse"][0].factor <= 20.0
        assert [f.kind for f in faults["hung_replica"]] == ["hang"]


def test_a_ramp_climbs_step_by_step_to_its_final_factor_and_holds_it_to_the_end() -> None:
    steps = ramp(2.0, 150.0, {"subset": BACKEND, "hosts": [1], "start_s": 100.0, "end_s": 400.0})
    assert [(s["start_s"], s["end_s"]) for s in steps] == [(100, 130), (130, 160), (160, 190), (190, 220), (220, 400)]
    assert [s["factor"] for s in steps] == [1.2, 1.4, 1.6, 1.8, 2.0]


def _host_ttft(recording: Recording, host: int, after: bool, onset: float) -> float:
    ticks = [r[host].ttft_s for t, r in zip(recording.times, recording.pods, strict=True) if (t > onset + 60) == after]
    return float(np.mean([v for v in ticks if v is not None]))


def test_kv_saturation_queues_the_labelled_hosts_requests_at_a_flat_load() -> None:
    workload = _workload(hosts=2, output_tokens=300, mean_concurrency=4.0)
    episode = draw_episode("kv_saturation", 0, workload, WARMUP_S)
    recording, _ = record(episode.scenario(), BACKEND, 15.0, 60.0)
    assert episode.scenario().faults[0].max_seqs < 4
    before = _host_ttft(recording, episode.host, after=False, onset=episode.onset_s)
    after = _host_ttft(recording, episode.host, after=True, onset=episode.onset_s)
    other = 1 - episode.host
    assert after > 5 * before
    assert _host_ttft(recording, other, after=True, onset=episode.onset_s) < after / 5


def test_a_hung_host_times_out_requests_only_the_client_counts_as_5xx() -> None:
    workload = _workload(hosts=2)
    episode = draw_episode("hung_replica", 0, workload, WARMUP_S)
    recording, envoy = record(episode.scenario(), BACKEND, 15.0, 60.0)
    hung = [r[episode.host] for t, r in zip(recording.times, recording.pods, strict=True) if t > episode.onset_s + 60]
    assert all(r.error_rate == 0 and r.ttft_s is None for r in hung)  # the pod's own telemetry: no 5xx, no TTFT
    assert all(r.source_error_rate == 1 for r in hung)  # the client's proxy: every request to it times out
    timeouts = [t for t, _, host in envoy.alarms[1] if host == episode.host]
    assert timeouts and min(timeouts) >= episode.onset_s + 30  # the proxy's first-token timeout
    assert all(
        r[episode.host].source_error_rate == 0
        for t, r in zip(recording.times, recording.pods, strict=True)
        if t < episode.onset_s
    )


def test_a_hung_host_stalls_from_the_first_interval_it_holds_a_request_through_and_no_host_before() -> None:
    """Requests of two tokens: a host is mostly idle, so it hangs between steps and its queue grows."""
    episode = draw_episode("hung_replica", 0, _workload(hosts=2), WARMUP_S)
    recording, _ = record(episode.scenario(), BACKEND, 5.0, 60.0)
    times, stall = np.asarray(recording.times), np.asarray(stall_scores(recording))
    assert np.nansum(stall[times <= episode.onset_s]) == 0 and not np.isnan(stall[1:]).any()
    first = float(times[stall == 1][0])
    assert episode.onset_s < first <= episode.onset_s + 10  # the second tick after the onset at the latest
    during = stall[(times >= episode.onset_s + 10) & (times <= episode.end_s)]
    assert during.all()


@pytest.mark.parametrize("n", CONSECUTIVE)
def test_the_consecutive_5xx_count_ejects_exactly_when_envoys_outlier_detection_does(n: int) -> None:
    fault = {"type": "error", "subset": "stable", "hosts": [0], "p": 0.5, "status": 503}
    watched = scenario(trace(every(0.25, 300)), subsets=[{"name": "stable", "hosts": 2}], faults=[fault], seed=n)
    _, envoy = record(watched, "stable", 10.0, 10.0)
    ejecting = {"name": "stable", "hosts": 2, "consecutive5xxErrors": n, "maxEjectionPercent": 100}
    ejected = simulate(scenario(trace(every(0.25, 300)), subsets=[ejecting], faults=[fault], seed=n))
    first = ejected.ejections[0]
    assert envoy.alarms[n][0] == (first.start_s, 0, first.host)


def test_a_success_resets_the_count_and_reaching_n_starts_it_again() -> None:
    envoy = ConsecutiveErrors()
    for time_s, status in enumerate([500, 503, 200, 504, 500, 500, 500]):
        envoy(float(time_s), 0, 1, status)
    assert [t for t, _, _ in envoy.alarms[2]] == [1.0, 4.0, 6.0]
    assert [t for t, _, _ in envoy.alarms[3]] == [5.0]
    assert envoy.alarms[5] == []


def test_histogram_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    # 10 samples in the bucket (0.05, 0.075]: rank 9.5 of 10 -> 0.05 + 0.025 x 0.95.
    assert histogram_quantile(0.95, [0.06] * 10, TPOT_BUCKETS) == pytest.approx(0.07375)
    # 19 samples in (0.01, 0.025] and one beyond the last bound: rank 19 is the top of the first bucket.
    assert histogram_quantile(0.95, [0.02] * 19 + [500.0], TPOT_BUCKETS) == pytest.approx(0.025)
    assert histogram_quantile(0.95, [500.0] * 3, TPOT_BUCKETS) == TPOT_BUCKETS[-1]
    assert histogram_quantile(0.95, [], TPOT_BUCKETS) is None


def test_hosts_for_keeps_the_peak_per_host_rate_under_the_reference() -> None:
    steady = Trace("t", np.arange(0, 3600, 0.1), np.ones(36000, dtype=np.int64), np.ones(36000, dtype=np.int64))
    assert hosts_for(steady, 1.0) == math.ceil(10 / 3.75)
    assert hosts_for(steady, 2.0) == math.ceil(20 / 3.75)


def _synthetic(ticks: int, onset: int) -> Recording:
    """One pod at 15-s ticks: small regular wiggles, then an error rate of 50 % from tick ``onset``."""
    recording = Recording()
    for tick in range(ticks):
        error = 0.5 if tick >= onset else 0.0
        reading = Reading(error, error, 0.3 + 0.01 * (tick % 7), 0.02 + 0.001 * (tick % 5), 0.0, 40, 40, 40)
        recording.times.append(15.0 * (tick + 1))
        recording.backend.append(reading)
        recording.pods.append((reading,))
        recording.running.append((1,))
        recording.generated.append((40.0 * tick,))
    return recording


def test_scores_start_after_the_warm_up_and_an_error_burst_flags_at_once() -> None:
    limits = HealthLimits()
    scored = score_recording(_synthetic(560, onset=540), limits, warmup_points=480)
    assert scored.times[0] == 15.0 * 481
    onset_s = 15.0 * 541
    for rule, scores in scored.rules.items():
        assert first_flag(scored.times, scores, limits, onset_s, onset_s + 300) == onset_s, rule
    # The detector alone flags the burst too: an error rate never seen is as surprising as it gets.
    assert scored.signals[("backend", "error_rate")][scored.times == onset_s] >= limits.upper


def test_alarms_count_the_policys_flags_not_every_high_score() -> None:
    limits = HealthLimits(upper=0.5, lower=0.2, hold_s=30.0)
    times = np.arange(0.0, 150.0, 10.0)
    scores = np.array([0.0, 0.6, 0.7, 0.3, 0.1, 0.1, 0.1, 0.1, 0.6, np.nan, 0.1, 0.1, 0.1, 0.1, 0.9])
    # Flagged at 10; 0.3 restarts the calm wait; released at 70 (30 s below 0.2 from 40); flagged again at 80,
    # released at 130 (NaN changes nothing), flagged at 140.
    assert alarms(times, scores, limits) == [10.0, 80.0, 140.0]


def test_a_stall_flags_the_backend_and_its_absence_is_no_calm_score() -> None:
    """The operator tightens for a stalled replica; it never releases a flagged backend for the lack of one."""
    recording = _synthetic(500, onset=10_000)  # no error burst
    recording.generated[-1] = recording.generated[-2]  # the last tick: the pod runs and makes no token
    empty = Reading(None, None, None, None, 0.0, 0, 0, 0)
    recording.backend[-3], recording.pods[-3] = empty, (empty,)  # a tick with nothing read
    scored = score_recording(recording, HealthLimits(), warmup_points=480)
    rule, stall = scored.rules["backend+stall policy"], scored.signals[("backend+stall", "stalled")]
    assert (stall[-3], stall[-1]) == (0.0, 1.0)
    assert np.isnan(rule[-3]) and rule[-1] == 1.0
    assert np.nanmax(rule[:-1]) < 0.5
