"""``infercast backtest-traffic``: our traffic policies closed loop on a judge scenario, with outputs.

Runs the CircuitBreakerPolicy and RoutingPolicy documents of ``--policy`` (one YAML file may hold
several) on ``--scenario`` (the traffic judge's format) through the operator's decide step
(:mod:`controller.backtest.traffic.policy`), runs the judge's baselines on the same scenario, and
writes to ``--out``:

* ``decisions.csv``: our settings over time, in the judge's ``time_s,subset,field,value`` format
  (``evaluate.py --decisions`` scores it);
* ``summary.md`` and ``summary.json``: our row beside the baselines', in the judge's fields;
* ``verdicts.csv``: how each policy judged each backend at each decision;
* ``plot-<subset>.png`` per subset (unless ``--no-plot``).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from controller.backtest.traffic.baselines import BASELINES
from controller.backtest.traffic.policy import CIRCUIT_BREAKER, ROUTING, PolicyDocument, TrafficPolicies
from controller.backtest.traffic.report import promoted_at, summary_markdown
from controller.backtest.traffic.run import RunOptions, run_baseline, run_with_record
from controller.backtest.traffic.scenario import Scenario, load_scenario
from controller.backtest.traffic.timeline import Timeline, write_decisions
from controller.errors import InputError
from controller.traffic.spec import (
    CircuitBreakerPolicySpec,
    RoutingPolicySpec,
    parse_circuit_breaker_policy,
    parse_routing_policy,
)

#: The name of our row in the summary and the plots.
OURS = "infercast"
_PARSERS: dict[str, Callable[[Mapping[str, Any]], CircuitBreakerPolicySpec | RoutingPolicySpec]] = {
    CIRCUIT_BREAKER: parse_circuit_breaker_policy,
    ROUTING: parse_routing_policy,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", type=Path, required=True, help="scenario file of the traffic judge (JSON or YAML)"
    )
    parser.add_argument(
        "--policy",
        type=Path,
        required=True,
        help="YAML with CircuitBreakerPolicy and/or RoutingPolicy documents (backends name the scenario's subsets)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--data", type=Path, help="folder searched for the scenario's trace when it is not next to the scenario"
    )
    parser.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help="comma-separated judge baselines to run beside ours ('' for none); flagger only on canary scenarios",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the plots")


def load_policies(path: Path) -> list[PolicyDocument]:
    """The policy documents of a YAML file; other documents (the Istio objects they tune) are skipped."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise InputError("UnreadablePolicy", f"cannot read the policy {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError("BadYAML", f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    policies = []
    for number, document in enumerate(documents, 1):
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind not in _PARSERS:
            continue
        metadata = document.get("metadata") or {}
        name = str(metadata.get("name") or f"{kind.lower()}-{number}")
        spec = _PARSERS[kind](document.get("spec") or {})
        policies.append(PolicyDocument(kind, name, spec, int(metadata.get("generation") or 1)))
    if not policies:
        raise InputError("NoPolicy", f"{path}: no CircuitBreakerPolicy or RoutingPolicy in it")
    return policies


def read_scenario(path: Path, data: Path | None) -> Scenario:
    """The scenario, or one line saying why it cannot be used."""
    try:
        return load_scenario(path, data)
    except FileNotFoundError as exc:
        raise InputError("MissingFile", str(exc) if not path.is_file() else f"{path}: {exc}") from exc
    except OSError as exc:
        raise InputError("UnreadableScenario", f"cannot read the scenario {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise InputError("BadScenario", f"{path} is not a traffic scenario: {detail}") from exc


def run_backtest(
    scenario: Scenario,
    documents: Sequence[PolicyDocument],
    out: Path,
    *,
    baselines: Sequence[str] = BASELINES,
    plot: bool = True,
    options: RunOptions | None = None,
) -> list[dict[str, Any]]:
    """Run ours and the baselines, write every output, return the judge's rows (baselines, then ours)."""
    out.mkdir(parents=True, exist_ok=True)
    policies = TrafficPolicies(documents, scenario)
    acting = policies if policies.loops else Timeline((), name=OURS)
    result, record = run_with_record(scenario, acting, options, name=OURS)
    notes = list(policies.notes)
    served = {s for loop in policies.loops for s in loop.subsets.values()}
    notes += [f"subset {s.name}: no policy of the file serves it" for s in scenario.subsets if s.name not in served]
    rows: list[dict[str, Any]] = []
    promotions: dict[str, float | None] = {OURS: promoted_at(result.decisions, scenario)}
    for name in baselines:
        if name == "flagger" and not (scenario.has_canary and len(scenario.subsets) == 2):
            continue
        baseline = run_baseline(scenario, name, options)
        rows.append(baseline.judge_fields())
        promotions[name] = (
            None if baseline.flagger is None or baseline.flagger.result != "promoted" else baseline.flagger.at_s
        )
    rows.append(result.judge_fields())
    write_decisions(out / "decisions.csv", result.decisions)
    _write_verdicts(out / "verdicts.csv", policies)
    (out / "summary.md").write_text(summary_markdown(rows, scenario, promotions, notes))
    (out / "summary.json").write_text(json.dumps({"rows": rows, "promoted_at_s": promotions, "notes": notes}, indent=1))
    if plot:
        from controller.backtest.traffic.plot import plot_subsets

        plot_subsets(record, result.decisions, policies.verdicts, out)
    return rows


def _write_verdicts(path: Path, policies: TrafficPolicies) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("time_s", "policy", "subset", "flagged", "failure_score", "reason"))
        for v in policies.verdicts:
            writer.writerow(
                (v.time_s, v.policy, v.subset, v.flagged, "" if v.score is None else f"{v.score:.4f}", v.reason)
            )


def main(args: argparse.Namespace) -> int:
    """``infercast backtest-traffic``; a user's mistake raises an InfercastError, printed in one line."""
    names = tuple(name for name in args.baselines.split(",") if name)
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise InputError("UnknownBaseline", f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINES)}")
    documents = load_policies(args.policy)
    scenario = read_scenario(args.scenario, args.data)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("UnwritableOut", f"cannot create {args.out}: {exc.strerror or exc}") from exc
    run_backtest(scenario, documents, args.out, baselines=names, plot=not args.no_plot)
    print((args.out / "summary.md").read_text(), end="")
    return 0
