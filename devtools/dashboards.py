"""The Grafana dashboards, defined compactly here and built with Grafana's own typed builders.

``python -m devtools.dashboards`` writes ``dashboards/*.json`` (to import in
Grafana) and ``deploy/monitoring/grafana-dashboards.yaml`` (the same JSON as ConfigMaps labelled
``grafana_dashboard: "1"``, which the kube-prometheus-stack Grafana sidecar loads). Both are
committed; a test checks that they equal what this module generates, and another runs every
query below against a real Prometheus scraping the operator and the simulated fleet.

grafana-foundation-sdk (a dev dependency) gives typed builders and models, so a misspelt field or
a wrong type fails mypy here instead of being silently ignored by Grafana.

Every query filters on the ``namespace`` and ``policy`` variables and, for the fleet's own vLLM
metrics, on the pods of the policy's workload (``workload``, taken from the policy's ``target``).
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from controller.clients.servers import vllm_series

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO_ROOT / "dashboards"
CONFIGMAPS = REPO_ROOT / "deploy" / "monitoring" / "grafana-dashboards.yaml"
CONFIGMAP_NAMESPACE = "infercast-system"

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Every series is narrowed to the chosen clusters; "All" (the default) is ``.*``, which also matches a
#: Prometheus whose series carry no ``cluster`` label at all (one cluster, no Thanos or federation).
CLUSTER = 'cluster=~"$cluster"'
POLICY = f'{CLUSTER}, namespace=~"$namespace", policy=~"$policy"'
# The pods of a Deployment (name-<hash>-<suffix>) or a StatefulSet (name-<ordinal>), as the presets match them.
POD_PATTERN = "$workload-[a-z0-9]{5,10}-[a-z0-9]{5}|$workload-[0-9]+"
PODS = f'{CLUSTER}, namespace=~"$namespace", pod=~"{POD_PATTERN}"'
#: DCGM's exporter runs in its own pod: a scrape that keeps its labels (``honorLabels`` off, the usual
#: ServiceMonitor) names the GPU's workload pod ``exported_pod`` (and ``exported_namespace``).
EXPORTED_PODS = f'{CLUSTER}, exported_namespace=~"$namespace", exported_pod=~"{POD_PATTERN}"'


def vllm(metric: str) -> str:
    """A vLLM series of the workload's pods, under either spelling of vLLM's names (``vllm:`` or ``vllm_``)."""
    return vllm_series(metric, PODS)


def dcgm_gpu_utilization() -> str:
    """Per workload pod, the GPU utilisation, whether the scrape kept the ``pod`` label or renamed it.

    ``$1`` is PromQL's (label_replace), not a Grafana variable: Grafana leaves unknown names as they are.
    """
    exported = f"avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{{{EXPORTED_PODS}}})"
    return (
        f"avg by (pod) (DCGM_FI_DEV_GPU_UTIL{{{PODS}}})"
        f' or label_replace({exported}, "pod", "$1", "exported_pod", "(.+)")'
    )


def operator_quantile(quantile: float, bucket: str, by: str = "") -> str:
    """A quantile of one of the operator's own histograms over the chosen clusters, per ``by`` when given."""
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({labels}) (rate({bucket}{{{CLUSTER}}}[$__rate_interval])))"


def counted_in_last(counter: str, window: str = "1m") -> str:
    """The series of ``counter`` that counted something within ``window``, by how much.

    ``increase`` alone misses a series' first count: Prometheus first sees a labelled counter
    (say, the first scale-up for a reason) at 1 and has no earlier zero to compare with. A series
    that is there now and was not a window ago counted too.
    """
    return f"((increase({counter}[{window}]) > 0) or ({counter} unless {counter} offset {window}))"


@dataclass(frozen=True)
class Query:
    """One series of a panel; ``unit`` set puts it on a second axis, on the right, in that unit."""

    expr: str
    legend: str
    unit: str | None = None


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    annotations: tuple[tuple[str, Query], ...] = ()
    workload_variables: bool = False  # the fleet's own metrics need the workload and the SLOs
    slos: dict[str, str] = field(default_factory=dict)


