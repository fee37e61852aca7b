"""The traffic detectors' alert level follows from a false-alarm budget per backend-day."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from controller.traffic.signals import (
    DETECTED,
    FALSE_ALARMS_PER_BACKEND_DAY,
    TESTS_PER_BACKEND,
    SignalMemory,
    alert_level,
)
from forecasting.detector import AlertShaper, StreamingDetector, alert_level_for_budget, combined_surprise


@pytest.mark.parametrize(
    ("alarms", "updates", "tests", "level"),
    [
        (1.0, 5_760, 4, math.log10(23_040)),  # 15 s interval, four signals: 4.36
        (1.0, 17_280, 4, math.log10(69_120)),  # 5 s interval
        (10.0, 5_760, 4, math.log10(2_304)),  # a larger budget, a lower level
        (1.0, 1, 1, 0.0),
        (100.0, 1, 1, 0.0),  # never below 0
    ],
)
def test_the_alert_level_follows_from_the_budget(alarms: float, updates: float, tests: int, level: float) -> None:
    assert alert_level_for_budget(alarms, updates, tests) == pytest.approx(level)


@pytest.mark.parametrize(("alarms", "updates", "tests"), [(0.0, 10, 1), (1.0, 0, 1), (1.0, 10, 0)])
def test_the_alert_level_refuses_a_meaningless_budget(alarms: float, updates: float, tests: int) -> None:
    with pytest.raises(ValueError, match="budget"):
        alert_level_for_budget(alarms, updates, tests)


def test_the_operator_level_is_its_budget_over_its_signals_and_reads() -> None:
    assert len(DETECTED) == TESTS_PER_BACKEND
    assert alert_level(15) == pytest.approx(math.log10(86_400 / 15 * TESTS_PER_BACKEND / FALSE_ALARMS_PER_BACKEND_DAY))
    assert alert_level(5) > alert_level(15), "more reads a day, a higher level for the same budget"


def test_signal_memory_detectors_alert_at_the_level_of_the_policys_interval() -> None:
    memory = SignalMemory()
    memory.score("h100", 0.0, {"ttft_s": 0.3, "error_rate": 0.0}, 5)
    assert {key: d.alert_level for key, d in memory.detectors.items()} == {
        ("h100", "ttft_s"): alert_level(5),
        ("h100", "error_rate"): alert_level(5),
    }


def test_on_noise_the_budget_level_keeps_to_its_budget_where_the_nab_level_does_not() -> None:
    """Two days of 15-s points of white noise: at most the budget's alarms a day at the budget level.

    One detector's surprises are shaped at both levels (the shaping is the only thing the level
    changes), so the comparison is of the levels alone.
    """
    rng = np.random.default_rng(11)
    interval_s, days = 15, 2.0
    points = int(days * 86_400 / interval_s)
    detector = StreamingDetector()
    start = pd.Timestamp("2026-01-05")
    surprises = [
        combined_surprise(detector.family_pvalues(start + pd.Timedelta(seconds=interval_s * i), float(value)))
        for i, value in enumerate(rng.normal(1.0, 0.1, points))
    ]
    budget = alert_level_for_budget(FALSE_ALARMS_PER_BACKEND_DAY, 86_400 / interval_s, 1)
    alarms = {}
    nab_level = detector.alert_level
    for level in (nab_level, budget):
        shaper = AlertShaper(level, detector.dead_time)
        alarms[level] = sum(shaper.score(s) >= 0.5 for s in surprises)
    assert alarms[budget] <= FALSE_ALARMS_PER_BACKEND_DAY * days, alarms
    assert alarms[nab_level] > alarms[budget], alarms
