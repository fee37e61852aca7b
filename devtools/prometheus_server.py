"""A real Prometheus server for tests and the demo: loopback only, temporary data, bounded waits.

Facts this is built on (Prometheus 2.42, measured on the project machine):

* the server is ready in well under a second, but the first scraped sample becomes queryable only
  after about 6 s (a fixed throttle of the target discovery), so callers poll with
  :meth:`Prometheus.wait_for_series` instead of sleeping;
* history is written with ``promtool tsdb create-blocks-from openmetrics`` straight into the data
  directory; a running server only looks for new blocks once a minute, so :meth:`backfill` on a
  running server restarts it on the same port;
* to join history and live samples into one series, the history must carry the same ``job`` and
  ``instance`` labels as the live target (see :meth:`Prometheus.instance_labels`).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import yaml

from devtools import processes


class PrometheusError(RuntimeError):
    """Prometheus failed to start, rejected a query, or promtool failed."""


def free_port(host: str = "127.0.0.1") -> int:
    # Prometheus has no "port 0" mode that reports the bound port, so we pick one and hand it over;
    # the tiny race with another process is handled by retrying the start.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """One Prometheus server scraping static targets.

    ``targets`` maps a job name to ``host:port`` addresses, e.g. ``{"exporter": ["127.0.0.1:8000"]}``.
    ``workdir`` holds the config, the data and the log; a temporary directory is made (and removed
    on :meth:`stop`) when none is given.
    """

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        *,
        workdir: pathlib.Path | None = None,
        scrape_interval: float = 1.0,
        out_of_order_time_window: str | None = None,
        retention: str = "30d",
        binary: str = "prometheus",
        promtool: str = "promtool",
        ready_timeout: float = 15.0,
    ) -> None:
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.scrape_interval = scrape_interval
        self.out_of_order_time_window = out_of_order_time_window
        self.retention = retention
        self.binary = binary
        self.promtool = promtool
        self.ready_timeout = ready_timeout
        self._owns_workdir = workdir is None
        self.workdir = workdir if workdir is not None else pathlib.Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self.port: int | None = None
        self._process: processes.ManagedProcess | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise PrometheusError("Prometheus has not been started")
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def config(self) -> dict[str, Any]:
        interval = f"{int(self.scrape_interval * 1000)}ms"
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in self.targets.items()
            ],
        }
        if self.out_of_order_time_window is not None:
            config["storage"] = {"tsdb": {"out_of_order_time_window": self.out_of_order_time_window}}
        return config

    def start(self, attempts: int = 3) -> Prometheus:
        if self.running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        port = self.port
        for attempt in range(attempts):
            # Keep the port across restarts (clients hold the URL); pick a new one only if taken.
            self.port = port if port is not None and attempt == 0 else free_port()
            self._process = processes.start_process(self._argv(), log_path=self.log_path)
            try:
                processes.wait_for(
                    self._is_ready,
                    timeout=self.ready_timeout,
                    interval=0.05,
                    process=self._process,
                    what="Prometheus to be ready",
                )
                return self
            except RuntimeError as exc:  # exited early; usually "address already in use"
                self._process.stop()
                if "address already in use" not in self._process.log_text() or attempt == attempts - 1:
                    raise PrometheusError(str(exc)) from exc
            except BaseException:
                self._process.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill after ``timeout`` seconds; remove the workdir if we made it."""
        if self._process is not None:
            self._process.stop(timeout)
            self._process = None
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- queries ---------------------------------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str], timeout: float) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus's own error message
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, *, at: float | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query; the ``result`` list of a vector (or ``[scalar]``)."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        data = self._api("query", params, timeout)
        result = data["result"]
        return list(result) if data["resultType"] in ("vector", "matrix") else [result]

    def query_range(
        self, promql: str, *, start: float, end: float, step: float, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        return list(self._api("query_range", params, timeout)["result"])

    def wait_for_series(
        self, promql: str, *, timeout: float = 15.0, interval: float = 0.2, min_series: int = 1
    ) -> list[dict[str, Any]]:
        """Poll an instant query until it returns at least ``min_series`` series; return them.

        The default timeout covers the ~6 s before a new target's first sample is queryable.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if len(result) >= min_series:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {promql!r} after {timeout:.1f}s (got {result!r})")
            time.sleep(interval)

    # -- history ---------------------------------------------------------------------------------

    @staticmethod
    def instance_labels(job: str, address: str) -> dict[str, str]:
        """The labels Prometheus gives a live target's series; put them on backfilled history."""
        return {"job": job, "instance": address}

    def backfill(self, openmetrics_text: str, *, timeout: float = 120.0) -> None:
        """Write history (OpenMetrics text ending in ``# EOF``) as TSDB blocks into the data dir.

        A running server is restarted on the same port so that it loads the new blocks now.
        """
        was_running = self.running()
        if was_running:
            assert self._process is not None
            self._process.stop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        source = self.workdir / "backfill.om"
        source.write_text(openmetrics_text if openmetrics_text.endswith("\n") else openmetrics_text + "\n")
        try:
            completed = subprocess.run(
                [self.promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data_dir)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            source.unlink(missing_ok=True)
        if completed.returncode != 0:
            raise PrometheusError(f"promtool failed ({completed.returncode}): {completed.stderr.strip()}")
        if was_running:
            self.start()