FLEET = Board(
    uid="infercast-fleet",
    title="infercast / fleet",
    description="What a ScalingPolicy sees and decides: load, forecast, capacity, replicas, latency against the SLO.",
    workload_variables=True,
    slos={"ttft_slo_seconds": "2", "tpot_slo_seconds": "0.1"},
    annotations=(
        (
            "Scale decisions",
            Query(
                "sum by (action, reason) " + counted_in_last(f'infercast_decisions_total{{{POLICY}, action!="Hold"}}'),
                "{{action}} ({{reason}})",
            ),
        ),
    ),
    panels=(
        Panel(
            "Load, forecast and capacity",
            "Predictive policies, in the capacity's unit (prompt tokens/s or requests/s): the load of now, the peak "
            "of the forecast quantile over the lead time plus one interval (what the policy provisions for), and the "
            "load the ready and the desired replicas serve at the per-replica capacity. Capacity above the forecast "
            "before the load arrives is the point of forecasting.",
            "short",
            (
                Query(f"infercast_forecast_observed_load{{{POLICY}}}", "observed load"),
                Query(f"infercast_forecast_quantile{{{POLICY}}}", "forecast q{{level}} over the lead time"),
                Query(
                    f"infercast_capacity_per_replica{{{POLICY}}}"
                    f" * on (namespace, policy, target) infercast_ready_replicas{{{POLICY}}}",
                    "capacity of ready replicas",
                ),
                Query(
                    f"infercast_capacity_per_replica{{{POLICY}}}"
                    f" * on (namespace, policy, target) infercast_desired_replicas{{{POLICY}}}",
                    "capacity of desired replicas",
                ),
            ),
            width=24,
        ),
        Panel(
            "Policy metrics vs target",
            "Each spec metric's observed value, and what the ready replicas carry at its per-replica target (what "
            "the reactive policy scales on, and what a predictive one falls back to).",
            "short",
            (
                Query(f"infercast_metric_value{{{POLICY}}}", "{{metric}} observed"),
                Query(
                    f'infercast_metric_target{{{POLICY}, type="AverageValue"}}'
                    f" * on (namespace, policy, target) group_left () infercast_ready_replicas{{{POLICY}}}",
                    "{{metric}} at target on ready replicas",
                ),
            ),
        ),
        Panel(
            "Replicas",
            "Desired (decided), current (written) and ready replicas of the target, within the policy's bounds.",
            "short",
            (
                Query(f"infercast_desired_replicas{{{POLICY}}}", "desired"),
                Query(f"infercast_current_replicas{{{POLICY}}}", "current"),
                Query(f"infercast_ready_replicas{{{POLICY}}}", "ready"),
                Query(f"infercast_min_replicas{{{POLICY}}}", "min"),
                Query(f"infercast_max_replicas{{{POLICY}}}", "max"),
            ),
        ),
        Panel(
            "Decisions by path",
            "Predictive decisions per minute by the path that set the count: forecast (provisioned ahead), reactive "
            "(the load of now exceeded the count), hold, or limit (a rate limit or bound changed it).",
            "short",
            (
                Query(
                    f'sum by (path) (increase(infercast_decisions_total{{{POLICY}, path!=""}}[1m]))',
                    "{{path}}",
                ),
            ),
        ),
        Panel(
            "Lead time",
            "How far ahead the policy provisions: the target's measured start-up (p90 of its pods' creation to "
            "Ready), or the spec's default until one was seen.",
            "s",
            (Query(f"infercast_lead_time_seconds{{{POLICY}}}", "lead time"),),
        ),
        Panel(
            "SLO attainment vs target",
            "Predictive policies: the share of the recent minutes whose p95 TTFT and p95 TPOT met the SLO, as the "
            "operator measures it minute by minute, against spec.forecast.slo.attainment. The headroom moves so that "
            "the first converges on the second.",
            "percentunit",
            (
                Query(f"infercast_slo_attainment{{{POLICY}}}", "realized attainment"),
                Query(f"infercast_slo_attainment_target{{{POLICY}}}", "target"),
            ),
        ),
        Panel(
            "Headroom",
            "The multiplier on the replicas the forecast and the learned capacity ask for: raised by a missed "
            "minute, lowered by met ones while the attainment holds its target (1 with spec.forecast.quantile set).",
            "short",
            (Query(f"infercast_slo_headroom{{{POLICY}}}", "headroom"),),
        ),
        Panel(
            "Capacity per replica by resource",
            "The load one replica serves within the SLO per resource, in the capacity's unit: prefill (TTFT-bound, "
            "the measured prefill rate) and decode (TPOT-bound, fitted on p95 TPOT). The lower one binds.",
            "short",
            (Query(f"infercast_capacity_resource_per_replica{{{POLICY}}}", "{{resource}}"),),
        ),
        Panel(
            "Time to first token p95 vs SLO",
            "95th percentile of vLLM's time to first token over the workload's pods, against the SLO variable.",
            "s",
            (
                Query(
                    "histogram_quantile(0.95, sum by (le) (rate("
                    + vllm("time_to_first_token_seconds_bucket")
                    + "[$__rate_interval])))",
                    "TTFT p95",
                ),
                Query("vector($ttft_slo_seconds)", "SLO"),
            ),
        ),
        Panel(
            "Time per output token vs SLO",
            "Mean decode time per generated token: (end-to-end latency - time to first token) / generated tokens.",
            "s",
            (
                Query(
                    "(sum(rate("
                    + vllm("e2e_request_latency_seconds_sum")
                    + "[$__rate_interval])) - sum(rate("
                    + vllm("time_to_first_token_seconds_sum")
                    + "[$__rate_interval]))) / sum(rate("
                    + vllm("generation_tokens_total")
                    + "[$__rate_interval]))",
                    "TPOT mean",
                ),
                Query("vector($tpot_slo_seconds)", "SLO"),
            ),
        ),
        Panel(
            "GPU utilisation and KV cache",
            "GPU utilisation from NVIDIA's DCGM exporter, and vLLM's KV-cache usage, per pod.",
            "percent",
            (
                Query(dcgm_gpu_utilization(), "GPU {{pod}}"),
                Query(
                    "100 * avg by (pod) (" + vllm("(kv|gpu)_cache_usage_perc") + ")",
                    "KV cache {{pod}}",
                ),
            ),
        ),
    ),
)

