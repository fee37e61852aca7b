"""The operator's own metrics: derived from decision records, bounded, removed with their policy, lint-clean."""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import urllib.request
from typing import Any

import pytest

from controller.clients.prometheus import Credentials, MetricError, PrometheusPool
from controller.clients.refs import PrometheusSpec
from controller.observability import OperatorMetrics, samples_of
from controller.observability.decisions import DecisionRecord
from controller.observability.metrics import Sample
from devtools.prometheus_server import Prometheus, free_port
from tests.harness.exporter import Exporter
from tests.test_decision_log import breaker_record, capacity_unknown, forecast_rate_limited, forecast_scale_up

BASE = {"namespace": "demo", "policy": "vllm", "target": "Deployment/vllm"}


def record(**changes: Any) -> DecisionRecord:
    base = DecisionRecord(
        id="0123456789abcdef",
        time="2026-11-12T09:14:05Z",
        kind="ScalingPolicy",
        namespace="demo",
        name="vllm",
        target="Deployment/vllm",
        mode="Auto",
        action="ScaleUp",
        from_=1,
        to=3,
        applied=True,
        reason="ScaleUp",
        reasons=("ScaleUp",),
        message="m",
        inputs={
            "specReplicas": 1,
            "readyReplicas": 1,
            "minReplicas": 1,
            "maxReplicas": 8,
            "metrics": [
                {"name": "waiting", "value": 11.0, "target": 4, "type": "AverageValue"},
                {"name": "running", "value": 30.0, "target": 24, "type": "AverageValue"},
            ],
        },
        output={"desiredReplicas": 3, "recommendedReplicas": 3, "proposals": []},
    )
    return dataclasses.replace(base, **changes)


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {**BASE, **labels})


def test_a_scaling_record_gives_load_targets_and_replica_counts() -> None:
    assert set(samples_of(record())) == {
        Sample("infercast_metric_value", 11.0, ("waiting",)),
        Sample("infercast_metric_target", 4.0, ("waiting", "AverageValue")),
        Sample("infercast_metric_value", 30.0, ("running",)),
        Sample("infercast_metric_target", 24.0, ("running", "AverageValue")),
        Sample("infercast_desired_replicas", 3.0),
        Sample("infercast_current_replicas", 3.0),  # applied: the target now has `to` replicas
        Sample("infercast_ready_replicas", 1.0),
        Sample("infercast_min_replicas", 1.0),
        Sample("infercast_max_replicas", 8.0),
    }


def test_a_recommendation_leaves_the_current_count_where_it_was() -> None:
    samples = samples_of(record(applied=False, mode="Recommend"))
    assert Sample("infercast_current_replicas", 1.0) in samples
    assert Sample("infercast_desired_replicas", 3.0) in samples


def test_a_missing_metric_has_no_value_series_never_a_zero() -> None:
    inputs = {**record().inputs, "metrics": [{"name": "waiting", "value": None, "target": 4, "type": "AverageValue"}]}
    samples = samples_of(record(inputs=inputs))
    assert not [s for s in samples if s.family == "infercast_metric_value"]
    assert Sample("infercast_metric_target", 4.0, ("waiting", "AverageValue")) in samples


def test_a_predictive_record_gives_the_forecast_load_capacity_and_lead_time_it_states() -> None:
    """A record of the predictive decide step, as the operator logs it, feeds every forecast gauge."""
    up = forecast_scale_up()
    forecast = up.inputs["forecast"]
    families = ("infercast_forecast", "infercast_capacity", "infercast_lead", "infercast_slo")
    assert {s for s in samples_of(up) if s.family.startswith(families)} == {
        Sample("infercast_forecast_observed_load", forecast["observedLoad"]),
        Sample("infercast_forecast_quantile", forecast["quantile"], ("0.9",)),
        Sample("infercast_lead_time_seconds", forecast["leadTimeSeconds"]),
        Sample("infercast_capacity_per_replica", forecast["capacityPerReplica"]),
        # The spec's perReplica is the prior of every resource nothing was learned of yet.
        Sample("infercast_capacity_resource_per_replica", forecast["capacityPerReplica"], ("prefill",)),
        Sample("infercast_capacity_resource_per_replica", forecast["capacityPerReplica"], ("decode",)),
        Sample("infercast_slo_attainment", 1.0),
        Sample("infercast_slo_attainment_target", 0.99),
        Sample("infercast_slo_headroom", forecast["headroom"]),
    }  # no recent error yet: no window was scored, and null is no sample, never 0
    scored = dataclasses.replace(up, inputs={**up.inputs, "forecast": {**forecast, "recentErrorRatio": 0.12}})
    assert Sample("infercast_forecast_error_ratio", 0.12) in samples_of(scored)


