"""A short ``infercast demo`` from a bare clone: the operator scales the simulated fleet on the forecast,
and nothing outlives the run.

The main test runs the demo as a user does, from a fresh clone of the committed ``HEAD`` in an empty
directory (what a user gets, not this working tree), so no shared data folder exists next to it:
everything the demo reads must come from the clone. It runs with this test's Python and installed
dependencies but the clone's source: the clone is the working directory and ``PYTHONPATH``, which the
demo's children (API server, fleet, operator) inherit. What it checks is what the demo prints and
the operator's own decision log. ``.ci/run`` proves the same for every commit through ``make test``.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from controller.observability.explain import decision_records
from devtools.demo import REPO_ROOT, ReplicaSample, timeline_steps
from devtools.processes import start_process, wait_for

pytestmark = pytest.mark.integration

DEMO_S = 60
OBSERVED_LOAD = re.compile(r"observed load ([0-9.]+)")
SCALE_UP = re.compile(r"ScaleUp\s+(\d+) -> (\d+)")
TIMELINE_ROW = re.compile(r"^\s+(\d+)s\s+(\d+)\s+(\d+)\s", re.MULTILINE)
SUMMARY = re.compile(r"(\d+) scale-up\(s\), (\d+) scale-down\(s\) in \d+ s; (\d+) decision\(s\) set by the forecast\.")


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


def clone_head(into: pathlib.Path) -> pathlib.Path:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    clone = into / "infercast"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
    return clone


def test_a_short_demo_from_a_bare_clone_scales_up_on_the_forecast_and_stops_every_process(
    tmp_path: pathlib.Path,
) -> None:
    clone = clone_head(tmp_path / "user")
    assert sorted(p.name for p in clone.parent.iterdir()) == ["infercast"]
    assert not (clone.parent / "shared").exists()
    workdir = tmp_path / "demo"
    # The demo's temporary files go under tmp_path too.
    env = {"PYTHONPATH": str(clone), "TMPDIR": str(tmp_path)}
    imported = subprocess.run(
        [sys.executable, "-c", "import controller; print(controller.__file__)"],
        cwd=clone, env={**os.environ, **env}, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert pathlib.Path(imported).is_relative_to(clone)

    argv = [sys.executable, "-m", "devtools.demo", "--duration", str(DEMO_S), "--workdir", str(workdir)]
    with start_process(argv, log_path=tmp_path / "demo.out", env=env, cwd=clone) as demo:
        code = demo.popen.wait(timeout=DEMO_S + 120)
    printed = demo.log_text()
    assert code == 0, printed
    assert "Decisions by action and reason" in printed and "Replicas over time" in printed
    # The fleet replayed the clone's trace: the operator saw its load.
    assert max(float(load) for load in OBSERVED_LOAD.findall(printed)) > 0, printed

    # The operator scaled up (its own decision log says so), and the demo showed it as it happened.
    # (The log may end with decisions made while the demo was stopping, which it no longer shows.)
    decisions = decision_records((workdir / "operator.log").read_text().splitlines())
    ups = [d for d in decisions if d["action"] == "ScaleUp"]
    assert ups and all(d["to"] > d["from"] for d in ups), printed
    assert SCALE_UP.findall(printed)[0] == (str(ups[0]["from"]), str(ups[0]["to"])), printed
    summary = SUMMARY.search(printed)
    assert summary is not None, printed
    assert 1 <= int(summary.group(1)) <= len(ups)
    # The policy is predictive: the forecast set the count at least once, and the summary says so.
    forecast = [d for d in decisions if (d.get("output") or {}).get("path") == "forecast"]
    shown_forecast = int(summary.group(3))
    assert 1 <= shown_forecast <= len(forecast), printed
    assert f"forecast  {shown_forecast:>4}" in printed and "Decisions by path" in printed
    assert re.search(r"lead time: [0-9.]+s \((measured|default)", printed), printed
    # The fleet followed the operator: more than one replica became ready during the run.
    ready = [int(row[2]) for row in TIMELINE_ROW.findall(printed.split("Replicas over time")[1])]
    assert max(ready) >= 2, printed

    # Every process the demo started (API server, Prometheus, operator, fleet) names the workdir, and
    # inherits the clone in its PYTHONPATH: none may outlive the run.
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