TRAFFIC = Board(
    uid="infercast-traffic",
    title="infercast / traffic",
    description="CircuitBreakerPolicy and RoutingPolicy: backend failure scores, ejections, thresholds, weights.",
    annotations=(
        (
            "Traffic decisions",
            Query(
                "sum by (kind, action, reason) "
                + counted_in_last(
                    f'infercast_decisions_total{{{POLICY}, kind=~"CircuitBreakerPolicy|RoutingPolicy", action!="Hold"}}'
                ),
                "{{kind}} {{action}} ({{reason}})",
            ),
        ),
    ),
    panels=(
        Panel(
            "Failure score per backend",
            "Anomaly score of each backend in [0, 1], from the streaming detector.",
            "percentunit",
            (Query(f"infercast_failure_score{{{POLICY}}}", "{{policy}} {{backend}}"),),
        ),
        Panel(
            "Flagged backends (ejected sooner)",
            "Backends the circuit breaker holds at the tight end of its bounds: their outliers are ejected sooner.",
            "short",
            (Query(f"infercast_flagged_backends{{{POLICY}}}", "{{policy}}"),),
        ),
        Panel(
            "Outlier thresholds: consecutive errors and ejection limits",
            "The consecutive 5xx and gateway errors that eject a host (left), and the most hosts that may be ejected "
            "and the least that must stay healthy (right, percent), per backend.",
            "short",
            (
                Query(f'infercast_outlier_setting{{{POLICY}, setting=~"consecutive.*"}}', "{{backend}} {{setting}}"),
                Query(
                    f'infercast_outlier_setting{{{POLICY}, setting=~".*Percent"}}',
                    "{{backend}} {{setting}}",
                    unit="percent",
                ),
            ),
        ),
        Panel(
            "Outlier timing and connection pool",
            "The sweep interval and base ejection time of outlier detection (left, seconds), and the connection "
            "pool's request, pending and retry limits (right), per backend.",
            "s",
            (
                Query(f'infercast_outlier_setting{{{POLICY}, setting=~".*Seconds"}}', "{{backend}} {{setting}}"),
                Query(f"infercast_connection_pool_setting{{{POLICY}}}", "{{backend}} {{setting}}", unit="short"),
            ),
        ),
        Panel(
            "Route weights",
            "Share of traffic routed to each backend.",
            "percentunit",
            (Query(f"infercast_route_weight_ratio{{{POLICY}}}", "{{policy}} {{backend}}"),),
        ),
    ),
)