def test_a_capacity_not_learned_yet_has_no_capacity_series() -> None:
    samples = samples_of(capacity_unknown())
    assert not [s for s in samples if s.family == "infercast_capacity_per_replica"]
    assert [s.family for s in samples].count("infercast_lead_time_seconds") == 1


def test_a_circuit_breaker_record_gives_scores_flagged_count_and_settings() -> None:
    inputs = {"backends": [{"name": "v1", "failureScore": 0.8}, {"name": "v2", "failureScore": None}]}
    output = {
        "backends": [
            {
                "name": "v1",
                "failureScore": 0.8,
                "ejected": True,
                "outlierDetection": {"consecutive5xxErrors": 2},
                "connectionPool": {"max_retries": 1},
            },
            {"name": "v2", "failureScore": None, "ejected": False, "outlierDetection": None, "connectionPool": None},
        ],
        "outlierDetection": {"consecutive5xxErrors": 2},
    }
    cbp = record(kind="CircuitBreakerPolicy", action="Tighten", from_=0, to=1, inputs=inputs, output=output)
    assert set(samples_of(cbp)) == {
        Sample("infercast_failure_score", 0.8, ("v1",)),
        Sample("infercast_flagged_backends", 1.0),
        Sample("infercast_outlier_setting", 2.0, ("v1", "consecutive5xxErrors")),
        Sample("infercast_connection_pool_setting", 1.0, ("v1", "max_retries")),
    }


def test_the_failure_score_is_the_one_the_decision_used() -> None:
    """A backend flagged by a spec limit while its detector is still calm shows the decision's score."""
    inputs = {"backends": [{"name": "v1", "failureScore": 0.0}]}
    output = {"backends": [{"name": "v1", "failureScore": 1.0, "ejected": True}]}
    cbp = record(kind="CircuitBreakerPolicy", action="Tighten", from_=0, to=1, inputs=inputs, output=output)
    assert Sample("infercast_failure_score", 1.0, ("v1",)) in set(samples_of(cbp))
    assert Sample("infercast_failure_score", 0.0, ("v1",)) not in set(samples_of(cbp))


def test_a_real_circuit_breaker_record_gives_every_setting_of_every_backend() -> None:
    cbp = breaker_record({"h100": 0.3, "l4": 0.0})
    settings = {(s.family, s.extra): s.value for s in samples_of(cbp) if s.family.endswith("_setting")}
    for backend in cbp.output["backends"]:
        for part, family in (
            ("outlierDetection", "infercast_outlier_setting"),
            ("connectionPool", "infercast_connection_pool_setting"),
        ):
            for field, number in backend[part].items():
                assert settings.pop((family, (backend["name"], field))) == number
    assert settings == {}


def test_a_routing_record_gives_each_backends_share_of_traffic() -> None:
    inputs = {"strategy": "Capacity", "backends": [{"name": "a", "failureScore": 0.1}]}
    output = {"weights": {"a": 75, "b": 25}, "target": {"a": 80, "b": 20}, "total": 100}
    routing = record(kind="RoutingPolicy", action="Shift", from_=70, to=75, inputs=inputs, output=output)
    assert set(samples_of(routing)) == {
        Sample("infercast_failure_score", 0.1, ("a",)),
        Sample("infercast_route_weight_ratio", 0.75, ("a",)),
        Sample("infercast_route_weight_ratio", 0.25, ("b",)),
    }


def test_records_of_unexpected_shapes_give_no_series_and_never_raise() -> None:
    odd = record(inputs={"metrics": "x", "forecast": [1], "backends": {"a": 1}}, output={"weights": [1], "total": 0})
    assert samples_of(odd) == []


