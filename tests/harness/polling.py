"""Poll instead of sleeping: every wait in the tests is bounded and returns as soon as it can."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Call ``predicate`` until it returns something truthy and return that value (never ``None``, hence ``T``).

    Exceptions from ``predicate`` propagate: a 404 or a KeyError while waiting is a bug to see, not
    a condition to wait out; write the predicate so that "not yet" is a falsy value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true after {timeout:.1f}s; last value: {value!r}")
        time.sleep(interval)


def stays(predicate: Callable[[], bool], seconds: float, interval: float = 0.5) -> None:
    """Assert that ``predicate`` holds for the whole of ``seconds`` (bounded, polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), "the condition stopped holding"
        time.sleep(interval)
