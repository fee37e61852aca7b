"""``infercast backtest``: our policy and the baselines closed-loop on one trace, with outputs.

Baselines: the HPA and the KPA (reactive), and the forecasting planner of NVIDIA Dynamo with its
constant, ARIMA, Kalman or Prophet predictor (``dynamo-<predictor>``, :mod:`controller.backtest.planner`).
Writes to ``--out``: ``decisions.csv`` (``time_s,desired_replicas``, our policy's timeline, the
reference judge's input format; ``decisions-<baseline>.csv`` for each baseline), ``summary.md``
and ``summary.json`` (one row per policy, and what our policy learned: capacity per resource, lead
time, headroom), ``windows.csv`` (our policy's per-minute SLO table) and ``backtest.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml

from controller.backtest.baselines import HpaBaseline, KpaBaseline
from controller.backtest.engine import EngineParams
from controller.backtest.load_predictors import PREDICTORS
from controller.backtest.planner import PlannerBaseline
from controller.backtest.predictive import PredictiveController
from controller.backtest.score import SloTargets, Summary, markdown, summarize, window_table
from controller.backtest.simulate import Controller, Run, simulate
from controller.backtest.trace import Trace, load_trace
from controller.errors import InputError, SpecError
from controller.scaling.forecast_spec import ForecastSpec
from controller.scaling.spec import ScalingPolicySpec, parse_scaling_policy

#: Every baseline ``--baselines`` knows; the planner's by predictor.
BASELINES: tuple[str, ...] = ("hpa", "kpa", *(f"dynamo-{name}" for name in PREDICTORS))
DEFAULT_BASELINES: tuple[str, ...] = ("hpa", "kpa", "dynamo-constant", "dynamo-arima", "dynamo-kalman")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, help="trace CSV (Azure LLM schema; .csv.gz is fine)")
    source.add_argument("--prometheus", metavar="URL", help="replay a request rate from this Prometheus")
    parser.add_argument("--query", help="with --prometheus: PromQL giving the request rate (requests/s)")
    parser.add_argument("--start", help="with --prometheus: range start (RFC 3339 or Unix seconds; default end - 1h)")
    parser.add_argument("--end", help="with --prometheus: range end (default now)")
    parser.add_argument("--step", type=float, default=15.0, help="with --prometheus: range query step, seconds")
    parser.add_argument("--tokens-from", type=Path, help="with --prometheus: draw token counts from this trace")
    parser.add_argument("--seed", type=int, default=0, help="with --prometheus: seed of the synthesized arrivals")
    parser.add_argument("--policy", type=Path, required=True, help="ScalingPolicy YAML with a spec.forecast section")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--baselines",
        default=",".join(DEFAULT_BASELINES),
        help=f"comma-separated baselines to run too, of {', '.join(BASELINES)} ('' for none; "
        f"default {','.join(DEFAULT_BASELINES)}; dynamo-prophet needs the prophet extra)",
    )
    parser.add_argument(
        "--score-from-s",
        type=float,
        default=0.0,
        help="also report attainment without the windows starting before this many seconds (a warm-up; "
        "GPU-hours still count from 0; 300 suits one-hour traces)",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is no TTY")
    parser.add_argument("--no-plot", action="store_true", help="skip backtest.png")
    add_engine_arguments(parser)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`EngineParams` field (``--max-seqs``, ...), its default the engine's."""
    engine = parser.add_argument_group("the simulated replica (judge-equivalent engine model)")
    for field, default in asdict(EngineParams()).items():
        engine.add_argument(
            f"--{field.replace('_', '-')}",
            type=type(default),
            default=default,
            dest=field,
            help=f"{ENGINE_FLAG_HELP[field]} (default {default})",
        )


def engine_params(args: argparse.Namespace) -> EngineParams:
    """The engine that :func:`add_engine_arguments`' flags describe."""
    return EngineParams(**{name: getattr(args, name) for name in asdict(EngineParams())})


