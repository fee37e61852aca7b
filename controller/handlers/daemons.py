"""The cadence of per-policy daemons, shared by every policy kind.

Each policy runs in its own Kopf daemon: a loop of one cycle, then a sleep of ``spec.interval``
seconds that ends early when the operator stops or the policy's spec changes (so an edit takes
effect at once instead of one interval later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from controller.spec import MAX_INTERVAL_S, MIN_INTERVAL_S

DEFAULT_INTERVAL_S = 15.0


def interval_of(spec: Mapping[str, Any]) -> float:
    """``spec.interval`` clamped to the allowed range; the default when it is absent or malformed."""
    try:
        return float(min(max(int(spec.get("interval", DEFAULT_INTERVAL_S)), MIN_INTERVAL_S), MAX_INTERVAL_S))
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL_S


def wake_daemon(memo: kopf.Memo) -> None:
    wakeup: asyncio.Event | None = memo.get("wakeup")
    if wakeup is not None:
        wakeup.set()


async def sleep_until_next_cycle(stopped: kopf.DaemonStopped, wakeup: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` (none if not positive), or less if the operator stops or the spec changes."""
    wakeup.clear()
    if seconds <= 0:
        return
    waiters = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wakeup.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
