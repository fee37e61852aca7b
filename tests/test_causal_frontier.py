"""The causal-frontier benchmark's search (benchmarks/causal_frontier.py): rules see only the past."""

from __future__ import annotations

import numpy as np

from benchmarks.causal_frontier import frontier, rule_counts


def test_a_rule_holds_the_largest_need_seen_lag_minutes_ago() -> None:
    need = np.array([1, 3, 1, 1, 1, 2, 1])
    # lag 1, window 2: minute k gets max(need[k-2], need[k-1]); minute 0 gets need[0].
    assert rule_counts(need, lag=1, window=2, factor=1.0, extra=0).tolist() == [1, 1, 3, 3, 1, 1, 2]
    # lag 2 sees one minute less (the first two minutes get need[0]); the factor rounds up, the extra adds.
    assert rule_counts(need, lag=2, window=1, factor=1.5, extra=1).tolist() == [3, 3, 3, 6, 3, 3, 3]


def test_changing_the_future_leaves_earlier_counts_unchanged() -> None:
    need = np.array([1, 2, 1, 4, 1, 1, 3, 1, 2, 1])
    later = need.copy()
    later[6:] = 4
    for lag in (1, 2):
        before, after = rule_counts(need, lag, 3, 1.2, 0), rule_counts(later, lag, 3, 1.2, 0)
        assert before[: 6 + lag].tolist() == after[: 6 + lag].tolist()


def test_the_frontier_is_the_cheapest_rule_within_the_miss_budget() -> None:
    # A rise every ten minutes from a flat need of 1: the first comes after nine minutes of 1, so
    # catching every rise causally means holding 2 or more from the start.
    need = np.array([2 if k % 10 == 9 else 1 for k in range(100)])
    best = frontier(need, lag=1, targets=[1.0, 0.9], first_scored=0)
    assert best[1.0].misses == 0 and best[1.0].replica_hours >= 200 / 60
    # Missing the ten rises is allowed at 0.9: one replica, except the minute after each rise.
    assert best[0.9].misses == 10 and best[0.9].replica_hours < 115 / 60
    # Minutes before first_scored do not count as misses.
    assert frontier(need, lag=1, targets=[1.0], first_scored=90)[1.0].replica_hours < 200 / 60
