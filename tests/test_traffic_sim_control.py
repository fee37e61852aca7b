"""Closed-loop control of a traffic backtest: what a controller observes, when its updates apply, Flagger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from controller.backtest.trace import Trace
from controller.backtest.traffic.flagger import Flagger, FlaggerParams
from controller.backtest.traffic.observe import HostWindow, Observation, SubsetWindow
from controller.backtest.traffic.run import run_baseline
from controller.backtest.traffic.settings import ProxySettings
from controller.backtest.traffic.timeline import SettingUpdate
from tests.harness.traffic_backtest import every, scenario, simulate, trace

CANARY_SUBSETS = ({"name": "stable", "hosts": 2, "weight": 90}, {"name": "canary", "hosts": 2, "weight": 10})


@dataclass
class Recorder:
    """A controller that only watches (or applies ``updates`` at its first decision)."""

    interval_s: float = 10.0
    updates: Sequence[SettingUpdate] = ()
    seen: list[Observation] = field(default_factory=list)

    def decide(self, observation: Observation) -> Sequence[SettingUpdate]:
        self.seen.append(observation)
        return self.updates if len(self.seen) == 1 else ()


def test_a_controller_sees_contiguous_windows_of_the_past_only() -> None:
    arrivals = every(0.25, 45)
    recorder = Recorder()
    record = simulate(scenario(trace(arrivals), subsets=[{"name": "stable", "hosts": 2}]), controller=recorder)
    assert [(o.start_s, o.end_s) for o in recorder.seen] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    stable = [o.subset("stable") for o in recorder.seen]
    assert [w.requests for w in stable] == [40, 40, 40, 40]
    # Every request of a window has its first token within it here (prefill 8 ms, 1 decode step).
    assert [w.responses for w in stable] == [40, 40, 40, 40]
    assert all(len(w.ttft_s) == 40 and max(w.ttft_s) < 0.1 for w in stable)
    assert all(len(w.hosts) == 2 for w in stable)
    assert (record.status == 200).all()


def test_what_a_controller_sees_never_depends_on_later_arrivals() -> None:
    arrivals = every(0.25, 45)
    base = trace(arrivals)
    later = base.arrival_s >= 25.0
    heavier = Trace("t", base.arrival_s, np.where(later, 20_000, base.prompt_tokens), base.output_tokens)
    seen = []
    for requests in (base, heavier):
        recorder = Recorder()
        simulate(scenario(requests), controller=recorder)
        seen.append(recorder.seen)
    assert seen[0][:2] == seen[1][:2]
    assert seen[0][3] != seen[1][3]


def test_a_controllers_updates_apply_at_its_decision_before_arrivals_at_that_time() -> None:
    subsets = ({"name": "a", "hosts": 1, "weight": 100}, {"name": "b", "hosts": 1, "weight": 0})
    updates = (SettingUpdate("a", "weight", 0), SettingUpdate("b", "weight", 100))
    arrivals = every(0.5, 20)
    record = simulate(scenario(trace(arrivals), subsets), controller=Recorder(updates=updates))
    assert np.array_equal(record.subset, np.where(np.asarray(arrivals) < 10.0, 0, 1))
    assert [(c.time_s, c.subset, c.field, c.value) for c in record.decisions[18:]] == [
        (10.0, "a", "weight", 0),
        (10.0, "b", "weight", 100),
    ]


def _canary_window(ttft_s: Sequence[float], errors: int = 0, tpot_s: Sequence[float] = ()) -> SubsetWindow:
    host = HostWindow(
        0, len(ttft_s) + errors, len(ttft_s) + errors, errors, tuple(ttft_s), tuple(tpot_s), 0, 0, 0, False
    )
    return SubsetWindow("canary", ProxySettings(weight=10), 0, 0, 0, 0, {}, 0, (), (), 0, 0, 0, (host,))


def test_flaggers_check_needs_traffic_successes_and_a_fast_enough_ttft() -> None:
    flagger = Flagger()
    assert not flagger.passes(_canary_window([]))
    assert flagger.passes(_canary_window([0.3] * 99, errors=1))  # 99 % success
    assert not flagger.passes(_canary_window([0.3] * 49, errors=1))  # 98 %
    assert not flagger.passes(_canary_window([0.3] * 90 + [2.5] * 10))  # p99 above 2 s
    slow_streams = _canary_window([0.3] * 50, tpot_s=[0.08] * 50)
    assert flagger.passes(slow_streams)
    assert not Flagger(FlaggerParams(tpot_p99_s=0.05)).passes(slow_streams)


def _flagger_run(
    faults: list[dict[str, object]],
) -> tuple[str, float | None, int, list[tuple[float, str, int | float]]]:
    made = scenario(trace(every(0.25, 400)), CANARY_SUBSETS, faults=faults)
    result = run_baseline(made, "flagger")
    assert result.flagger is not None
    weights = [(c.time_s, c.subset, c.value) for c in result.decisions if c.field == "weight" and c.time_s > 0]
    return result.flagger.result, result.flagger.at_s, result.flagger.failed_checks, weights


def test_flagger_promotes_a_healthy_canary_step_by_step() -> None:
    result, at_s, failed, weights = _flagger_run([])
    assert (result, at_s, failed) == ("promoted", 300.0, 0)
    assert [w for w in weights if w[1] == "canary"] == [
        (60.0, "canary", 20),
        (120.0, "canary", 30),
        (180.0, "canary", 40),
        (240.0, "canary", 50),
        (300.0, "canary", 100),
    ]
    assert weights[-1] == (300.0, "stable", 0)


def test_flagger_rolls_back_a_failing_canary_after_five_failed_checks() -> None:
    errors = {"type": "error", "subset": "canary", "p": 1.0, "status": 503, "start_s": 0}
    result, at_s, failed, weights = _flagger_run([errors])
    assert (result, at_s, failed) == ("rolled back", 300.0, 5)
    assert weights == [(300.0, "canary", 0), (300.0, "stable", 100)]


def test_the_flagger_baseline_needs_a_canary_and_one_other_subset() -> None:
    with pytest.raises(ValueError, match="canary"):
        run_baseline(scenario(trace([0.0])), "flagger")
