"""The operator's forecasting worker processes: a pool that starts afresh when a worker died.

Forecasting runs outside the event loop's process, so that the loop keeps a thousand policies on
schedule (one Python process runs one core's worth of Python at a time): model selections in one
pool, at a lower CPU priority, and each new sample's forecast in another, at the loop's priority
(:mod:`controller.handlers.lifecycle` makes both). A ``ProcessPoolExecutor`` whose worker was
killed (out of memory, a signal) is *broken* and refuses every later task; here the next task
after that starts a new pool instead, so a dead worker costs the tasks it held, not every forecast
until the operator restarts. This module must not know what the tasks are.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerPool(Executor):
    """``processes`` spawned worker processes, ``niceness`` lower in CPU priority than the operator."""

    def __init__(self, processes: int, niceness: int = 0, name: str = "forecasting") -> None:
        self.processes = processes
        self.niceness = niceness
        self.name = name
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork of a process running threads (Kopf's, asyncio's) can deadlock.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.processes, mp_context=context, initializer=os.nice, initargs=(self.niceness,))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            logger.error("a %s worker process died: starting the pool again", self.name)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def worker_pool(processes: int, niceness: int = 0, name: str = "forecasting") -> WorkerPool | None:
    """A :class:`WorkerPool`, or none for 0 processes (the work then runs in a thread of the operator)."""
    return WorkerPool(processes, niceness, name) if processes else None