def test_decisions_are_counted_by_kind_action_and_reason() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    metrics.record_decision(record())
    metrics.record_decision(record(action="Hold", reason="WithinTolerance", to=1, applied=False))
    up = {"kind": "ScalingPolicy", "action": "ScaleUp", "reason": "ScaleUp", "path": ""}
    hold = {"kind": "ScalingPolicy", "action": "Hold", "reason": "WithinTolerance", "path": ""}
    assert value(metrics, "infercast_decisions_total", **up) == 2
    assert value(metrics, "infercast_decisions_total", **hold) == 1


def test_predictive_decisions_are_counted_by_the_path_that_set_the_count() -> None:
    metrics = OperatorMetrics()
    for decided in (forecast_scale_up(), forecast_scale_up(), forecast_rate_limited()):
        metrics.record_decision(decided)
    by_forecast = {"kind": "ScalingPolicy", "action": "ScaleUp", "reason": "ForecastScaleUp", "path": "forecast"}
    assert value(metrics, "infercast_decisions_total", **by_forecast) == 2
    assert value(metrics, "infercast_decisions_total", **{**by_forecast, "path": "limit"}) == 1


def test_a_path_outside_the_documented_four_is_not_a_label_value() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record(output={**record().output, "path": "x" * 300}))
    assert (
        value(metrics, "infercast_decisions_total", kind="ScalingPolicy", action="ScaleUp", reason="ScaleUp", path="")
        == 1
    )


def test_series_the_new_record_no_longer_states_are_removed() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    assert value(metrics, "infercast_metric_value", metric="running") == 30
    inputs = {**record().inputs, "metrics": [record().inputs["metrics"][0]]}  # `running` left the spec
    metrics.record_decision(record(inputs=inputs))
    assert value(metrics, "infercast_metric_value", metric="running") is None
    assert value(metrics, "infercast_metric_value", metric="waiting") == 11


def test_a_new_target_drops_every_series_of_the_old_one() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    metrics.record_decision(record(target="StatefulSet/vllm"))
    assert value(metrics, "infercast_desired_replicas") is None
    assert value(metrics, "infercast_desired_replicas", target="StatefulSet/vllm") == 3
    up = {"kind": "ScalingPolicy", "action": "ScaleUp", "reason": "ScaleUp", "path": ""}
    assert value(metrics, "infercast_decisions_total", **up) is None


def test_forget_removes_the_policy_and_nothing_else() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    metrics.record_decision(record(name="other"))
    metrics.record_decision(record(kind="RoutingPolicy"))  # same name, another kind
    metrics.observe_model_refit("ScalingPolicy", "demo", "vllm", "seasonal_naive", 1.5)
    metrics.forget("ScalingPolicy", "demo", "vllm")
    exposition = metrics.exposition().decode()
    assert 'policy="vllm"' in exposition  # the RoutingPolicy's series
    assert 'kind="ScalingPolicy",namespace="demo",policy="vllm"' not in exposition
    assert value(metrics, "infercast_model_last_refit_duration_seconds", model="seasonal_naive") is None
    assert value(metrics, "infercast_desired_replicas", policy="other") == 3
    routed = {"kind": "RoutingPolicy", "action": "ScaleUp", "reason": "ScaleUp", "path": ""}
    assert value(metrics, "infercast_decisions_total", **routed) == 1


def test_refits_are_timed_per_model_and_the_latest_per_policy() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    metrics.observe_model_refit("ScalingPolicy", "demo", "vllm", "seasonal_naive", 1.5)
    metrics.observe_model_refit("ScalingPolicy", "demo", "vllm", "gbm", 4.0)
    count = metrics.registry.get_sample_value
    assert count("infercast_model_refit_duration_seconds_count", {"model": "gbm"}) == 1
    assert count("infercast_model_refit_duration_seconds_sum", {"model": "seasonal_naive"}) == 1.5
    assert value(metrics, "infercast_model_last_refit_duration_seconds", model="gbm") == 4.0
    assert value(metrics, "infercast_model_last_refit_duration_seconds", model="seasonal_naive") is None