#: What each engine constant means, for ``--help`` (the fields of :class:`EngineParams`).
ENGINE_FLAG_HELP = {
    "max_seqs": "requests one replica holds at once: waiting for prefill, prefilling or decoding",
    "prefill_tokens_per_s": "prompt tokens one replica prefills per second",
    "step_base_s": "seconds of one decode step with no sequence in it",
    "step_per_seq_s": "seconds one decode step grows by per decoding sequence",
    "cold_start_s": "seconds from a replica's creation to ready (model load)",
}


def load_policy(path: Path) -> ScalingPolicySpec:
    """A ScalingPolicy manifest (or just its spec); refused without ``spec.forecast``."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError("UnreadablePolicy", f"cannot read the policy {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError("BadYAML", f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(document, dict):
        raise SpecError("InvalidSpec", f"{path}: not a YAML object")
    spec = parse_scaling_policy(document.get("spec", document))
    if spec.forecast is None:
        raise SpecError("InvalidForecast", f"{path}: spec.forecast is required for a predictive backtest")
    return spec


def initial_replicas(spec: ScalingPolicySpec) -> int:
    """The warm count at t = 0, from the policy alone: a backtest starts with no history, which is
    the case ``spec.fallback`` describes (``onMetricsUnavailable: Fallback`` -> ``fallback.replicas``);
    otherwise ``minReplicas``."""
    fallback = spec.fallback
    if fallback.on_metrics_unavailable == "Fallback" and fallback.replicas is not None:
        return max(1, spec.min_replicas, fallback.replicas)
    return max(1, spec.min_replicas)


def run_backtest(
    trace: Trace,
    spec: ScalingPolicySpec,
    params: EngineParams,
    out: Path,
    *,
    baselines: tuple[str, ...] = DEFAULT_BASELINES,
    progress: bool | None = None,
    plot: bool = True,
    slo: SloTargets | None = None,
    score_from_s: float = 0.0,
) -> list[Summary]:
    """Run our policy and the baselines, write every output, return the summaries (ours first).

    ``progress``: a bar per run on stderr (tqdm's) when True, none when False, on a TTY only when None.
    """
    from tqdm import tqdm  # the backtest extra's, as matplotlib is: the CLI checks both before it starts

    forecast = spec.forecast or ForecastSpec()
    slo = slo or SloTargets(ttft_s=forecast.slo.ttft_s, tpot_s=forecast.slo.tpot_s)
    out.mkdir(parents=True, exist_ok=True)
    ours = PredictiveController(spec)
    controllers: list[tuple[Controller, int]] = [(ours, initial_replicas(spec))]
    # The baselines start at one replica, as the judge's do; ours from its own warm start.
    controllers += [(baseline(name, params, slo, spec.max_replicas), 1) for name in baselines]
    summaries: list[Summary] = []
    runs: list[Run] = []
    horizon = trace.horizon_s(slo.window_s)
    for controller, initial in controllers:
        # tqdm draws on a TTY by default (progress None) and never elsewhere unless asked (True).
        with tqdm(
            total=horizon,
            desc=controller.name,
            unit="s",
            unit_scale=True,
            disable=None if progress is None else not progress,
        ) as bar:
            started = time.process_time()
            run = simulate(
                trace,
                controller,
                params,
                initial_replicas=initial,
                max_replicas=spec.max_replicas,
                progress=lambda done: bar.update(done - bar.n),
            )
            cpu_s = time.process_time() - started
        runs.append(run)
        summaries.append(replace(summarize(run, controller.name, slo, score_from_s), cpu_s=cpu_s))
    _write_decisions(out / "decisions.csv", runs[0])
    for (controller, _), run in zip(controllers[1:], runs[1:], strict=True):
        _write_decisions(out / f"decisions-{controller.name}.csv", run)
    window_table(runs[0], slo).to_csv(out / "windows.csv")
    learned = learned_summary(ours)
    (out / "summary.md").write_text(
        f"**{trace.name}** ({summaries[0].windows} non-empty windows)\n\n"
        + markdown(summaries)
        + "\n\n"
        + learned_markdown(learned)
        + "\n"
    )
    rows = [asdict(s) | {"trace": trace.name} for s in summaries]
    (out / "summary.json").write_text(json.dumps({"policies": rows, "learned": learned}, indent=1))
    if plot:
        from controller.backtest.plot import plot_run

        plot_run(
            runs[0],
            ours,
            dict(zip([c.name for c, _ in controllers[1:]], runs[1:], strict=True)),
            slo,
            out / "backtest.png",
            score_from_s,
        )
    return summaries


def baseline(name: str, params: EngineParams, slo: SloTargets, max_replicas: int) -> Controller:
    """The baseline called ``name`` (one of :data:`BASELINES`) for this engine and SLO."""
    if name == "hpa":
        return HpaBaseline(max_replicas=max_replicas)
    if name == "kpa":
        return KpaBaseline(max_replicas=max_replicas)
    predictor = name.removeprefix("dynamo-")
    assert predictor in PREDICTORS, f"unknown baseline {name}"
    return PlannerBaseline(predictor, params, slo.ttft_s, slo.tpot_s, max_replicas=max_replicas)  # type: ignore[arg-type]


def learned_summary(controller: PredictiveController) -> dict[str, object]:
    """What our policy learned of the fleet by the end of the run, for the summary."""
    lead = controller.lead_time
    return {
        "capacity": controller.capacity.to_status(),
        "leadTime": {"seconds": lead.seconds, "source": lead.source, "startups": len(lead.startups)},
        "slo": controller.attainment.to_status() | {"recent": None},
    }


def learned_markdown(learned: dict[str, Any]) -> str:
    capacity, lead, slo = learned["capacity"], learned["leadTime"], learned["slo"]
    parts = [
        f"{r['resource']} {r['perReplica'] if r['perReplica'] is not None else '-'} {r['unit']} ({r['source']}, "
        f"confidence {r['confidence']:.2f})"
        for r in capacity["resources"]
    ]
    return (
        f"infercast learned: capacity {capacity['perReplica']} per replica in the load's unit, "
        f"binding {capacity.get('binding', '-')} ({'; '.join(parts)}); lead time {lead['seconds']:.0f} s "
        f"({lead['source']}, {lead['startups']} start-ups); headroom {slo['headroom']:.2f} for a target of "
        f"{slo['target']:g}, realized {slo['realized']} over its last {slo['windowMinutes']} minutes "
        f"(its own measure, by completion time)."
    )


def _write_decisions(path: Path, run: Run) -> None:
    lines = ["time_s,desired_replicas", *(f"{d.time_s:g},{d.replicas}" for d in run.timeline)]
    path.write_text("\n".join(lines) + "\n")


def main(args: argparse.Namespace) -> int:
    """``infercast backtest``; a user's mistake raises :class:`InfercastError`, which the CLI prints in one line."""
    params = engine_params(args)
    names = tuple(name for name in args.baselines.split(",") if name)
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise InputError("UnknownBaseline", f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINES)}")
    spec = load_policy(args.policy)
    if args.trace is not None:
        trace = load_trace(args.trace)
    else:
        if not args.query:
            raise InputError("MissingQuery", "--prometheus needs --query")
        from controller.backtest.replay import trace_from_prometheus

        trace = trace_from_prometheus(
            args.prometheus,
            args.query,
            start=args.start,
            end=args.end,
            step_s=args.step,
            tokens_from=args.tokens_from,
            seed=args.seed,
        )
    run_backtest(
        trace,
        spec,
        params,
        args.out,
        baselines=names,
        progress=args.progress or None,
        plot=not args.no_plot,
        score_from_s=args.score_from_s,
    )
    print((args.out / "summary.md").read_text(), end="")
    return 0
