"""Does our traffic backtest reproduce the reference judge? Every scenario, every baseline, both examples.

    python benchmarks/traffic_judge_parity.py [--scenario NAME ...]

For each scenario of ``../shared/bench/traffic/scenarios`` it runs the baselines (``none``,
``istio-typical``, ``aggressive``, and ``flagger`` where the scenario has a canary) and each
example timeline of ``../shared/bench/traffic/examples`` whose number prefix names the scenario
(``05_shift_to_h100.csv`` goes with ``05_slow_pool.json``), once with
:mod:`controller.backtest.traffic` and once with the judge's ``evaluate.py`` as a subprocess
(never imported). It prints a Markdown table with both numbers (``ours / judge``, bold when they
differ) of the main scores, how many of the judge's JSON fields are equal (all but
``runtime_s``, with the judge's rounding), whether the decisions CSV we write equals the judge's
``--write-decisions`` (baselines), and the in-process runtime of both. The exit status is 1 when
anything differs. The judge and its data live in ``../shared``; without it the script says so
and exits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.backtest.traffic.baselines import BASELINES
from controller.backtest.traffic.flagger import FlaggerParams
from controller.backtest.traffic.run import RunOptions, run_baseline, run_scenario
from controller.backtest.traffic.scenario import Scenario, load_scenario
from controller.backtest.traffic.timeline import read_decisions, write_decisions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
JUDGE_DIR = SHARED / "bench/traffic"
DATA_DIR = SHARED / "data/llm_traces"
# (column, JSON field, format) of the scores shown side by side.
SHOWN = (
    ("goodput", "goodput", ".4f"),
    ("errors", "error_share", ".4f"),
    ("SLO min", "slo_attainment_minutes", ".4f"),
    ("p95 TTFT s", "ttft_p95_s", ".3f"),
    ("p95 TPOT s", "tpot_p95_s", ".4f"),
    ("attempts/req", "attempts_per_request", ".4f"),
    ("ejections", "ejections", "d"),
    ("false ej. s", "false_ejection_host_s", ".1f"),
    ("true ej. s", "true_ejection_host_s", ".1f"),
)


@dataclass(frozen=True)
class Row:
    scenario: str
    policy: str
    ours: dict[str, object]
    judge: dict[str, object]
    decisions_equal: bool | None  # None: not compared (a given timeline)

    @property
    def differing(self) -> list[str]:
        keys = (set(self.ours) | set(self.judge)) - {"runtime_s"}
        return sorted(k for k in keys if self.ours.get(k) != self.judge.get(k))

    @property
    def compared(self) -> int:
        return len((set(self.ours) | set(self.judge)) - {"runtime_s"})


def judge(scenario: Path, *args: str) -> dict[str, object]:
    command = [sys.executable, "evaluate.py", "--scenario", str(scenario), "--data", str(DATA_DIR), *args]
    done = subprocess.run(command, cwd=JUDGE_DIR, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def baseline_row(path: Path, scenario: Scenario, name: str, scratch: Path) -> Row:
    theirs_csv, ours_csv = scratch / "judge.csv", scratch / "ours.csv"
    theirs = judge(path, "--baseline", name, "--write-decisions", str(theirs_csv))
    result = run_baseline(scenario, name)
    write_decisions(ours_csv, result.decisions)
    same = ours_csv.read_text() == theirs_csv.read_text()
    return Row(scenario.name, name, result.judge_fields(), theirs, same)


def timeline_row(path: Path, scenario: Scenario, timeline_path: Path) -> Row:
    theirs = judge(path, "--decisions", str(timeline_path))
    result = run_scenario(scenario, read_decisions(timeline_path))
    return Row(scenario.name, timeline_path.name, result.judge_fields(), theirs, None)


@dataclass(frozen=True)
class Probe:
    """A feature-heavy scenario of our own on the judge's trace, for rules the judge's scenarios leave alone."""

    name: str
    what: str
    scenario: dict[str, object]
    policy: str | list[tuple[float, str, str, float]]  # a baseline, or timeline rows
    options: dict[str, float] = field(default_factory=dict)  # judge option (without --) -> value


def _probe_scenario(name: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name,
        "trace": str(DATA_DIR / "azure_llm_2023_conv.csv"),
        "duration_s": 400,
        "rate": 4.0,
        "seed": 11,
        "subsets": [{"name": "stable", "hosts": 8}],
        "faults": [],
    }
    return base | fields


def _error(subset: str, p: float, status: int, **more: object) -> dict[str, object]:
    return {"type": "error", "subset": subset, "p": p, "status": status, **more}


SLOW_CANARY: dict[str, object] = {
    "duration_s": 900,
    "subsets": [{"name": "stable", "hosts": 6, "weight": 80}, {"name": "canary", "hosts": 4, "weight": 20}],
    "faults": [{"type": "slow", "subset": "canary", "start_s": 0, "factor": 1.3}],
}
OUTLIER_ALL = [
    ("stable", "consecutive5xxErrors", 1),
    ("stable", "maxEjectionPercent", 100),
    ("stable", "maxRetries", 2),
]
PROBES = (
    Probe(
        "p1_two_pools",
        "gateway and 5xx ejection on two subsets, flapping 503s, pool limits lowered and raised, interval change",
        _probe_scenario(
            "p1_two_pools",
            rate=6.0,
            subsets=[{"name": "a", "hosts": 6, "weight": 70}, {"name": "b", "hosts": 4, "speed": 0.7, "weight": 30}],
            faults=[
                _error("a", 0.3, 503, hosts=[0, 1], start_s=50, end_s=350, on_s=20, every_s=45),
                _error("b", 0.6, 500, hosts=[2], start_s=100),
            ],
        ),
        [
            (0, "a", "consecutiveGatewayErrors", 2),
            (0, "a", "consecutive5xxErrors", 3),
            (0, "a", "maxEjectionPercent", 30),
            (0, "b", "consecutive5xxErrors", 2),
            (0, "b", "maxEjectionPercent", 50),
            (0, "a", "baseEjectionTime_s", 5),
            (0, "a", "maxRetries", 3),
            (0, "b", "maxRetries", 1),
            (0, "a", "http2MaxRequests", 64),
            (0, "a", "http1MaxPendingRequests", 8),
            (100, "a", "interval_s", 3),
            (150, "a", "weight", 40),
            (150, "b", "weight", 60),
            (200, "a", "http2MaxRequests", 20),
            (260, "a", "http2MaxRequests", 200),
            (300, "b", "interval_s", 25),
        ],
    ),
    Probe(
        "p2_no_healthy_upstream",
        "a hung subset then a 502 host, everything ejectable, panic threshold 0",
        _probe_scenario(
            "p2_no_healthy_upstream",
            faults=[
                {"type": "hang", "subset": "stable", "start_s": 60, "end_s": 200},
                _error("stable", 1.0, 502, hosts=[3], start_s=220),
            ],
        ),
        [(0, *row) for row in OUTLIER_ALL],
        {"panic-threshold": 0, "request-timeout-s": 5, "max-ejection-time-s": 45},
    ),
    Probe(
        "p3_warp_loop_limits",
        "trace start past its end (looping), three rates, overlapping slow faults, a hang, pool limits, options",
        _probe_scenario(
            "p3_warp_loop_limits",
            trace_start_s=3300,
            rate=5.0,
            rate_changes=[[60, 0.5], [90, 15.0], [200, 2.0]],
            duration_s=360,
            faults=[
                {"type": "slow", "subset": "stable", "hosts": [1, 2], "start_s": 30, "end_s": 250, "factor": 2.5},
                {
                    "type": "slow",
                    "subset": "stable",
                    "hosts": [2, 5],
                    "start_s": 100,
                    "factor": 1.5,
                    "on_s": 10,
                    "every_s": 25,
                },
                {"type": "hang", "subset": "stable", "hosts": [6], "start_s": 120, "end_s": 170},
            ],
        ),
        [
            (0, "stable", "maxRetries", 2),
            (0, "stable", "consecutive5xxErrors", 2),
            (0, "stable", "http2MaxRequests", 300),
            (0, "stable", "http1MaxPendingRequests", 40),
            (120, "stable", "http2MaxRequests", 150),
            (180, "stable", "http1MaxPendingRequests", 0),
            (220, "stable", "http2MaxRequests", 0),
        ],
        {"retry-backoff-s": 0.5, "max-seqs": 32, "seed": 99},
    ),
    Probe(
        "p4_no_route",
        "all weights 0 (no route), then weights on and off",
        _probe_scenario(
            "p4_no_route",
            rate=2.0,
            duration_s=200,
            subsets=[{"name": "x", "hosts": 2, "weight": 0}, {"name": "y", "hosts": 3, "weight": 0}],
        ),
        [(50, "x", "weight", 5), (120, "y", "weight", 1), (150, "x", "weight", 0), (180, "y", "weight", 0)],
    ),
    Probe(
        "p5_mixed_statuses",
        "500s, 502s and 504s (errors and timeouts of a very slow host) on the same hosts, ejection % changed",
        _probe_scenario(
            "p5_mixed_statuses",
            rate=5.0,
            duration_s=500,
            faults=[
                _error("stable", 0.5, 500, hosts=[2, 3], start_s=40, end_s=400),
                {"type": "slow", "subset": "stable", "hosts": [3, 4], "start_s": 60, "end_s": 300, "factor": 60.0},
                _error("stable", 0.7, 504, hosts=[4], start_s=100, on_s=40, every_s=40),
                _error("stable", 0.3, 502, hosts=[4], start_s=120),
            ],
        ),
        [
            (0, "stable", "consecutiveGatewayErrors", 2),
            (0, "stable", "consecutive5xxErrors", 4),
            (0, "stable", "maxEjectionPercent", 40),
            (0, "stable", "maxRetries", 1),
            (0, "stable", "baseEjectionTime_s", 7),
            (200, "stable", "maxEjectionPercent", 0),
            (320, "stable", "maxEjectionPercent", 100),
            (330, "stable", "baseEjectionTime_s", 100),
        ],
    ),
    Probe(
        "p6_canary_tpot",
        "Flagger with its TPOT check on a slightly slower canary",
        _probe_scenario("p6_canary_tpot", **SLOW_CANARY),
        "flagger",
        {"flagger-tpot-p99-s": 0.03},
    ),
    Probe(
        "p6b_canary_ttft",
        "Flagger every 45 s with a tight TTFT limit",
        _probe_scenario("p6b_canary_ttft", **SLOW_CANARY),
        "flagger",
        {"flagger-interval-s": 45, "flagger-ttft-p99-s": 0.8},
    ),
    Probe(
        "p7_half_hung",
        "five of eight hosts hang for 600 s, small engines, no panic",
        _probe_scenario(
            "p7_half_hung",
            trace_start_s=5000,
            rate=3.0,
            duration_s=1500,
            seed=5,
            faults=[{"type": "hang", "subset": "stable", "hosts": [0, 1, 2, 3, 4], "start_s": 100, "end_s": 700}],
        ),
        "istio-typical",
        {
            "panic-threshold": 0,
            "max-seqs": 8,
            "prefill-tps": 6000,
            "step-base-s": 0.02,
            "window-s": 30,
            "slo-quantile": 0.9,
            "ttft-slo-s": 1.0,
        },
    ),
)


def _probe_options(options: dict[str, float], scenario: Scenario) -> tuple[RunOptions, FlaggerParams]:
    """Our options equal to the judge's command-line options of a probe."""
    engine_fields = {"max-seqs": "max_seqs", "prefill-tps": "prefill_tokens_per_s", "step-base-s": "step_base_s"}
    proxy_fields = {
        "request-timeout-s": "request_timeout_s",
        "panic-threshold": "panic_threshold",
        "max-ejection-time-s": "max_ejection_time_s",
        "retry-backoff-s": "retry_backoff_s",
    }
    slo_fields = {"ttft-slo-s": "ttft_s", "window-s": "window_s", "slo-quantile": "quantile"}
    flagger_fields = {
        "flagger-interval-s": "interval_s",
        "flagger-ttft-p99-s": "ttft_p99_s",
        "flagger-tpot-p99-s": "tpot_p99_s",
    }
    known = {*engine_fields, *proxy_fields, *slo_fields, *flagger_fields, "seed"}
    if set(options) - known:
        raise ValueError(f"unmapped judge options: {sorted(set(options) - known)}")

    def pick(names: dict[str, str]) -> dict[str, Any]:
        return {ours: options[theirs] for theirs, ours in names.items() if theirs in options}

    base = RunOptions()
    engine = pick(engine_fields)
    if "max_seqs" in engine:
        engine["max_seqs"] = int(engine["max_seqs"])
    run = RunOptions(
        engine=replace(base.engine, **engine),
        proxy=replace(base.proxy, **pick(proxy_fields)),
        seed=int(options["seed"]) if "seed" in options else None,
        slo=replace(scenario.slo, **pick(slo_fields)) if pick(slo_fields) else None,
    )
    return run, replace(FlaggerParams(), **pick(flagger_fields))


