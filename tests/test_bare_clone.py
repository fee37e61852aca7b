"""A bare clone is all a user needs: the demo runs from a fresh clone with nothing beside it.

The clone is of the committed ``HEAD`` (what a user gets, not this working tree), in an empty
directory, so no shared data folder exists next to it: the demo's trace must come from the clone. It
runs with this test's Python and installed dependencies but the clone's source: the clone is the
working directory and ``PYTHONPATH``, which the demo's children (API server, fleet, operator)
inherit. ``.ci/run`` proves the same for every commit through ``make test``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from devtools.processes import start_process
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

#: The shortest demo that still replays the whole trace slice (compressed 90x) through the fleet.
DEMO_S = 30
OBSERVED_LOAD = re.compile(r"observed load ([0-9.]+)")


def clone_head(into: pathlib.Path) -> pathlib.Path:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    clone = into / "infercast"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
    return clone


def test_the_demo_runs_from_a_bare_clone(tmp_path: pathlib.Path) -> None:
    clone = clone_head(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["infercast"]
    assert not (clone.parent / "shared").exists()
    # The demo's temporary workdir goes under tmp_path too.
    env = {"PYTHONPATH": str(clone), "TMPDIR": str(tmp_path)}
    imported = subprocess.run(
        [sys.executable, "-c", "import controller; print(controller.__file__)"],
        cwd=clone, env={**os.environ, **env}, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert pathlib.Path(imported).is_relative_to(clone)

    argv = [sys.executable, "-m", "devtools.demo", "--duration", str(DEMO_S)]
    with start_process(argv, log_path=tmp_path / "demo.out", env=env, cwd=clone) as demo:
        code = demo.popen.wait(timeout=DEMO_S + 120)
    printed = demo.log_text()
    assert code == 0, printed
    assert "Decisions by action and reason" in printed and "Replicas over time" in printed
    # The fleet replayed the clone's trace: the operator saw its load.
    assert max(float(load) for load in OBSERVED_LOAD.findall(printed)) > 0, printed
