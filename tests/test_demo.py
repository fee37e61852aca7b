"""A short ``infercast demo``: the operator scales the simulated fleet, and nothing outlives the run."""

from __future__ import annotations

import io
import os
import pathlib

import pytest

from controller.demo import ReplicaSample, run_demo_result, timeline_steps

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (the demo's children all name its workdir or URL)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
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
