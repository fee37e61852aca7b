"""``infercast backtest``: our policy, the HPA and the KPA closed-loop on one trace, with outputs.

Writes to ``--out``: ``decisions.csv`` (``time_s,desired_replicas``, our policy's timeline, the
reference judge's input format), ``summary.md`` and ``summary.json`` (one row per policy),
``windows.csv`` (our policy's per-minute SLO table) and ``backtest.png``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import yaml

from controller.backtest.baselines import HpaBaseline, KpaBaseline
from controller.backtest.engine import EngineParams
from controller.backtest.predictive import PredictiveController
from controller.backtest.score import SloTargets, Summary, markdown, summarize, window_table
from controller.backtest.simulate import Controller, Run, simulate
from controller.backtest.trace import Trace, load_trace
from controller.errors import InputError, SpecError
from controller.scaling.forecast_spec import ForecastSpec
from controller.scaling.settings import forecast_settings, predictive_min_replicas, predictive_settings
from controller.scaling.spec import ScalingPolicySpec, parse_scaling_policy


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
        "--baselines", default="hpa,kpa", help="comma-separated baselines to run too ('' for none; default hpa,kpa)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is no TTY")
    parser.add_argument("--no-plot", action="store_true", help="skip backtest.png")
    engine = parser.add_argument_group("the simulated replica (judge-equivalent engine model)")
    for field, default in asdict(EngineParams()).items():
        engine.add_argument(
            f"--{field.replace('_', '-')}",
            type=type(default),
            default=default,
            dest=field,
            help=f"{ENGINE_FLAG_HELP[field]} (default {default})",
        )


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


def predictive_controller(spec: ScalingPolicySpec, params: EngineParams) -> PredictiveController:
    """Our policy as configured by ``spec``; capacity unset means the engine's prefill rate x utilization,
    which is what learning it online converges to."""
    forecast: ForecastSpec = spec.forecast or ForecastSpec()
    capacity = forecast.capacity.per_replica or params.prefill_tokens_per_s * forecast.capacity.target_utilization
    return PredictiveController(
        forecast=forecast_settings(forecast),
        policy=predictive_settings(spec, capacity, forecast.lead_time_s),
        min_replicas=predictive_min_replicas(spec),
        max_replicas=spec.max_replicas,
    )


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
    baselines: tuple[str, ...] = ("hpa", "kpa"),
    progress: bool | None = None,
    plot: bool = True,
    slo: SloTargets | None = None,
) -> list[Summary]:
    """Run our policy and the baselines, write every output, return the summaries (ours first).

    ``progress``: a bar per run on stderr (tqdm's) when True, none when False, on a TTY only when None.
    """
    from tqdm import tqdm  # the backtest extra's, as matplotlib is: the CLI checks both before it starts

    forecast = spec.forecast or ForecastSpec()
    slo = slo or SloTargets(ttft_s=forecast.slo.ttft_s, tpot_s=forecast.slo.tpot_s)
    out.mkdir(parents=True, exist_ok=True)
    ours = predictive_controller(spec, params)
    controllers: list[tuple[Controller, int]] = [(ours, initial_replicas(spec))]
    makers: dict[str, Callable[[], Controller]] = {"hpa": HpaBaseline, "kpa": KpaBaseline}
    # The baselines start at one replica, as the judge's do; ours from minReplicas, warm.
    controllers += [(makers[name](), 1) for name in baselines]
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
            run = simulate(
                trace,
                controller,
                params,
                initial_replicas=initial,
                max_replicas=spec.max_replicas,
                progress=lambda done: bar.update(done - bar.n),
            )
        runs.append(run)
        summaries.append(summarize(run, controller.name, slo))
    _write_decisions(out / "decisions.csv", runs[0])
    window_table(runs[0], slo).to_csv(out / "windows.csv")
    (out / "summary.md").write_text(
        f"**{trace.name}** ({summaries[0].windows} non-empty windows)\n\n" + markdown(summaries) + "\n"
    )
    (out / "summary.json").write_text(json.dumps([asdict(s) | {"trace": trace.name} for s in summaries], indent=1))
    if plot:
        from controller.backtest.plot import plot_run

        plot_run(runs[0], ours, slo, out / "backtest.png")
    return summaries


def _write_decisions(path: Path, run: Run) -> None:
    lines = ["time_s,desired_replicas", *(f"{d.time_s:g},{d.replicas}" for d in run.timeline)]
    path.write_text("\n".join(lines) + "\n")


def main(args: argparse.Namespace) -> int:
    """``infercast backtest``; a user's mistake raises :class:`InfercastError`, which the CLI prints in one line."""
    params = EngineParams(**{name: getattr(args, name) for name in asdict(EngineParams())})
    names = tuple(name for name in args.baselines.split(",") if name)
    unknown = [name for name in names if name not in ("hpa", "kpa")]
    if unknown:
        raise InputError("UnknownBaseline", f"unknown baseline(s) {', '.join(unknown)}; known: hpa, kpa")
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
    run_backtest(trace, spec, params, args.out, baselines=names, progress=args.progress or None, plot=not args.no_plot)
    print((args.out / "summary.md").read_text(), end="")
    return 0
