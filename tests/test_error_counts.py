"""The error-count test and the alert level that follows from a false-alarm budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.clients.prometheus import RangeSamples
from controller.traffic.signals import ERROR_COUNT, TESTS_PER_BACKEND, SignalMemory, alert_level
from forecasting.counts import ErrorCountTest
from forecasting.detector import alert_level_for_budget

WINDOW_S = 60.0


def learned(share: float, requests: float = 120.0, windows: int = 1_000) -> ErrorCountTest:
    """A test that has seen ``windows`` back-to-back windows of ``requests`` at exactly ``share``."""
    test = ErrorCountTest()
    for i in range(windows):
        test.update(WINDOW_S * i, requests, share * requests, WINDOW_S)
    return test


def test_nothing_is_surprising_without_history_or_without_errors() -> None:
    fresh = ErrorCountTest()
    assert fresh.share_ == 0.5
    assert fresh.surprise(100, 3) < 0.01, "a prior share of 1/2 makes 3 errors of 100 ordinary"
    assert learned(0.0).surprise(100, 0) == 0.0
    assert learned(0.0).surprise(0, 0) == 0.0


@pytest.mark.parametrize(
    ("requests", "errors", "more_surprising_than"),
    [
        (120, 2, (120, 1)),  # more errors of the same requests
        (120, 5, (120, 2)),
        (30, 2, (120, 2)),  # the same errors among fewer requests
        (120, 120, (120, 60)),
    ],
)
def test_surprise_grows_with_errors_and_with_fewer_requests(
    requests: int, errors: int, more_surprising_than: tuple[int, int]
) -> None:
    test = learned(0.001)
    assert test.surprise(requests, errors) > test.surprise(*more_surprising_than)


def test_a_host_that_fails_everything_is_seen_at_its_first_errors() -> None:
    clean = learned(0.0, requests=120, windows=24 * 60)  # a day of error-free minutes
    level = alert_level(15)
    assert clean.surprise(120, 2) >= level, "two 5xx among a day of clean requests"
    assert clean.surprise(120, 1) < level, "one 5xx alone is not an alert"


def test_a_usual_error_share_is_learned_and_not_alarming() -> None:
    test = learned(0.02)
    assert test.share_ == pytest.approx(0.02, rel=0.05)
    assert test.surprise(120, round(0.02 * 120)) < 1.0
    assert test.surprise(120, round(0.2 * 120)) > 10.0


def test_overlapping_windows_are_learned_once() -> None:
    """A one-minute window read every 15 s: each update learns the quarter of it that is new."""
    test = ErrorCountTest(half_life_s=1e12)  # no decay: the totals are exact
    for i in range(400):
        test.update(15.0 * i, 60.0, 0.0, WINDOW_S)
    assert test.requests_ == pytest.approx(60.0 + 399 * 15.0, rel=1e-6), "one request a second for 6,045 s"


def test_invalid_counts_score_nothing_and_teach_nothing() -> None:
    test = learned(0.0, windows=10)
    before = (test.errors_, test.requests_, test.last_s_)
    for requests, errors in ((-1.0, 0.0), (10.0, 11.0), (math.nan, 0.0), (10.0, math.inf)):
        assert test.update(1e6, requests, errors, WINDOW_S) == 0.0
    assert (test.errors_, test.requests_, test.last_s_) == before


def test_on_healthy_binomial_windows_the_level_is_exceeded_no_more_often_than_its_probability() -> None:
    """Calibration: with independent failures at the learned share, P(surprise >= L) <= 10^-L."""
    rng = np.random.default_rng(7)
    share, requests, windows = 0.01, 200, 40_000
    test = learned(share, requests, windows=2_000)
    level = 2.5
    exceed = 0
    for i in range(windows):
        errors = float(rng.binomial(requests, share))
        exceed += test.update(WINDOW_S * (2_000 + i), requests, errors, WINDOW_S) >= level
    assert exceed <= 2 * windows * 10**-level, exceed  # expected at most ~126; twice that for the draw's noise


@pytest.mark.parametrize(
    ("alarms", "updates", "tests", "level"),
    [
        (1.0, 5_760, 5, math.log10(28_800)),  # 15 s interval, 5 tests: 4.46
        (1.0, 17_280, 5, math.log10(86_400)),  # 5 s interval
        (10.0, 5_760, 5, math.log10(2_880)),  # a larger budget, a lower level
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


def test_the_operator_level_is_the_budget_over_its_tests_and_interval() -> None:
    assert alert_level(15) == pytest.approx(math.log10(86_400 / 15 * TESTS_PER_BACKEND))
    assert alert_level(5) > alert_level(15), "more reads a day, a higher level for the same budget"


def test_signal_memory_scores_a_burst_of_errors_by_their_count_after_a_clean_history() -> None:
    """Warmed with two hours of clean traffic, two 5xx of 120 requests flag the backend; one does not."""
    times = tuple(1_000.0 + 15.0 * i for i in range(480))
    history = {
        "request_rate": RangeSamples(15.0, times, tuple(2.0 for _ in times)),
        "error_rate": RangeSamples(15.0, times, tuple(0.0 for _ in times)),
    }
    now = times[-1] + 15.0
    scores = {}
    for errors in (1, 2):
        memory = SignalMemory()
        memory.replay("h100", history, 15, WINDOW_S)
        scores[errors] = memory.scores("h100", now, {"request_rate": 2.0, "error_rate": errors / 120}, 15, WINDOW_S)
    assert scores[2][ERROR_COUNT] >= 0.5 > scores[1][ERROR_COUNT]


def test_the_count_needs_both_the_rate_and_the_share() -> None:
    memory = SignalMemory()
    assert ERROR_COUNT not in memory.scores("h100", 0.0, {"error_rate": 0.1}, 15, WINDOW_S)
    assert ERROR_COUNT not in memory.scores("h100", 0.0, {"request_rate": 2.0}, 15, WINDOW_S)
    assert memory.score("h100", 0.0, {}, 15, WINDOW_S) is None
