"""Damped-trend smoothing: the filter form gives the numbers of Holt's recursion as written in textbooks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.signal import lfiltic

from forecasting.level import ALPHAS, BETAS, _initial_state, _smooth


def holt(values: np.ndarray, alpha: float, beta: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Holt's damped-trend recursion, one value at a time (Hyndman & Athanasopoulos, FPP3 8.2)."""
    level, trend = [float(values[0])], [0.0]
    for value in values[1:]:
        expected = level[-1] + phi * trend[-1]
        level.append(expected + alpha * (value - expected))
        trend.append(phi * trend[-1] + beta * (level[-1] - level[-2] - phi * trend[-1]))
    return np.array(level), np.array(trend)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 400), elements=st.floats(0, 1e5)),
    st.sampled_from(ALPHAS),
    st.sampled_from(BETAS),
    st.sampled_from([0.8, 0.9, 0.98]),
)
def test_the_filter_gives_the_recursion(values: np.ndarray, alpha: float, beta: float, phi: float) -> None:
    level, trend = _smooth(values, alpha, beta, phi)
    expected_level, expected_trend = holt(values, alpha, beta, phi)
    scale = max(1.0, float(np.max(np.abs(values))))
    np.testing.assert_allclose(level, expected_level, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(trend, expected_trend, rtol=0, atol=1e-9 * scale)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 5e-324])), min_size=6, max_size=6))
def test_the_initial_state_is_scipys_bit_for_bit(numbers: list[float]) -> None:
    """The filter starts from the state scipy's ``lfiltic`` gives, to the last bit and the sign of a
    zero, so the smoothing (and the model it selects) is the same as when lfiltic computed it."""
    c, a1, a2, y1, y2, x1 = numbers
    expected = lfiltic([0.5, c], [1.0, a1, a2], y=[y1, y2], x=[x1])
    got = _initial_state(c, a1, a2, y1, y2, x1)
    assert got.tobytes() == expected.tobytes()
