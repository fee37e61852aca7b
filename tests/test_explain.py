"""``infercast explain`` formats decision records; the CLI on a live operator is in test_observability_e2e."""

from __future__ import annotations

import json
from typing import Any

from controller.observability.explain import decision_lines, explain, learned_lines
from tests.test_decision_log import (
    capacity_unknown,
    forecast_rate_limited,
    forecast_scale_up,
    load_missing,
    metrics_missing,
    rate_limited_scale_up,
    scale_up,
    stabilized_hold,
)

POLICY = "demo/vllm"


def line(record: Any) -> str:
    return json.dumps(record.to_log())


def test_decision_lines_keeps_only_this_policys_decisions_in_order() -> None:
    mine_first, mine_second = scale_up().to_log(), stabilized_hold().to_log()
    other_policy = {**mine_first, "policy": "demo/other"}
    other_kind = {**mine_first, "kind": "RoutingPolicy"}
    log = [
        "[2026-11-12 09:14:00,123] kopf.activities.startup [INFO    ] Activity 'configure' succeeded.",
        json.dumps(mine_first),
        json.dumps(other_policy),
        '{"event": "something else"}',
        "{not json",
        json.dumps(other_kind),
        f"2026-11-12T09:20:40.000Z {json.dumps(mine_second)}",  # a `kubectl logs --timestamps` prefix
    ]
    assert decision_lines(log, "ScalingPolicy", POLICY) == [mine_first, mine_second]


def test_the_timeline_says_what_was_decided_from_what_and_which_rule_limited_it() -> None:
    limited = rate_limited_scale_up().to_log()
    text = explain("ScalingPolicy", "demo", "vllm", None, [limited], limit=10)
    assert f"{limited['time']}  ScaleUp" in text
    assert "1 -> 2  applied" in text
    assert "waiting 40 vs target 4 per replica" in text
    assert "ready 1 of 1, bounds 1..8" in text
    assert "ScaleUpRateLimited (the metrics asked for 10, decided 2)" in text
    assert "ScaleUp -> ScaleUpRateLimited" in text
    assert limited["message"] in text


def test_an_unlimited_decision_names_no_limiting_rule() -> None:
    text = explain("ScalingPolicy", "demo", "vllm", None, [scale_up().to_log()], limit=10)
    assert "limited:" not in text


def test_a_missing_metric_is_shown_missing_with_its_error_never_as_zero() -> None:
    text = explain("ScalingPolicy", "demo", "vllm", None, [metrics_missing().to_log()], limit=10)
    assert "waiting missing (Unreachable) vs target 4" in text
    assert "waiting 0" not in text


def test_a_predictive_decision_shows_its_path_and_the_forecast_numbers() -> None:
    up = forecast_scale_up().to_log()
    forecast = up["inputs"]["forecast"]
    text = explain("ScalingPolicy", "demo", "vllm", None, [up], limit=10)
    assert "path:     forecast (the forecast's quantile over the lead time set the count)" in text
    assert (
        f"forecast: q0.9 {forecast['quantile']:.0f} over the lead time (issued {forecast['issuedAt']});"
        f" lead time 20s; capacity 100 per replica ({forecast['capacityBinding']} binds);"
        f" headroom {forecast['headroom']:g}; SLO attainment 1 (target 0.99);"
        f" observed load {forecast['observedLoad']:.0f}"
        " (model Linear, latency 0.4s, queue 0)"
    ) in text
    assert "limited:" not in text


def test_a_rate_limited_predictive_decision_names_what_the_paths_asked_for() -> None:
    text = explain("ScalingPolicy", "demo", "vllm", None, [forecast_rate_limited().to_log()], limit=10)
    assert "path:     limit" in text
    assert "ScaleUpRateLimited (the forecast and reactive paths asked for 52, decided 51)" in text


def test_a_predictive_decision_without_forecast_or_capacity_says_so_never_zero() -> None:
    text = explain("ScalingPolicy", "demo", "vllm", None, [load_missing().to_log(), capacity_unknown().to_log()], 10)
    assert "path:     hold" in text and "path:     reactive" in text
    assert "q0.9 none to follow" in text
    assert "observed load missing (Unreachable: cannot reach Prometheus)" in text
    assert "capacity unknown" in text
    assert "observed load 0" not in text


