"""The ``infercast`` command: ``run`` (the operator), ``explain`` (a policy's decisions, for a person),
``backtest`` (our policy against the HPA and the KPA on a request trace) and ``backtest-traffic``
(our circuit breakers and routing against static outlier detection and Flagger on a failure scenario).

``infercast run`` starts the operator with our handlers and settings (Kopf underneath, but the
user never needs to know which file to point ``kopf run`` at). Decision records go to stdout,
one JSON object per line; the operator's own log goes to stderr.

Every mistake a user can make (a missing or unreadable file, bad YAML, a CSV that is no trace, a
cluster that cannot be reached, an optional dependency not installed) is one line on stderr and
exit code 2, never a traceback: the commands raise :class:`~controller.errors.InfercastError` for
them, and :func:`main` prints it. A traceback means a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from controller.errors import InfercastError, InputError

#: What each command needs beyond the operator's dependencies, and the extra that installs it.
EXTRAS = {"backtest": ("backtest", ("matplotlib", "tqdm")), "backtest-traffic": ("backtest", ("matplotlib",))}

ENVIRONMENT = """environment:
  KUBECONFIG                    kubeconfig of run and explain (default ~/.kube/config; in a pod: its service account)
  INFERCAST_KUBE_CONNECTIONS    Kubernetes requests in flight at once in run (default 32)
  INFERCAST_SELECTION_PROCESSES worker processes for forecast model selections of run (default 2; 0: a thread)
  INFERCAST_FORECAST_PROCESSES  worker processes for the forecast of each new sample in run (default 1; 0: a thread)
  INFERCAST_LEASE_DURATION, INFERCAST_RENEW_DEADLINE, INFERCAST_RETRY_PERIOD  leader election of run (seconds)
  POD_NAMESPACE                 the namespace of run's Lease (set by the Deployment)"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every option's help; descriptions and epilogs kept as written."""


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    import controller.handlers  # noqa: F401  # registers the handlers in Kopf's default registry
    from controller.clients.tenancy import PrometheusAccess, load_access

    try:
        access = load_access(args.prometheus_config) if args.prometheus_config else PrometheusAccess()
    except (OSError, ValueError) as exc:
        raise InputError("BadPrometheusConfig", f"--prometheus-config {args.prometheus_config}: {exc}") from exc

    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    # read by the start-up handler
    memo = {"metrics_port": args.metrics_port, "metrics_address": args.metrics_address, "prometheus_access": access}
    if args.standalone:
        kopf.run(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(memo),
        )
        return 0
    from controller.clients.leases import ElectionSettings, new_identity
    from controller.handlers.leadership import run_elected

    election = ElectionSettings(
        name=args.leader_election_id,
        namespace=args.leader_election_namespace or _own_namespace(),
        identity=new_identity(),
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
    )
    return asyncio.run(run_elected(election, namespaces=args.namespace or (), liveness=args.liveness, memo=memo))


def _own_namespace() -> str:
    """The pod's namespace (the downward API's POD_NAMESPACE, else the service account's), or ``default``."""
    import pathlib

    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    account = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return account.read_text().strip() if account.exists() else "default"


def _explain(args: argparse.Namespace) -> int:
    import asyncio

    from kubernetes.client import Configuration

    from controller.clients.kube import Kube, load_configuration
    from controller.observability.explain import KINDS, decision_lines, explain, read_status

    namespace, _, name = args.policy.partition("/")
    if not namespace or not name:
        raise InputError("BadPolicyName", "give the policy as NAMESPACE/NAME")
    kind = KINDS[args.kind].kind

    async def read_status_with(configuration: Configuration) -> dict[str, object]:
        async with Kube(configuration) as kube:
            return await read_status(kube, kind, namespace, name)

    decisions = []
    if args.log:
        try:
            with open(args.log, errors="replace") if args.log != "-" else contextlib.nullcontext(sys.stdin) as log:
                decisions = decision_lines(log, kind, args.policy)
        except OSError as exc:
            raise InputError("UnreadableLog", f"cannot read {args.log}: {exc.strerror or exc}") from exc
    try:
        obj = asyncio.run(read_status_with(load_configuration(args.kubeconfig)))
    except InfercastError as exc:
        if not args.log:
            raise
        # The log alone is a complete answer: say what is missing and go on without the status.
        print(f"infercast explain: status not read ({exc.message}); from the log only", file=sys.stderr)
        obj = None
    print(explain(kind, namespace, name, obj, decisions, limit=args.limit), end="")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from controller.backtest.run import main as backtest_main

    if "dynamo-prophet" in args.baselines.split(",") and not _importable("prophet"):
        raise InputError("MissingExtra", "--baselines dynamo-prophet needs prophet: pip install 'infercast[prophet]'")

    return backtest_main(args)


def _backtest_traffic(args: argparse.Namespace) -> int:
    from controller.backtest.traffic.command import main as traffic_main

    return traffic_main(args)


