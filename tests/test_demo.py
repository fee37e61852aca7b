"""A short ``infercast demo``: the operator scales the simulated fleet on the forecast, and nothing outlives the run."""

from __future__ import annotations

import io
import os
import pathlib
import re
import signal
import sys

import pytest

from devtools.demo import REPO_ROOT, ReplicaSample, run_demo_result, timeline_steps
from devtools.processes import start_process, wait_for

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment mentions ``text``.

    Each child of the demo names its workdir (logs, data, $KUBECONFIG) or the API server's URL.
    """
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in seen:
            found.append(int(entry.name))
    return found


def test_a_short_demo_scales_up_and_stops_every_process(tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    result, code = run_demo_result(60.0, workdir=tmp_path, out=out)
    printed = out.getvalue()
    assert code == 0, printed
    assert result.completed
    assert result.count("ScaleUp") >= 1, printed
    scale_up = next(d for d in result.decisions if d.action == "ScaleUp")
    assert scale_up.to_replicas > scale_up.from_replicas
    assert f"{scale_up.from_replicas} -> {scale_up.to_replicas}" in printed
    # The fleet followed the operator: more than one replica became ready during the run.
    assert max(sample.ready for sample in result.timeline) >= 2
    assert "Decisions by action and reason" in printed and "Replicas over time" in printed
    # The policy is predictive: the forecast set the count at least once, and the summary says so.
    forecast_decisions = [d for d in result.decisions if d.path == "forecast"]
    assert forecast_decisions, printed
    assert f"forecast  {len(forecast_decisions):>4}" in printed and "Decisions by path" in printed
    lead_time = result.policy_status["leadTime"]
    assert re.search(rf"lead time: [0-9.]+s \({lead_time['source']}", printed), printed

    assert len(result.pids) == 3  # API server, operator, fleet (Prometheus is checked below)
    for pid in result.pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert processes_mentioning(str(tmp_path)) == []


def test_the_timeline_is_a_step_function_sampled_every_step() -> None:
    samples = [ReplicaSample(0.5, 1, 0), ReplicaSample(9.0, 2, 1), ReplicaSample(21.0, 3, 3)]
    steps = timeline_steps(samples, 10.0)
    assert [(s.at_s, s.desired, s.ready) for s in steps] == [(0.0, 1, 0), (10.0, 2, 1), (20.0, 2, 1)]
    assert timeline_steps([], 10.0) == []


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: pathlib.Path) -> None:
    workdir = tmp_path / "demo"
    argv = [sys.executable, "-m", "devtools.demo", "--duration", "120", "--workdir", str(workdir)]
    demo = start_process(argv, log_path=tmp_path / "demo.out", cwd=REPO_ROOT)
    try:
        wait_for(
            lambda: "decisions as they happen" in demo.log_text(),
            timeout=60,
            process=demo,
            what="the demo to start its processes",
        )
        api_url = re.search(r"API server (http://\S+):", demo.log_text())
        assert api_url is not None
        children = set(processes_mentioning(str(workdir)) + processes_mentioning(api_url.group(1)))
        assert len(children - {demo.pid}) == 4  # API server, Prometheus, operator, fleet
        demo.popen.send_signal(signal.SIGINT)
        assert demo.popen.wait(timeout=30) == 130
    finally:
        demo.stop()
    assert "interrupted" in demo.log_text()
    assert processes_mentioning(str(workdir)) == []
    assert processes_mentioning(api_url.group(1)) == []
