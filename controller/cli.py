"""The ``infercast`` command.

``infercast run`` starts the operator with our handlers and settings (Kopf underneath, but the
user never needs to know which file to point ``kopf run`` at). Decision records go to stdout,
one JSON object per line; the operator's own log goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    import controller.handlers  # noqa: F401  # registers the handlers in Kopf's default registry

    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    # read by the start-up handler
    memo = {"metrics_port": args.metrics_port, "metrics_address": args.metrics_address}
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

    from controller.clients.kube import Kube, KubeError, load_api_client
    from controller.observability.explain import KINDS, decision_lines, explain, read_status

    namespace, _, name = args.policy.partition("/")
    if not namespace or not name:
        print("infercast explain: give the policy as NAMESPACE/NAME", file=sys.stderr)
        return 2
    kind = KINDS[args.kind].kind
    decisions = []
    if args.log:
        with open(args.log, errors="replace") if args.log != "-" else contextlib.nullcontext(sys.stdin) as log:
            decisions = decision_lines(log, kind, args.policy)
    try:
        obj = asyncio.run(read_status(Kube(load_api_client(args.kubeconfig)), kind, namespace, name))
    except KubeError as exc:
        print(f"infercast explain: cannot read {kind} {args.policy}: {exc}", file=sys.stderr)
        if not decisions:
            return 1
        obj = None
    print(explain(kind, namespace, name, obj, decisions, limit=args.limit), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infercast",
        description="Predictive scaling, circuit breakers and routing for GPU inference services on Kubernetes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all namespaces"
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
        "--leader-election-namespace", metavar="NS", help="the Lease's namespace (default: the operator pod's)"
    )
    # The durations also come from the environment, as a Deployment sets them for every replica alike.
    election.add_argument(
        "--lease-duration",
        type=int,
        default=int(os.environ.get("INFERCAST_LEASE_DURATION", "15")),
        metavar="S",
        help="seconds a standby waits on an unchanged Lease before taking it ($INFERCAST_LEASE_DURATION, default 15)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=float(os.environ.get("INFERCAST_RENEW_DEADLINE", "10")),
        metavar="S",
        help="seconds the leader acts after its last renewal began ($INFERCAST_RENEW_DEADLINE, default 10)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=float(os.environ.get("INFERCAST_RETRY_PERIOD", "2")),
        metavar="S",
        help="seconds between renewals and between a standby's attempts ($INFERCAST_RETRY_PERIOD, default 2)",
    )
    run.add_argument("--liveness", metavar="URL", help="serve Kopf's health probe, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="serve Prometheus metrics on this port (default 8080; 0: off)"
    )
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0",
        help="address to serve metrics on (default 0.0.0.0, as a pod needs; 127.0.0.1 on a shared machine)",
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text", help="format of the operator log")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true")
    verbosity.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=_run)

    explain = commands.add_parser("explain", help="what a policy saw, decided and why, as a timeline")
    explain.add_argument("policy", metavar="NAMESPACE/POLICY")
    explain.add_argument("--kind", choices=("sp", "cbp", "rp"), default="sp", help="policy kind (default sp)")
    explain.add_argument("--log", metavar="FILE", help="the operator's log (decision lines among others); - for stdin")
    explain.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config or in-cluster")
    explain.add_argument("--limit", type=int, default=20, help="show the last N decisions of the log (default 20)")
    explain.set_defaults(func=_explain)

    backtest = commands.add_parser("backtest", help="our policy, the HPA and the KPA closed-loop on a request trace")
    from controller.backtest.run import add_arguments

    add_arguments(backtest)
    backtest.set_defaults(func=_backtest)
    return parser


def _backtest(args: argparse.Namespace) -> int:
    from controller.backtest.run import main as backtest_main

    return backtest_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