def require_extra(command: str, *, skip: Sequence[str] = ()) -> None:
    """Fail at once, in one line, when ``command`` needs a package its extra installs and it is missing."""
    if command not in EXTRAS:
        return
    extra, modules = EXTRAS[command]
    missing = [m for m in modules if m not in skip and not _importable(m)]
    if missing:
        raise InputError("MissingExtra", f"needs {', '.join(missing)}: pip install 'infercast[{extra}]'")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infercast",
        description="Predictive scaling, circuit breakers and routing for GPU inference services on Kubernetes.",
        epilog=ENVIRONMENT,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('infercast')}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator", epilog=ENVIRONMENT, formatter_class=HelpFormatter)
    run.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable); unset: all namespaces"
    )
    run.add_argument(
        "--standalone", action="store_true", help="no leader election: the only replica (never run two like this)"
    )
    election = run.add_argument_group("leader election (one writer among replicas; see docs/reliability.md)")
    election.add_argument(
        "--leader-election-id",
        default="infercast-operator",
        metavar="NAME",
        help="the Lease's name; operators sharding the cluster by namespace need one each",
    )
    election.add_argument(
        "--leader-election-namespace", metavar="NS", help="the Lease's namespace (unset: the operator pod's)"
    )
    # The durations also come from the environment, as a Deployment sets them for every replica alike.
    election.add_argument(
        "--lease-duration",
        type=int,
        default=int(os.environ.get("INFERCAST_LEASE_DURATION", "15")),
        metavar="S",
        help="seconds a standby waits on an unchanged Lease before taking it ($INFERCAST_LEASE_DURATION)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=float(os.environ.get("INFERCAST_RENEW_DEADLINE", "10")),
        metavar="S",
        help="seconds the leader acts after its last renewal began ($INFERCAST_RENEW_DEADLINE)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=float(os.environ.get("INFERCAST_RETRY_PERIOD", "2")),
        metavar="S",
        help="seconds between renewals and between a standby's attempts ($INFERCAST_RETRY_PERIOD)",
    )
    run.add_argument("--liveness", metavar="URL", help="serve Kopf's health probe, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--metrics-port", type=int, default=8080, help="serve Prometheus metrics on this port (0: off)")
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0",
        help="address to serve metrics on (0.0.0.0 as a pod needs; 127.0.0.1 on a shared machine)",
    )
    run.add_argument(
        "--prometheus-config",
        metavar="FILE",
        help="the admin's Prometheus endpoints, allowed URLs and Secret opt-in label (YAML, see docs/security.md);"
        " without it, policies may name in-cluster Services (http(s)://SERVICE.NAMESPACE.svc[.cluster.local]) and"
        " Secrets labelled infercast.io/prometheus-credentials=true",
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text", help="format of the operator log")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    run.set_defaults(func=_run)

    explain = commands.add_parser(
        "explain",
        help="what a policy saw, decided and why, as a timeline",
        description="The policy's conditions and what it learned (read from the cluster), and a timeline of its "
        "decisions (from the operator's log with --log; without it, the last decision kept in the status). "
        "With --log the cluster is optional.",
        epilog=ENVIRONMENT,
        formatter_class=HelpFormatter,
    )
    explain.add_argument("policy", metavar="NAMESPACE/POLICY")
    explain.add_argument("--kind", choices=("sp", "cbp", "rp"), default="sp", help="policy kind")
    explain.add_argument("--log", metavar="FILE", help="the operator's log (decision lines among others); - for stdin")
    explain.add_argument("--kubeconfig", metavar="FILE", help="unset: $KUBECONFIG, ~/.kube/config or in-cluster")
    explain.add_argument("--limit", type=int, default=20, help="show the last N decisions of the log")
    explain.set_defaults(func=_explain)

    backtest = commands.add_parser(
        "backtest",
        help="our policy, the HPA and the KPA closed-loop on a request trace",
        description="Runs a ScalingPolicy's predictive policy and reactive baselines closed-loop on a request trace "
        "(or a request rate replayed from Prometheus) and writes decisions.csv, summary.md/json, windows.csv "
        "and backtest.png. Needs the backtest extra: pip install 'infercast[backtest]'.",
        formatter_class=HelpFormatter,
    )
    from controller.backtest.run import add_arguments

    add_arguments(backtest)
    backtest.set_defaults(func=_backtest)

    traffic = commands.add_parser(
        "backtest-traffic",
        help="our circuit breakers and routing closed-loop on a failure scenario of the traffic judge",
        description="Runs the CircuitBreakerPolicy and RoutingPolicy documents of a YAML file closed-loop on a "
        "traffic-judge scenario (the policies see what Prometheus would show, at their interval, through the "
        "operator's decide step), beside the judge's baselines (none, istio-typical, aggressive, flagger), and writes "
        "decisions.csv (the judge's format), summary.md/json, verdicts.csv and plot-<subset>.png. "
        "Needs the backtest extra: pip install 'infercast[backtest]'.",
        formatter_class=HelpFormatter,
    )
    from controller.backtest.traffic.command import add_arguments as add_traffic_arguments

    add_traffic_arguments(traffic)
    traffic.set_defaults(func=_backtest_traffic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_extra(args.command, skip=("matplotlib",) if getattr(args, "no_plot", False) else ())
        return int(args.func(args))
    except InfercastError as exc:
        # An input's message says it all; a spec's reason is a documented code worth showing.
        detail = exc.message if isinstance(exc, InputError) else f"{exc.reason}: {exc.message}"
        print(f"infercast {args.command}: {detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