def test_prometheus_requests_and_their_errors_are_counted() -> None:
    metrics = OperatorMetrics()
    metrics.observe_query(0.02, None)
    metrics.observe_query(1.0, MetricError("Timeout", "no answer"))
    metrics.observe_query(0.01, MetricError("NoData", "no series"))
    get = metrics.registry.get_sample_value
    assert get("infercast_prometheus_query_duration_seconds_count") == 3
    assert get("infercast_prometheus_query_duration_seconds_sum") == pytest.approx(1.03)
    assert get("infercast_prometheus_query_errors_total", {"reason": "Timeout"}) == 1
    assert get("infercast_prometheus_query_errors_total", {"reason": "NoData"}) == 1


def test_a_reconcile_that_raises_is_timed_too() -> None:
    metrics = OperatorMetrics()
    with pytest.raises(RuntimeError), metrics.reconcile_timer("ScalingPolicy"):
        raise RuntimeError("bug")
    labels = {"kind": "ScalingPolicy"}
    assert metrics.registry.get_sample_value("infercast_reconcile_duration_seconds_count", labels) == 1


def test_every_family_passes_promtool_check_metrics() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(forecast_scale_up())
    cbp_output = {"backends": {"v1": {"outlierDetection": {"interval_s": 10}, "connectionPool": None}}}
    metrics.record_decision(record(kind="CircuitBreakerPolicy", name="cb", output=cbp_output))
    metrics.observe_query(0.02, MetricError("Timeout", "no answer"))
    metrics.observe_model_refit("ScalingPolicy", "demo", "vllm", "gbm", 4.0)
    with metrics.reconcile_timer("ScalingPolicy"):
        pass
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=metrics.exposition(), capture_output=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_metrics_are_served_over_http_and_a_busy_port_does_not_stop_the_operator() -> None:
    metrics = OperatorMetrics()
    metrics.record_decision(record())
    server = metrics.serve(free_port(), "127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert b"infercast_desired_replicas{" in response.read()
        assert OperatorMetrics().serve(server.port, "127.0.0.1") is None
    finally:
        server.stop()


async def test_the_pool_reports_each_request_it_sends_and_no_cache_hit(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    name = f"infercast_test_{secrets.token_hex(4)}"
    exporter.set_gauge(name, 3.0, pod="a")
    prometheus.wait_for_series(name, timeout=20)
    seen: list[tuple[float, str | None]] = []
    pool = PrometheusPool(
        on_request=lambda seconds, error: seen.append((seconds, None if error is None else error.reason))
    )
    spec = PrometheusSpec(url=prometheus.url, timeout_s=2.0)
    assert await pool.query(spec, Credentials(), f"sum({name})") == 3.0
    assert await pool.query(spec, Credentials(), f"sum({name})") == 3.0  # coalesced: no request
    with pytest.raises(MetricError):
        await pool.query(spec, Credentials(), f"sum({name}{{pod='nobody'}})")
    assert [reason for _, reason in seen] == [None, "NoData"]
    assert all(seconds >= 0 for seconds, _ in seen)


def test_every_cycle_says_whether_the_policy_is_ready_and_its_interval_until_it_is_forgotten() -> None:
    metrics = OperatorMetrics()
    labels = {"kind": "ScalingPolicy", "namespace": "demo", "policy": "vllm"}
    metrics.observe_cycle("ScalingPolicy", "demo", "vllm", ready=True, interval_s=15.0)
    assert metrics.registry.get_sample_value("infercast_policy_ready", labels) == 1.0
    assert metrics.registry.get_sample_value("infercast_policy_interval_seconds", labels) == 15.0
    metrics.record_decision(record())  # a decision replaces the policy's gauges, not these
    metrics.observe_cycle("ScalingPolicy", "demo", "vllm", ready=False, interval_s=30.0)
    assert metrics.registry.get_sample_value("infercast_policy_ready", labels) == 0.0
    assert metrics.registry.get_sample_value("infercast_policy_interval_seconds", labels) == 30.0
    metrics.forget("ScalingPolicy", "demo", "vllm")
    assert metrics.registry.get_sample_value("infercast_policy_ready", labels) is None
    assert metrics.registry.get_sample_value("infercast_policy_interval_seconds", labels) is None