OPERATOR = Board(
    uid="infercast-operator",
    title="infercast / operator health",
    description="The operator itself: reconcile latency, decisions, Prometheus queries, forecast accuracy, refit cost.",
    panels=(
        Panel(
            "Reconcile duration",
            "50th and 95th percentile of one reconcile cycle, per policy kind.",
            "s",
            (
                Query(
                    operator_quantile(0.5, "infercast_reconcile_duration_seconds_bucket", "kind"),
                    "p50 {{kind}}",
                ),
                Query(
                    operator_quantile(0.95, "infercast_reconcile_duration_seconds_bucket", "kind"),
                    "p95 {{kind}}",
                ),
            ),
        ),
        Panel(
            "Decisions",
            "Decisions per second by kind and action.",
            "ops",
            (
                Query(
                    f"sum by (kind, action) (rate(infercast_decisions_total{{{POLICY}}}[$__rate_interval]))",
                    "{{kind}} {{action}}",
                ),
            ),
        ),
        Panel(
            "Prometheus query errors",
            "Share of requests to Prometheus that gave no usable value (left), and errors per second by reason "
            "(right).",
            "percentunit",
            (
                Query(
                    f"(sum(rate(infercast_prometheus_query_errors_total{{{CLUSTER}}}[$__rate_interval])) or vector(0))"
                    f" / sum(rate(infercast_prometheus_query_duration_seconds_count{{{CLUSTER}}}[$__rate_interval]))",
                    "error ratio",
                ),
                Query(
                    f"sum by (reason) (rate(infercast_prometheus_query_errors_total{{{CLUSTER}}}[$__rate_interval]))",
                    "{{reason}}",
                    unit="reqps",
                ),
            ),
        ),
        Panel(
            "Prometheus query latency",
            "95th percentile of one request to Prometheus.",
            "s",
            (
                Query(
                    operator_quantile(0.95, "infercast_prometheus_query_duration_seconds_bucket"),
                    "p95",
                ),
            ),
        ),
        Panel(
            "Forecast accuracy",
            "Recent relative error of each policy's forecast: mean absolute error of the forecast peak over each "
            "window against the peak load that came, over the mean actual peak.",
            "percentunit",
            (Query(f"infercast_forecast_error_ratio{{{POLICY}}}", "{{namespace}}/{{policy}}"),),
        ),
        Panel(
            "Model refit cost",
            "Cores busy refitting forecasting models (CPU seconds per second, left), and each policy's latest refit "
            "(seconds, right).",
            "short",
            (
                Query(
                    f"sum by (model) (rate(infercast_model_refit_duration_seconds_sum{{{CLUSTER}}}[$__rate_interval]))",
                    "{{model}} CPU cores",
                ),
                Query(
                    f"infercast_model_last_refit_duration_seconds{{{POLICY}}}", "{{policy}} {{model}} last", unit="s"
                ),
            ),
        ),
        Panel(
            "Operator CPU and memory",
            "Cores the operator process uses (CPU seconds per second, left) and its resident memory (right).",
            "short",
            (
                Query(
                    f'rate(process_cpu_seconds_total{{{CLUSTER}, job=~"$job"}}[$__rate_interval])',
                    "CPU cores {{instance}}",
                ),
                Query(f'process_resident_memory_bytes{{{CLUSTER}, job=~"$job"}}', "memory {{instance}}", unit="bytes"),
            ),
        ),
    ),
)