def probe_row(probe: Probe, scratch: Path) -> Row:
    path = scratch / f"{probe.name}.json"
    path.write_text(json.dumps(probe.scenario))
    scenario = load_scenario(path)
    options, flagger = _probe_options(probe.options, scenario)
    args = [f"--{name}={value:g}" for name, value in probe.options.items()]
    if isinstance(probe.policy, str):
        theirs = judge(path, "--baseline", probe.policy, *args)
        result = run_baseline(scenario, probe.policy, options, flagger)
        label = probe.policy
    else:
        rows_path = scratch / f"{probe.name}.csv"
        rows_path.write_text(
            "time_s,subset,field,value\n" + "".join(f"{t},{s},{f},{v}\n" for t, s, f, v in probe.policy)
        )
        theirs = judge(path, "--decisions", str(rows_path), *args)
        result = run_scenario(scenario, read_decisions(rows_path), options)
        label = rows_path.name
    return Row(probe.name, label + "".join(f" {a}" for a in args), result.judge_fields(), theirs, None)


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join("none" if v is None else _cell(v, fmt) for v in value) or "-"
    if isinstance(value, (int, float)):
        return format(value, fmt)
    return str(value)


def _pair(ours: object, theirs: object, fmt: str) -> str:
    """``ours / judge``, in bold when they differ."""
    text = f"{_cell(ours, fmt)} / {_cell(theirs, fmt)}"
    return text if ours == theirs else f"**{text}**"