def test_the_status_of_a_predictive_policy_gives_lead_time_capacity_and_forecast() -> None:
    obj = {
        "spec": {"targetRef": {"kind": "Deployment", "name": "vllm"}, "mode": "Auto"},
        "status": {
            "lastDecision": forecast_scale_up().to_status(),
            "leadTime": {"seconds": 16.2, "source": "measured", "samples": [15.1, 16.2], "lastPodCreated": 1.0},
            "capacity": {
                "unit": "PrefillTokensPerSecond",
                "perReplica": 3000,
                "source": "learned",
                "binding": "decode",
                "resources": [
                    {
                        "resource": "prefill",
                        "unit": "PrefillTokensPerSecond",
                        "perReplica": 12000,
                        "source": "learned",
                        "confidence": 1.0,
                    },
                    {
                        "resource": "decode",
                        "unit": "GeneratedTokensPerSecond",
                        "perReplica": 640,
                        "source": "learned",
                        "confidence": 0.9,
                    },
                ],
            },
            "slo": {"target": 0.99, "realized": 0.995, "windowMinutes": 200, "headroom": 1.12, "adaptive": True},
            "forecast": {
                "quantile": 0.9,
                "model": "Auto",
                "fresh": True,
                "refitting": False,
                "windowSeconds": 21.2,
                "peak": 8452.4,
                "issuedAt": "2026-11-29T07:23:59Z",
                "accuracy": {"errorRatio": 0.25, "coverage": 0.9, "windows": 12},
            },
        },
    }
    text = explain("ScalingPolicy", "demo", "vllm", obj, [], limit=10)
    assert "lead time: 16.2s (measured; start-ups seen: 15.1s, 16.2s)" in text
    assert (
        "capacity: 3000 PrefillTokensPerSecond per replica (learned, decode binds;"
        " prefill 12000 PrefillTokensPerSecond (learned, confidence 1);"
        " decode 640 GeneratedTokensPerSecond (learned, confidence 0.9))"
    ) in text
    assert "SLO attainment: 0.995 over the last 200 minutes for a target of 0.99; headroom 1.12" in text
    assert (
        "forecast: q0.9 peak 8452 over the next 21.2s, issued 2026-11-29T07:23:59Z (fresh, model Auto);"
        " recent error 25% over 12 windows, coverage 0.9"
    ) in text
    # status.lastDecision has no output (the CRD keeps it small) but keeps the path that set the count.
    assert "path:     forecast (the forecast's quantile over the lead time set the count)" in text


def test_short_gpu_supply_is_explained_with_the_pending_replicas_and_the_wait() -> None:
    lead = {"seconds": 75.0, "source": "measured", "samples": [15.0], "supply": "Short", "pendingReplicas": 2}
    short = learned_lines({"leadTime": {**lead, "schedulingDelaySeconds": 60.0}})
    assert short[1] == "GPU nodes short: 2 pending, 60s wait for a node in the lead time"
    assert len(learned_lines({"leadTime": {**lead, "supply": "Available"}})) == 1


def test_a_capacity_not_learned_yet_shows_unknown_in_the_status() -> None:
    status = {"capacity": {"unit": "RequestsPerSecond", "perReplica": None, "source": "learned", "samples": [1.0]}}
    text = explain("ScalingPolicy", "demo", "vllm", {"spec": {}, "status": status}, [], limit=10)
    assert "capacity: unknown (learned)" in text


def test_only_the_last_decisions_are_shown_with_how_many_there_were() -> None:
    records = [{**scale_up().to_log(), "id": f"{n:016x}"} for n in range(5)]
    text = explain("ScalingPolicy", "demo", "vllm", None, records, limit=2)
    assert "oldest first, 2 of 5" in text
    assert [f"id {n:016x}" in text for n in range(5)] == [False, False, False, True, True]


def test_without_a_log_the_status_gives_the_state_and_the_last_decision() -> None:
    last = stabilized_hold().to_status()
    obj = {
        "spec": {"targetRef": {"kind": "Deployment", "name": "vllm"}, "mode": "Auto"},
        "status": {
            "currentReplicas": 4,
            "readyReplicas": 4,
            "desiredReplicas": 4,
            "lastDecision": last,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Scaling", "message": "the policy is active"},
                {"type": "ScalingLimited", "status": "True", "reason": "ScaleDownStabilized", "message": "m"},
            ],
        },
    }
    text = explain("ScalingPolicy", "demo", "vllm", obj, [], limit=10)
    assert text.startswith("ScalingPolicy demo/vllm -> Deployment/vllm (mode Auto)\n")
    assert "Ready=True (Scaling): the policy is active" in text
    assert "ScalingLimited=True (ScaleDownStabilized)" in text
    assert "replicas: current 4, ready 4, desired 4" in text
    assert "Last decision (from status" in text
    assert f"id {last['id']}" in text and "ScaleDown -> ScaleDownStabilized" in text
    assert "path:" not in text, "a reactive policy's decision has no path"


def test_a_policy_not_reconciled_yet_says_so() -> None:
    text = explain("ScalingPolicy", "demo", "vllm", {"spec": {}, "status": {}}, [], limit=10)
    assert "no status yet" in text and "No decision yet." in text


def test_traffic_decisions_show_each_backends_score_and_weight() -> None:
    record = {
        **scale_up().to_log(),
        "kind": "RoutingPolicy",
        "action": "Shift",
        "inputs": {
            "strategy": "Capacity",
            "backends": [
                {"name": "a100", "failureScore": 0.9, "errorRate": 0.2, "weight": 50},
                {"name": "h100", "failureScore": None, "weight": 50},
            ],
        },
        "output": {"weights": {"a100": 30, "h100": 70}, "target": {"a100": 0, "h100": 100}, "total": 100},
    }
    text = explain("RoutingPolicy", "demo", "vllm", None, [record], limit=10)
    assert "backend:  a100, failure score 0.9, error rate 0.2, weight 50 -> 30" in text
    assert "backend:  h100, failure score missing, weight 50 -> 70" in text


def test_a_resource_not_measured_yet_says_so() -> None:
    prefill = {"resource": "prefill", "unit": "PrefillTokensPerSecond", "perReplica": None, "source": "prior"}
    status = {"capacity": {"perReplica": 3000.0, "source": "prior", "resources": [{**prefill, "confidence": 0.0}]}}
    (line,) = learned_lines(status)
    assert "prefill not measured yet (prior, confidence 0)" in line
    assert "missing" not in line
