"""The ``infercast`` command.

``infercast run`` starts the operator with our handlers and settings (Kopf underneath, but the
user never needs to know which file to point ``kopf run`` at). Decision records go to stdout,
one JSON object per line; the operator's own log goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence


def _run(args: argparse.Namespace) -> int:
    import kopf

    import controller.handlers  # noqa: F401  # registers the handlers in Kopf's default registry
    from controller.clients.tenancy import PrometheusAccess, load_access

    try:
        access = load_access(args.prometheus_config) if args.prometheus_config else PrometheusAccess()
    except (OSError, ValueError) as exc:
        print(f"infercast run: --prometheus-config {args.prometheus_config}: {exc}", file=sys.stderr)
        return 2

    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    kopf.run(
        standalone=args.standalone,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        # read by the start-up handler
        memo=kopf.Memo(metrics_port=args.metrics_port, metrics_address=args.metrics_address, prometheus_access=access),
    )
    return 0


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
    run.add_argument("--standalone", action="store_true", help="no Kopf peering (a single operator replica)")
    run.add_argument("--liveness", metavar="URL", help="serve Kopf's health probe, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="serve Prometheus metrics on this port (default 8080; 0: off)"
    )
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0",
        help="address to serve metrics on (default 0.0.0.0, as a pod needs; 127.0.0.1 on a shared machine)",
    )
    run.add_argument(
        "--prometheus-config",
        metavar="FILE",
        help="the admin's Prometheus endpoints, allowed URLs and Secret opt-in label (YAML, see docs/security.md);"
        " default: policies may name in-cluster Services (http(s)://SERVICE.NAMESPACE.svc[.cluster.local]) and"
        " Secrets labelled infercast.io/prometheus-credentials=true",
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
