"""The spec parser: what the CRD schema cannot reject is refused here with a stable reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.errors import SpecError
from controller.scaling.spec import parse_scaling_policy
from policies import Behavior

VALID: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
    "minReplicas": 1,
    "maxReplicas": 8,
    "prometheus": {"url": "http://prometheus:9090"},
    "metrics": [{"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 4}}],
}


def with_changes(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        node = spec
        *path, last = dotted.split("__")
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return spec


def test_defaults_follow_the_documented_ones() -> None:
    parsed = parse_scaling_policy(VALID)
    assert parsed.mode == "Auto"
    assert parsed.interval_s == 15
    assert parsed.prometheus.timeout_s == 5.0
    assert parsed.behavior == Behavior()
    assert parsed.fallback.on_metrics_unavailable == "Hold"
    assert parsed.target.group == "apps" and parsed.target.version == "v1"


def test_behavior_overrides_only_what_is_given() -> None:
    parsed = parse_scaling_policy(
        with_changes(behavior={"scaleDown": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min"}})
    )
    assert parsed.behavior.scale_down.stabilization_window_seconds == 30
    assert parsed.behavior.scale_down.select_policy == "Min"
    assert parsed.behavior.scale_down.policies == Behavior().scale_down.policies
    assert parsed.behavior.scale_up == Behavior().scale_up


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"minReplicas": 9}, "InvalidReplicaBounds", id="min-above-max"),
        pytest.param({"maxReplicas": None}, "InvalidReplicaBounds", id="no-max"),
        pytest.param({"targetRef__name": None}, "InvalidTargetRef", id="target-without-name"),
        pytest.param({"mode": "Sometimes"}, "InvalidMode", id="unknown-mode"),
        pytest.param({"interval": 1}, "InvalidInterval", id="interval-too-short"),
        pytest.param({"metrics": []}, "NoMetrics", id="no-metrics"),
        pytest.param({"metrics__0__preset": "vllm-everything"}, "UnknownPreset", id="unknown-preset"),
        pytest.param({"metrics__0__query": "up"}, "InvalidMetric", id="preset-and-query"),
        pytest.param({"metrics__0__preset": None}, "InvalidMetric", id="neither-preset-nor-query"),
        pytest.param({"metrics__0__target__value": 0}, "InvalidMetric", id="zero-target"),
        pytest.param({"metrics__0__target__type": "Utilization"}, "InvalidMetric", id="unknown-target-type"),
        pytest.param(
            {"metrics__0__preset": "tgi-queue-size", "metrics__0__modelName": "m"}, "InvalidMetric", id="tgi-model"
        ),
        pytest.param({"prometheus__url": "prometheus:9090"}, "InvalidPrometheus", id="url-without-scheme"),
        pytest.param({"prometheus__bearerTokenSecretRef": {"name": "s"}}, "InvalidPrometheus", id="secret-no-key"),
        pytest.param({"fallback": {"onMetricsUnavailable": "Fallback"}}, "InvalidFallback", id="fallback-no-count"),
        pytest.param(
            {"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}},
            "InvalidBehavior",
            id="zero-pods-policy",
        ),
        pytest.param({"minReplicas": "many"}, "InvalidSpec", id="malformed-type"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_scaling_policy(with_changes(**changes))
    assert caught.value.reason == reason
    assert caught.value.message


def test_duplicate_metric_names_are_refused() -> None:
    spec = copy.deepcopy(VALID)
    spec["metrics"].append(copy.deepcopy(spec["metrics"][0]))
    with pytest.raises(SpecError, match="unique"):
        parse_scaling_policy(spec)
