"""The backtest's fast paths give exactly (bit for bit) what the straightforward code gives.

A speed-up that changed one decision would be a change of behaviour: each fast path is compared
with ``==`` (not approximately) to the formulation it replaced or to the public path it skips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from forecasting import BURST_WINDOWS_S, WindowPeak, burst_load
from forecasting.window_peak import window_max


def _burst_load_by_gathering(tokens: np.ndarray, ttft_slo_s: float, windows: tuple[int, ...]) -> np.ndarray:
    """burst_load as first written: window sums gathered by index arrays."""
    cumulative = np.concatenate(([0.0], np.cumsum(np.asarray(tokens, dtype=float))))
    ends = np.arange(1, len(tokens) + 1)
    load = np.zeros(len(tokens))
    for window in windows:
        arrived = cumulative[ends] - cumulative[np.maximum(ends - window, 0)]
        load = np.maximum(load, arrived / (window + ttft_slo_s))
    return load


@pytest.mark.parametrize("n", [0, 1, 2, 7, 119, 120, 121, 3_000])
@pytest.mark.parametrize("windows", [BURST_WINDOWS_S, (1,), (3, 200)])
def test_burst_load_by_slices_is_the_gathered_one_bit_for_bit(n: int, windows: tuple[int, ...]) -> None:
    rng = np.random.default_rng(n)
    for tokens in (rng.integers(0, 20_000, n).astype(float), rng.lognormal(5, 2, n)):
        for slo in (2.0, 2 / 15, 0.0):
            fast, plain = burst_load(tokens, slo, windows), _burst_load_by_gathering(tokens, slo, windows)
            assert fast.tobytes() == plain.tobytes()


@pytest.mark.parametrize("n", [1, 2, 5, 31, 64])
@pytest.mark.parametrize("stride", [1, 3, 15])
def test_window_max_is_every_window_maximum(n: int, stride: int) -> None:
    values = np.random.default_rng(n).normal(size=n)
    for width in range(1, n + 1):
        for first in range(min(stride, n - width + 1)):
            count = (n - width - first) // stride + 1
            starts = first + stride * np.arange(count)
            expected = sliding_window_view(values, width)[starts].max(axis=1)
            np.testing.assert_array_equal(window_max(values, width, first, stride, count), expected)


def _series(values: np.ndarray, step_s: float) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-03-04", periods=len(values), freq=pd.Timedelta(seconds=step_s)))


@pytest.mark.parametrize("step_s", [1.0, 15.0, 35.0])  # 35 s: regularize snaps it to 30 s and interpolates
@pytest.mark.parametrize("length", [3, 200, 2_000, 20_000])
def test_peak_quantile_is_fit_then_predict(step_s: float, length: int) -> None:
    rng = np.random.default_rng(length)
    values = rng.lognormal(8, 1, length) * (1 + (np.arange(length) % 300 < 20))
    model = WindowPeak(level=120, stride=15, half_life=1800.0, memory=14_400)
    for horizon in (1, 105, 315):
        forecast = model.fit(_series(values, step_s)).predict(horizon, (0.9,))
        expected = None if forecast.fallback else float(forecast.quantile(0.9)[0])
        assert model.peak_quantile(values, pd.Timedelta(seconds=step_s), horizon, 0.9) == expected


def test_peak_quantile_of_a_series_with_gaps_goes_through_regularize() -> None:
    values = np.random.default_rng(3).lognormal(8, 1, 3_000)
    values[1_000:1_010] = np.nan
    model = WindowPeak()
    expected = float(model.fit(_series(values, 1.0)).predict(105, (0.9,)).quantile(0.9)[0])
    assert model.peak_quantile(values, pd.Timedelta(seconds=1), 105, 0.9) == expected
