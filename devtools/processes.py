"""Child processes that never outlive their parent: own process group, log file, bounded stop.

The dev cluster starts several servers (API server, Prometheus, operators, a simulated fleet). A
leaked one keeps a port and a CPU busy after a test run or a Ctrl-C, so each child runs in its own
process group (a stop reaches its grandchildren too) and, on Linux, asks the kernel to kill it when
its parent dies (``PR_SET_PDEATHSIG``), which covers a parent killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

_PR_SET_PDEATHSIG = 1


#: The dev cluster's Prometheus access rules: its servers listen on loopback, which a cluster's defaults refuse.
DEV_PROMETHEUS_ACCESS = pathlib.Path(__file__).resolve().parent / "prometheus-access.yaml"


def operator_argv(namespace: str, *options: str, standalone: bool = True) -> list[str]:
    """The command line of one operator watching ``namespace``, plus ``options``.

    ``standalone``: no leader election (one operator of its own); else it campaigns for the Lease
    as a Deployment's replicas do.

    The demo, the end-to-end tests and the benchmarks all start the operator this way, as a user
    would (``infercast run``), from this Python and source tree, with the dev cluster's Prometheus
    access rules (:data:`DEV_PROMETHEUS_ACCESS`; a later ``--prometheus-config`` in ``options`` wins).
    """
    return [
        *(sys.executable, "-m", "controller.cli", "run", *(["--standalone"] if standalone else [])),
        *("--namespace", namespace),
        *("--prometheus-config", str(DEV_PROMETHEUS_ACCESS), *options),
    ]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec; any failure here is ignored on purpose: the process
    # group stop remains, this is only the safety net for a parent that cannot run its cleanup.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    return _die_with_parent if sys.platform.startswith("linux") else None


@dataclasses.dataclass
class ManagedProcess:
    """A started child process whose stdout and stderr go to ``log_path``."""

    argv: tuple[str, ...]
    log_path: pathlib.Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the whole process group, SIGKILL it after ``timeout`` seconds; the exit code."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Also after a clean exit of the leader: a grandchild may still hold the group.
        self._signal_group(signal.SIGKILL)
        return self.popen.wait(timeout)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_process(
    argv: Sequence[str],
    *,
    log_path: pathlib.Path,
    env: Mapping[str, str] | None = None,
    cwd: pathlib.Path | None = None,
) -> ManagedProcess:
    """Start ``argv`` in its own process group; ``env`` is added to (not replacing) ours."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_preexec(),  # noqa: PLW1509 -- only prctl(), no locks, no Python allocation races
        )
    return ManagedProcess(argv=tuple(argv), log_path=log_path, popen=popen)


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    process: ManagedProcess | None = None,
    what: str = "the condition",
) -> None:
    """Poll until ``predicate()`` is true; fail early if ``process`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and not process.running():
            raise RuntimeError(
                f"{process.argv[0]} exited with {process.popen.returncode} before {what}:\n{process.log_tail()}"
            )
        if time.monotonic() >= deadline:
            tail = f":\n{process.log_tail()}" if process is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{tail}")
        time.sleep(interval)
