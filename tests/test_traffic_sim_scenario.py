"""Traffic scenarios: the rate warp and looping, fault spans, validation, the decisions CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.backtest.trace import Trace
from controller.backtest.traffic.scenario import Fault, warp
from controller.backtest.traffic.settings import Change, ProxySettings
from controller.backtest.traffic.timeline import read_decisions, write_decisions
from tests.harness.traffic_backtest import scenario, trace


def _tokens(prompts: list[int]) -> Trace:
    n = len(prompts)
    return Trace("t", np.array([0.0, 1.0, 2.5][:n]), np.array(prompts), np.ones(n, dtype=np.int64))


def test_the_warp_plays_the_trace_at_the_rate_and_loops_it() -> None:
    # Trace times 0, 1, 2.5; period 3.5. Rate 2 until t = 2 (trace time 4), then rate 1 until t = 6.
    warped = warp(_tokens([10, 11, 12]), trace_start_s=0.0, duration_s=6.0, rate=2.0, rate_changes=((2.0, 1.0),))
    assert warped.arrival_s.tolist() == [0.0, 0.5, 1.25, 1.75, 2.5, 4.0, 5.0]
    assert warped.prompt_tokens.tolist() == [10, 11, 12, 10, 11, 12, 10]


def test_the_warp_starts_at_trace_start() -> None:
    warped = warp(_tokens([10, 11, 12]), trace_start_s=3.0, duration_s=2.0, rate=1.0)
    # Trace times 3.5 and 4.5 (the second loop's 0 and 1) fall in [3, 5).
    assert warped.arrival_s.tolist() == [0.5, 1.5]
    assert warped.prompt_tokens.tolist() == [10, 11]


def test_non_positive_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rates"):
        warp(_tokens([10]), 0.0, 5.0, 1.0, ((2.0, 0.0),))


def test_flapping_spans_repeat_within_the_fault_and_merge_when_always_on() -> None:
    flapping = Fault("error", "s", (0,), start_s=120, end_s=1080, on_s=60, every_s=120)
    spans = flapping.spans()
    assert spans[0] == (120, 180) and spans[-1] == (960, 1020) and len(spans) == 8
    assert Fault("error", "s", (0,), start_s=10, end_s=95, on_s=20, every_s=20).spans() == [(10, 95)]
    assert Fault("hang", "s", (0,), start_s=10, end_s=25, on_s=10, every_s=12).spans() == [(10, 20), (22, 25)]


def test_subset_settings_come_from_the_subset_then_the_defaults_then_the_table() -> None:
    made = scenario(
        trace([0.0]),
        subsets=[{"name": "a", "hosts": 2, "maxRetries": 3}, {"name": "b", "hosts": 1, "speed": 0.5}],
        defaults={"maxRetries": 1, "interval_s": 5},
    )
    assert made.subsets[0].settings == ProxySettings(maxRetries=3, interval_s=5.0)
    assert made.subsets[1].settings == ProxySettings(maxRetries=1, interval_s=5.0)
    assert made.subsets[1].speed == 0.5


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"type": "melt", "subset": "stable"}, "fault type"),
        ({"type": "error", "subset": "stable", "status": 404}, "5xx"),
        ({"type": "error", "subset": "stable", "hosts": [1]}, "host indices"),
        ({"type": "error", "subset": "other"}, "unknown subset"),
        ({"type": "error", "subset": "stable", "every_s": 10, "on_s": 20}, "flapping"),
        ({"type": "seq_limit", "subset": "stable"}, "max_seqs"),
    ],
)
def test_invalid_faults_are_refused(fault: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenario(trace([0.0]), faults=[fault])


def test_a_fault_without_hosts_or_end_covers_the_subset_until_the_duration() -> None:
    made = scenario(
        trace([0.0]), subsets=[{"name": "stable", "hosts": 3}], faults=[{"type": "hang", "subset": "stable"}]
    )
    assert made.faults[0].hosts == (0, 1, 2)
    assert made.faults[0].end_s == made.duration_s


def test_decisions_round_trip_through_the_judges_csv_format(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    changes = [Change(0.0, "stable", "weight", 90), Change(60.0, "canary", "interval_s", 2.5)]
    write_decisions(path, changes)
    assert path.read_text().splitlines() == [
        "time_s,subset,field,value",
        "0.0,stable,weight,90",
        "60.0,canary,interval_s,2.5",
    ]
    assert read_decisions(path).changes == tuple(changes)


@pytest.mark.parametrize(("row", "message"), [("0,stable,weight,-1", ">= 0"), ("0,stable,colour,1", "unknown")])
def test_invalid_decision_rows_are_refused(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text(f"time_s,subset,field,value\n{row}\n")
    with pytest.raises(ValueError, match=message):
        read_decisions(path)


def test_integer_fields_are_rounded() -> None:
    settings = ProxySettings().with_values({"http2MaxRequests": 255.7, "baseEjectionTime_s": 12})
    assert settings.http2MaxRequests == 256
    assert settings.baseEjectionTime_s == 12.0
