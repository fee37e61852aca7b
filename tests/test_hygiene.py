"""Each input defect of forecasting.hygiene gets its documented handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import ForecastInputError, regularize


def minutes(*offsets: float) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=m) for m in offsets])


def test_regular_input_is_returned_unchanged_with_nothing_repaired() -> None:
    index = pd.date_range("2024-01-01", periods=50, freq="15s", name="time")
    y = pd.Series(np.random.default_rng(0).normal(10, 2, 50), index=index, name="rps")
    clean = regularize(y)
    np.testing.assert_array_equal(clean.values.to_numpy(), y.to_numpy())
    assert clean.values.index.equals(index) and clean.values.name == "rps"
    assert clean.step == pd.Timedelta("15s")
    counts = (clean.n_nonfinite, clean.n_duplicates, clean.n_resets, clean.n_filled, clean.n_dropped)
    assert counts == (0, 0, 0, 0, 0)


def test_unsorted_input_is_sorted() -> None:
    clean = regularize(pd.Series([3.0, 1.0, 2.0], index=minutes(2, 0, 1)))
    assert clean.values.tolist() == [1.0, 2.0, 3.0]
    assert clean.values.index.is_monotonic_increasing


def test_duplicate_timestamps_are_averaged() -> None:
    clean = regularize(pd.Series([1.0, 3.0, 5.0, 6.0], index=minutes(0, 1, 1, 2)))
    assert clean.values.tolist() == [1.0, 4.0, 6.0]
    assert clean.n_duplicates == 1


def test_jittered_scrapes_snap_to_the_grid() -> None:
    clean = regularize(pd.Series([1.0, 2.0, 3.0, 4.0], index=minutes(0, 1.1, 1.95, 3.05)))
    assert clean.step == pd.Timedelta(minutes=1)
    assert clean.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert clean.values.index.equals(pd.date_range("2024-01-01", periods=4, freq="1min"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_values_become_interpolated_gaps(bad: float) -> None:
    clean = regularize(pd.Series([1.0, bad, 3.0, 4.0], index=minutes(0, 1, 2, 3)))
    assert clean.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (clean.n_nonfinite, clean.n_filled) == (1, 1)


def test_short_gap_is_interpolated_on_the_grid() -> None:
    clean = regularize(pd.Series([0.0, 1.0, 4.0, 5.0], index=minutes(0, 1, 4, 5)))
    assert clean.values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert clean.n_filled == 2


def test_long_gap_drops_the_history_before_it() -> None:
    y = pd.Series(np.arange(10.0), index=minutes(0, 1, 2, 3, 100, 101, 102, 103, 104, 105))
    clean = regularize(y, max_gap_steps=60)
    assert clean.values.tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert clean.values.index[0] == minutes(100)[0]
    assert clean.n_dropped == 4


def test_counter_resets_are_rates_across_the_restart() -> None:
    # 60 per minute, then the target restarts at minute 3 and counts 30 by the sample
    counter = pd.Series([0.0, 60.0, 120.0, 30.0, 90.0], index=minutes(0, 1, 2, 3, 4))
    clean = regularize(counter, counter=True)
    assert clean.values.tolist() == [1.0, 1.0, 0.5, 1.0]
    assert clean.n_resets == 1


def test_constant_series_is_kept_and_flagged() -> None:
    clean = regularize(pd.Series(5.0, index=pd.date_range("2024-01-01", periods=5, freq="10s")))
    assert clean.constant
    assert not regularize(pd.Series([1.0, 2.0, 3.0], index=minutes(0, 1, 2))).constant


@pytest.mark.parametrize(
    "y",
    [
        pd.Series([1.0, 2.0, 3.0]),  # no time index
        pd.Series(["a", "b", "c"], index=minutes(0, 1, 2)),  # not numbers
        pd.Series([1.0, np.nan, np.nan], index=minutes(0, 1, 2)),  # one finite value
        pd.Series([1.0, 2.0, 3.0], index=minutes(0, 0, 0)),  # no spacing to infer a step from
        pd.Series([1.0, 2.0], index=minutes(0, 1)),  # shorter than min_points
    ],
)
def test_unusable_input_raises(y: pd.Series) -> None:
    with pytest.raises(ForecastInputError):
        regularize(y)


def test_too_short_after_dropping_a_long_gap_explains_why() -> None:
    y = pd.Series(np.arange(6.0), index=minutes(0, 1, 2, 3, 200, 201))
    with pytest.raises(ForecastInputError, match="dropped before a gap"):
        regularize(y, min_points=3)


def _without_freq(y: pd.Series) -> pd.Series:
    """The same timestamps and values with no ``freq`` on the index: the general path."""
    return pd.Series(y.to_numpy(), index=pd.DatetimeIndex(list(y.index), name=y.index.name), name=y.name)


@pytest.mark.parametrize(
    "y",
    [
        pd.Series(
            np.random.default_rng(0).normal(100, 5, 600), index=pd.date_range("2024-03-04", periods=600, freq="1min")
        ),
        pd.Series(np.arange(50.0), index=pd.date_range("2024-03-04", periods=50, freq="20s", unit="s"), name="load"),
        pd.Series(np.arange(50.0), index=pd.date_range("2024-03-04", periods=50, freq="5min", tz="UTC", name="t")),
        pd.Series(np.arange(50.0), index=pd.date_range("2024-03-04", periods=50, freq="58s")),  # snapped to 1 min
        pd.Series([1.0, np.nan, 3.0, 4.0], index=pd.date_range("2024-03-04", periods=4, freq="1min")),
        pd.Series(np.arange(50), index=pd.date_range("2024-03-04", periods=50, freq="1min")),  # integers
        pd.Series(np.arange(50.0), index=pd.date_range("2024-03-04", periods=50, freq="1min")).iloc[:30],
    ],
    ids=["1min", "20s-seconds-unit", "tz", "58s", "nan", "int", "prefix"],
)
def test_a_series_with_a_freq_gives_what_the_general_path_gives(y: pd.Series) -> None:
    """A ``date_range`` series takes a shortcut past the repairs it needs none of: the result is
    the same in every field as for the same timestamps without a ``freq``."""
    fast, general = regularize(y), regularize(_without_freq(y))
    np.testing.assert_array_equal(fast.values.to_numpy(), general.values.to_numpy())
    assert fast.values.dtype == general.values.dtype and fast.values.name == general.values.name
    fast_index, general_index = fast.values.index, general.values.index
    assert isinstance(fast_index, pd.DatetimeIndex) and isinstance(general_index, pd.DatetimeIndex)
    assert fast_index.equals(general_index)
    assert (fast_index.freq, fast_index.name, fast_index.unit) == (
        general_index.freq,
        general_index.name,
        general_index.unit,
    )
    assert (fast.step, fast.n_nonfinite, fast.n_duplicates, fast.n_filled, fast.n_dropped) == (
        general.step,
        general.n_nonfinite,
        general.n_duplicates,
        general.n_filled,
        general.n_dropped,
    )