BOARDS = (FLEET, TRAFFIC, OPERATOR)


def _variables(
    board: Board,
) -> list[dashboard.DatasourceVariable | dashboard.QueryVariable | dashboard.TextBoxVariable]:
    multi = not board.workload_variables  # the fleet dashboard shows one policy's workload

    def query(name: str, label: str, promql: str, *, many: bool, regex: str = "") -> dashboard.QueryVariable:
        variable = (
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(promql)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(many)
            .include_all(many)
        )
        return variable.regex(regex) if regex else variable

    cluster = (
        query("cluster", "Cluster", "label_values(infercast_decisions_total, cluster)", many=True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    variables: list[dashboard.DatasourceVariable | dashboard.QueryVariable | dashboard.TextBoxVariable] = [
        dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        cluster,
        query("namespace", "Namespace", f"label_values(infercast_decisions_total{{{CLUSTER}}}, namespace)", many=multi),
        query(
            "policy",
            "Policy",
            f'label_values(infercast_decisions_total{{{CLUSTER}, namespace=~"$namespace"}}, policy)',
            many=multi,
        ),
    ]
    if board.workload_variables:
        variables.append(
            query(
                "workload",
                "Workload",
                f"label_values(infercast_desired_replicas{{{POLICY}}}, target)",
                many=False,
                regex="/^[^/]+/(.+)$/",
            )
        )
        variables += [
            dashboard.TextBoxVariable(name).label(name.replace("_", " ")).default_value(value)
            for name, value in board.slos.items()
        ]
    if board is OPERATOR:
        variables.append(
            query(
                "job",
                "Operator job",
                f"label_values(infercast_reconcile_duration_seconds_count{{{CLUSTER}}}, job)",
                many=True,
            )
        )
    return variables


def build(board: Board) -> dashboard.Dashboard:
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["infercast"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    for variable in _variables(board):
        builder = builder.with_variable(variable)
    for name, query in board.annotations:
        builder = builder.annotation(
            dashboard.AnnotationQuery()
            .name(name)
            .datasource(DATASOURCE)
            .expr(query.expr)
            .enable(True)
            .icon_color("blue")
        )
    for panel in board.panels:
        graph = (
            timeseries.Panel()
            .title(panel.title)
            .description(panel.description)
            .datasource(DATASOURCE)
            .unit(panel.unit)
            .height(8)
            .span(panel.width)
        )
        for ref, query in zip(_ref_ids(len(panel.queries)), panel.queries, strict=True):
            graph = graph.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref))
            if query.unit is not None:  # one unit per axis: a second unit gets the right-hand axis
                graph = graph.override_by_query(
                    ref,
                    [DynamicConfigValue("unit", query.unit), DynamicConfigValue("custom.axisPlacement", "right")],
                )
        builder = builder.with_panel(graph)
    return builder


def _ref_ids(count: int) -> Sequence[str]:
    return [chr(ord("A") + index) for index in range(count)]


def render(board: Board) -> str:
    """The dashboard's JSON as committed: stable key order, two-space indent, final newline."""
    return json.dumps(build(board).build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def configmaps() -> str:
    """The dashboards as ConfigMaps for the Grafana sidecar of kube-prometheus-stack."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{board.uid}-dashboard",
                "namespace": CONFIGMAP_NAMESPACE,
                "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "infercast"},
            },
            "data": {f"{board.uid}.json": render(board)},
        }
        for board in BOARDS
    ]
    header = "# Generated by `python -m devtools.dashboards`: edit the definitions there, not this file.\n"
    return header + yaml.dump_all(documents, Dumper=_LiteralDumper, sort_keys=False, width=1000)


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings (the dashboards' JSON) as readable ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_LiteralDumper.add_representer(str, _represent_str)


def generated_files() -> dict[pathlib.Path, str]:
    """Every generated file and its content."""
    files = {DASHBOARD_DIR / f"{board.uid}.json": render(board) for board in BOARDS}
    files[CONFIGMAPS] = configmaps()
    return files


def main() -> int:
    for path, text in generated_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
