"""``infercast explain`` formats decision records; the CLI on a live operator is in test_observability_e2e."""

from __future__ import annotations

import json
from typing import Any

from controller.explain import decision_lines, explain
from tests.test_decision_log import metrics_missing, rate_limited_scale_up, scale_up, stabilized_hold

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


def test_the_forecast_is_shown_when_the_decision_used_one() -> None:
    record = scale_up().to_log()
    record["inputs"]["forecast"] = {
        "model": "seasonal_naive",
        "mean": 120.0,
        "lower": 90.5,
        "upper": 150.0,
        "quantile": 140.0,
        "quantileLevel": 0.9,
        "leadTimeSeconds": 90,
        "capacityPerReplica": 40.0,
        "recentErrorRatio": 0.12,
    }
    text = explain("ScalingPolicy", "demo", "vllm", None, [record], limit=10)
    assert (
        "forecast: mean 120 [90.5, 150], q0.9 140 at +90s, 40 per replica (model seasonal_naive, recent error 12%)"
        in (text)
    )


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