def _flagger_text(fields: dict[str, object]) -> str | None:
    flagger = fields.get("flagger")
    if not isinstance(flagger, dict):
        return None
    at = flagger["at_s"]
    return str(flagger["result"]) + ("" if at is None else f" at {at:g} s")


def table(rows: list[Row]) -> str:
    header = ["scenario", "policy", *(c for c, _, _ in SHOWN), "detect s", "flagger", "fields equal", "decisions.csv"]
    header += ["runtime s"]
    lines = ["| " + " | ".join(header) + " |", "|---|---" + "|---:" * (len(header) - 2) + "|"]
    for row in rows:
        cells = [row.scenario, row.policy]
        cells += [_pair(row.ours.get(key), row.judge.get(key), fmt) for _, key, fmt in SHOWN]
        cells.append(_pair(row.ours.get("detect_s"), row.judge.get("detect_s"), ".3f"))
        cells.append(_pair(_flagger_text(row.ours), _flagger_text(row.judge), ""))
        cells.append(f"{row.compared - len(row.differing)}/{row.compared}")
        cells.append({None: "-", True: "equal", False: "**differs**"}[row.decisions_equal])
        cells.append(f"{_cell(row.ours['runtime_s'], '.2f')} / {_cell(row.judge['runtime_s'], '.2f')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="*", default=[], help="scenario names (default: all)")
    parser.add_argument("--skip-probes", action="store_true", help="only the judge's scenarios and examples")
    args = parser.parse_args()
    if not (JUDGE_DIR / "evaluate.py").is_file():
        print(f"no traffic judge at {JUDGE_DIR}: nothing to compare (the benchmark needs ../shared)")
        return 0
    rows: list[Row] = []
    examples = sorted((JUDGE_DIR / "examples").glob("*.csv"))
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted((JUDGE_DIR / "scenarios").glob("*.json")):
            if args.scenario and path.stem not in args.scenario:
                continue
            scenario = load_scenario(path, DATA_DIR)
            for name in BASELINES:
                if name != "flagger" or scenario.has_canary:
                    rows.append(baseline_row(path, scenario, name, Path(scratch)))
            prefix = path.stem.split("_", 1)[0] + "_"
            rows.extend(timeline_row(path, scenario, e) for e in examples if e.name.startswith(prefix))
            print(f"{path.stem}: done", file=sys.stderr)
        probes = [] if args.skip_probes else [probe_row(probe, Path(scratch)) for probe in PROBES]
    print("Each cell: ours / judge (bold when they differ); runtime is each simulator's own in-process time.\n")
    print(table(rows))
    if probes:
        print("\nFeature probes (our scenarios on the judge's trace; the judge run with the options shown):\n")
        print(table(probes))
        print()
        for probe in PROBES:
            print(f"- {probe.name}: {probe.what}")
    rows += probes
    mismatched = [r for r in rows if r.differing or r.decisions_equal is False]
    for row in mismatched:
        print(f"\n{row.scenario} / {row.policy}: differing fields {', '.join(row.differing) or '-'}")
        for key in row.differing:
            print(f"  {key}: ours {row.ours.get(key)!r}, judge {row.judge.get(key)!r}")
    print(f"\n{len(rows) - len(mismatched)} of {len(rows)} runs reproduce the judge exactly.")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
