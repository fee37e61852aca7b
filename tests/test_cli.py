"""The ``infercast`` command as a user meets it: a version, help with defaults and the environment, and
every user mistake as one line on stderr with exit code 2, never a traceback.

Each case runs the real command in a subprocess, as a shell would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
POLICY = REPO / "examples" / "backtest-policy.yaml"


def infercast(*args: str, preamble: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``infercast ARGS`` in a fresh interpreter; ``preamble`` runs first (to hide a module, say)."""
    code = f"{preamble}\nimport sys\nfrom controller.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd or REPO)},  # no KUBECONFIG, no cluster
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], command: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"infercast {command}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_version() -> None:
    result = infercast("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("infercast ") and result.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("command", ["run", "explain", "backtest", "backtest-traffic"])
def test_help_shows_defaults_with_units(command: str) -> None:
    result = infercast(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(default:" in text
    expected = {
        "run": ("(default: 8080)", "KUBECONFIG", "INFERCAST_KUBE_CONNECTIONS", "INFERCAST_FORECAST_PROCESSES"),
        "explain": ("(default: 20)", "KUBECONFIG"),
        "backtest": ("seconds", "infercast[backtest]"),
        "backtest-traffic": (
            "decisions.csv",
            "infercast[backtest]",
            "(default: none,istio-typical,aggressive,flagger)",
        ),
    }[command]
    for word in expected:
        assert word in text, word


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    not_a_trace = tmp_path / "not_a_trace.csv"
    not_a_trace.write_text("time,requests\n0,1\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("spec: [unclosed\n")
    reactive = tmp_path / "reactive.yaml"
    reactive.write_text(
        "spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: v}\n  maxReplicas: 4\n"
        "  prometheus: {url: 'http://p:9090'}\n"
        "  metrics: [{name: w, preset: vllm-requests-waiting, target: {type: AverageValue, value: 4}}]\n"
    )
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,100,10\n")
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return {
        "not_a_trace": not_a_trace,
        "bad_yaml": bad_yaml,
        "reactive": reactive,
        "trace": trace,
        "unreachable": unreachable,
        "out": tmp_path / "out",
        "missing": tmp_path / "missing.csv",
    }


@pytest.mark.parametrize(
    ("case", "args", "words"),
    [
        ("missing trace", ["--trace", "{missing}", "--policy", str(POLICY)], ("missing.csv", "No such file")),
        ("not a trace", ["--trace", "{not_a_trace}", "--policy", str(POLICY)], ("TIMESTAMP", "ContextTokens")),
        ("missing policy", ["--trace", "{trace}", "--policy", "{missing}"], ("missing.csv",)),
        ("bad YAML", ["--trace", "{trace}", "--policy", "{bad_yaml}"], ("not valid YAML",)),
        ("no forecast", ["--trace", "{trace}", "--policy", "{reactive}"], ("InvalidForecast", "spec.forecast")),
        ("unknown baseline", ["--trace", "{trace}", "--policy", str(POLICY), "--baselines", "vpa"], ("vpa",)),
        ("no query", ["--prometheus", "http://127.0.0.1:9", "--policy", str(POLICY)], ("--query",)),
        (
            "unreachable Prometheus",
            ["--prometheus", "http://127.0.0.1:9", "--query", "up", "--policy", str(POLICY)],
            ("127.0.0.1:9",),
        ),
    ],
)
def test_backtest_refuses_what_it_cannot_use_in_one_line(
    files: dict[str, Path], case: str, args: list[str], words: tuple[str, ...]
) -> None:
    argv = ["backtest", *(a.format(**{k: str(v) for k, v in files.items()}) for a in args), "--out", str(files["out"])]
    assert_one_line_refusal(infercast(*argv), "backtest", *words)


def test_explain_without_a_cluster_refuses_in_one_line(files: dict[str, Path]) -> None:
    assert_one_line_refusal(infercast("explain", "demo/vllm"), "explain", "kubeconfig")
    unreachable = infercast("explain", "demo/vllm", "--kubeconfig", str(files["unreachable"]))
    assert_one_line_refusal(unreachable, "explain")
    assert_one_line_refusal(infercast("explain", "vllm"), "explain", "NAMESPACE/NAME")
    assert_one_line_refusal(infercast("explain", "demo/vllm", "--log", str(files["missing"])), "explain", "missing")


def test_explain_reads_a_log_with_no_kubeconfig_and_no_cluster(tmp_path: Path) -> None:
    record = {
        "event": "decision",
        "schema": 1,
        "kind": "ScalingPolicy",
        "policy": "demo/vllm",
        "target": "Deployment/vllm",
        "mode": "Auto",
        "id": "abc",
        "time": "2026-01-01T00:00:00Z",
        "action": "ScaleUp",
        "from": 1,
        "to": 2,
        "applied": True,
        "reason": "ScaleUpRecommended",
        "reasons": ["ScaleUpRecommended"],
        "message": "the queue grew",
        "inputs": {},
        "output": {},
    }
    log = tmp_path / "operator.log"
    log.write_text("a Kopf line\n" + json.dumps(record) + "\n")
    result = infercast("explain", "demo/vllm", "--log", str(log), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ScaleUp" in result.stdout and "1 -> 2" in result.stdout and "the queue grew" in result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 1, "at most one line saying the status was not read"


def test_a_missing_extra_is_named_before_anything_runs(files: dict[str, Path]) -> None:
    hide_tqdm = "import sys; sys.modules['tqdm'] = None"
    argv = ["backtest", "--trace", str(files["trace"]), "--policy", str(POLICY), "--out", str(files["out"])]
    assert_one_line_refusal(infercast(*argv, preamble=hide_tqdm), "backtest", "tqdm", "infercast[backtest]")
    assert not files["out"].exists(), "refused before simulating anything"


def test_a_baseline_whose_extra_is_missing_is_named_before_anything_runs(files: dict[str, Path]) -> None:
    hide_prophet = "import sys; sys.modules['prophet'] = None"
    argv = ["backtest", "--trace", str(files["trace"]), "--policy", str(POLICY), "--out", str(files["out"])]
    refusal = infercast(*argv, "--baselines", "hpa,dynamo-prophet", preamble=hide_prophet)
    assert_one_line_refusal(refusal, "backtest", "dynamo-prophet", "infercast[prophet]")
    assert not files["out"].exists(), "refused before simulating anything"


TRAFFIC_POLICY = REPO / "examples" / "traffic-backtest.yaml"


@pytest.fixture
def traffic_files(files: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A tiny scenario on a tiny trace (two hosts, one failing), and policy files that are no use."""
    trace = tmp_path / "tiny.csv"
    rows = [f"2023-11-16 18:00:{second:02d}.{tenth}00,500,20" for second in range(40) for tenth in range(0, 10, 2)]
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    scenario = tmp_path / "tiny.json"
    faults = [{"type": "error", "subset": "stable", "hosts": [1], "start_s": 10, "p": 0.5, "status": 500}]
    scenario.write_text(
        json.dumps(
            {"name": "tiny", "trace": "tiny.csv", "duration_s": 30, "rate": 1, "seed": 3, "faults": faults,
             "subsets": [{"name": "stable", "hosts": 2}]}
        )
    )  # fmt: skip
    not_a_scenario = tmp_path / "not_a_scenario.json"
    not_a_scenario.write_text('{"name": "x", "trace": "tiny.csv"}')
    missing_trace = tmp_path / "missing_trace.json"
    missing_trace.write_text(scenario.read_text().replace("tiny.csv", "nowhere.csv"))
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(
        "kind: CircuitBreakerPolicy\nspec:\n  targetRef: {apiVersion: networking.istio.io/v1, kind: DestinationRule,"
        " name: v}\n  prometheus: {url: 'http://p:9090'}\n  backends:\n"
        "  - {name: stable, subset: stable, workloadRef: {apiVersion: apps/v1, kind: Deployment, name: v}}\n"
    )
    return {**files, "scenario": scenario, "not_a_scenario": not_a_scenario, "missing_trace": missing_trace,
            "invalid": invalid}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "args", "words"),
    [
        ("missing scenario", ["--scenario", "{missing}", "--policy", str(TRAFFIC_POLICY)], ("missing.csv",)),
        ("not a scenario", ["--scenario", "{not_a_scenario}", "--policy", str(TRAFFIC_POLICY)], ("duration_s",)),
        ("missing trace", ["--scenario", "{missing_trace}", "--policy", str(TRAFFIC_POLICY)], ("nowhere.csv",)),
        ("missing policy", ["--scenario", "{scenario}", "--policy", "{missing}"], ("missing.csv",)),
        ("bad YAML", ["--scenario", "{scenario}", "--policy", "{bad_yaml}"], ("not valid YAML",)),
        ("no traffic policy", ["--scenario", "{scenario}", "--policy", "{reactive}"], ("no CircuitBreakerPolicy",)),
        (
            "invalid spec",
            ["--scenario", "{scenario}", "--policy", "{invalid}"],
            ("InvalidBackend", "requestsPerReplica"),
        ),
        (
            "unknown baseline",
            ["--scenario", "{scenario}", "--policy", str(TRAFFIC_POLICY), "--baselines", "envoy"],
            ("envoy", "istio-typical"),
        ),
    ],
)
def test_backtest_traffic_refuses_what_it_cannot_use_in_one_line(
    traffic_files: dict[str, Path], case: str, args: list[str], words: tuple[str, ...]
) -> None:
    named = {k: str(v) for k, v in traffic_files.items()}
    argv = ["backtest-traffic", *(a.format(**named) for a in args), "--out", str(traffic_files["out"])]
    assert_one_line_refusal(infercast(*argv), "backtest-traffic", *words)


def test_backtest_traffic_needs_matplotlib_for_its_plots_only(traffic_files: dict[str, Path]) -> None:
    hide = "import sys; sys.modules['matplotlib'] = None"
    argv = ["backtest-traffic", "--scenario", str(traffic_files["scenario"]), "--policy", str(TRAFFIC_POLICY)]
    out = traffic_files["out"]
    assert_one_line_refusal(infercast(*argv, "--out", str(out), preamble=hide), "backtest-traffic", "matplotlib")
    assert not out.exists(), "refused before simulating anything"
    done = infercast(*argv, "--out", str(out), "--no-plot", "--baselines", "none", preamble=hide)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["decisions.csv", "summary.json", "summary.md", "verdicts.csv"]


def test_backtest_traffic_writes_the_judges_timeline_a_summary_and_a_plot_per_subset(
    traffic_files: dict[str, Path],
) -> None:
    out = traffic_files["out"]
    argv = ["--scenario", str(traffic_files["scenario"]), "--policy", str(TRAFFIC_POLICY), "--out", str(out)]
    done = infercast("backtest-traffic", *argv, cwd=traffic_files["scenario"].parent)
    assert done.returncode == 0, done.stderr
    assert (out / "decisions.csv").read_text().startswith("time_s,subset,field,value\n")
    table = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[1:] == ["none", "istio-typical", "aggressive", "infercast"]  # flagger: no canary here
    assert "RoutingPolicy vllm-canary: not acting" in done.stdout
    assert (out / "plot-stable.png").read_bytes()[:4] == b"\x89PNG"
