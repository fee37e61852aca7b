"""Scoring a traffic run as the judge does: SLO windows, goodput, ejection host-seconds, detection."""

from __future__ import annotations

import numpy as np
import pytest

from controller.backtest.score import SloTargets
from controller.backtest.trace import Trace
from controller.backtest.traffic.scenario import Fault
from controller.backtest.traffic.score import detection_delay, ejection_host_seconds, score
from controller.backtest.traffic.simulator import Ejection, RunRecord
from tests.harness.traffic_backtest import scenario

FAULT = Fault("error", "stable", (0,), start_s=10.0, end_s=20.0)


def _record(status: list[int], ttft: list[float], tpot: list[float]) -> RunRecord:
    arrivals = np.array([0.0, 1.0, 61.0, 62.0, 63.0])
    n = len(arrivals)
    # The last request has one output token (no TPOT).
    requests = Trace("t", arrivals, np.full(n, 100), np.array([2, 2, 2, 2, 1]))
    made = scenario(requests, subsets=[{"name": "stable", "hosts": 1}, {"name": "canary", "hosts": 1}])
    return RunRecord(
        scenario=made,
        subset=np.array([0, 1, 0, 0, 1]),
        status=np.array(status),
        local=np.array([s == 503 for s in status]),
        ttft_s=np.array(ttft),
        tpot_s=np.array(tpot),
        attempts=np.array([1, 1, 2, 1, 1]),
        faulty=np.zeros(n, dtype=bool),
        canary_faulty=np.array([False, True, False, False, False]),
    )


def test_a_failed_request_makes_its_window_miss_and_goodput_needs_both_targets() -> None:
    nan = float("nan")
    record = _record(
        status=[200, 503, 200, 200, 200],
        ttft=[0.1, nan, 0.2, 2.5, 0.3],
        tpot=[0.01, nan, 0.02, 0.02, nan],
    )
    result = score(record, SloTargets(), "test")
    assert result.windows == 2
    assert result.slo_attainment_minutes == 0.0  # window 0 has a failure, window 1 a 2.5 s TTFT at p95
    assert result.goodput == pytest.approx(3 / 5)
    assert result.errors_by_status == {503: 1}
    assert result.local_error_share == pytest.approx(1 / 5)
    assert result.attempts_per_request == pytest.approx(6 / 5)
    assert result.canary_share == pytest.approx(2 / 5)
    assert result.canary_faulty_share == pytest.approx(1 / 5)
    assert result.ttft_p95_s == pytest.approx(np.percentile([0.1, 0.2, 2.5, 0.3], 95))
    relaxed = score(record, SloTargets(ttft_s=3.0), "test")
    assert relaxed.slo_attainment_minutes == 0.5
    assert score(record, SloTargets(ttft_s=3.0, tpot_s=0.015), "test").slo_attainment_minutes == 0.0


def test_judge_fields_round_as_the_judge_and_name_the_canary_fields() -> None:
    nan = float("nan")
    record = _record([200] * 5, [0.12345] * 5, [0.0123456, 0.01, 0.01, 0.01, nan])
    fields = score(record, SloTargets(), "test").judge_fields()
    assert fields["ttft_p95_s"] == 0.123
    assert fields["goodput"] == 1.0
    assert fields["errors_by_status"] == {}
    assert "canary_share" in fields and "flagger" not in fields


def test_ejected_host_seconds_split_by_whether_the_host_had_a_fault() -> None:
    ejections = [
        Ejection("stable", 0, 5.0, 25.0),  # 10 s inside the fault's [10, 20), 10 s outside
        Ejection("stable", 1, 0.0, 3.0),  # a healthy host
        Ejection("stable", 0, 90.0, None),  # still out at the end: counted up to the duration
    ]
    false_s, true_s = ejection_host_seconds(ejections, (FAULT,), duration_s=100.0)
    assert true_s == pytest.approx(10.0)
    assert false_s == pytest.approx(10.0 + 3.0 + 10.0)


def test_detection_counts_only_ejections_of_the_faults_hosts_within_its_span() -> None:
    assert detection_delay(FAULT, []) is None
    assert detection_delay(FAULT, [Ejection("stable", 1, 11.0, None)]) is None
    assert detection_delay(FAULT, [Ejection("stable", 0, 9.0, 12.0)]) is None
    assert detection_delay(FAULT, [Ejection("stable", 0, 21.0, None)]) is None
    assert detection_delay(FAULT, [Ejection("stable", 0, 14.5, None), Ejection("stable", 0, 12.0, None)]) == 2.0
