"""The simulated vLLM fleet (:mod:`devtools.fleet`) as a test's subprocess, on a trace the test writes.

The fleet plays the ReplicaSet controller, the scheduler and the kubelet of one Deployment
behind the emulated API server; tests start it with its command-line options and read the pods
it makes. :func:`write_trace` writes a steady trace in the Azure trace format, so that no test
needs ``../shared``.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devtools.processes import ManagedProcess, start_process, wait_for
from tests.conftest import REPO_ROOT


@dataclass
class FleetProcess:
    process: ManagedProcess
    metrics_url: str
    namespace: str

    @property
    def address(self) -> str:
        return self.metrics_url.removeprefix("http://").removesuffix("/metrics")


def write_trace(
    path: pathlib.Path, *, requests_per_s: float, seconds: int, prompt: int = 500, output: int = 50
) -> None:
    """A steady trace: ``requests_per_s`` evenly spaced requests for ``seconds``, each the same size."""
    origin = datetime(2023, 11, 16, 18, 0, tzinfo=UTC)
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(int(requests_per_s * seconds)):
        at = origin + timedelta(seconds=i / requests_per_s)
        rows.append(f"{at:%Y-%m-%d %H:%M:%S.%f}0,{prompt},{output}")
    path.write_text("\n".join(rows) + "\n")


@contextlib.contextmanager
def running_fleet(
    apiserver: str, namespace: str, deployment: str, trace: pathlib.Path, log_dir: pathlib.Path, *options: str
) -> Iterator[FleetProcess]:
    """The fleet serving ``deployment`` until the block ends; ``options`` are further command-line flags."""
    ready_file = log_dir / "fleet.url"
    argv = [
        sys.executable, "-m", "devtools.fleet",
        "--api", apiserver, "--namespace", namespace, "--deployment", deployment,
        "--trace", str(trace), "--port", "0", "--ready-file", str(ready_file), *options,
    ]  # fmt: skip
    process = start_process(argv, log_path=log_dir / "fleet.log", cwd=REPO_ROOT)
    try:
        wait_for(ready_file.exists, timeout=15, process=process, what="the fleet to serve /metrics")
        wait_for(lambda: ready_file.read_text().endswith("\n"), timeout=5, process=process)
        yield FleetProcess(process, ready_file.read_text().strip(), namespace)
    finally:
        process.stop()
        print(f"--- fleet log ---\n{process.log_tail(40)}")
