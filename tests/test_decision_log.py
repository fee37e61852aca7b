"""The decision log's schema (docs/decision-log.schema.json) against records the controller really builds.

Records come from the controller's own record builder fed by the real reactive policy, for every
kind of ScalingPolicy decision: scale-up, recommendation, stabilized hold, rate-limited scale-up,
hold on missing metrics and fallback. The operator's own lines are checked end to end in
tests/test_observability_e2e.py.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
from typing import Any

import jsonschema
import pytest

from controller.actuators import ScaleObservation
from controller.cycle import PolicySnapshot
from controller.decisions import DecisionRecord
from controller.kube import ObjectRef
from controller.prometheus import MetricError
from controller.scaling import MetricReading, _apply_fallback, _record
from controller.spec import parse_scaling_policy
from policies import MetricObservation, ReactiveInputs, ScalingState, decide_reactive

REPO = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs/decision-log.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
NOW = 1_800_000_000.0


def scaling_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
        "minReplicas": 1,
        "maxReplicas": 8,
        "mode": "Auto",
        "prometheus": {"url": "http://prometheus:9090"},
        "metrics": [
            {"name": "waiting", "preset": "vllm-requests-waiting", "target": {"type": "AverageValue", "value": 4}}
        ],
        **overrides,
    }


def decide(
    raw_spec: dict[str, Any],
    replicas: int,
    value: float | None,
    *,
    state: ScalingState | None = None,
    error: MetricError | None = None,
    now: float = NOW,
) -> tuple[DecisionRecord, ScalingState]:
    """One cycle's record as reconcile_scaling builds it, without the cluster around it."""
    spec = parse_scaling_policy(raw_spec)
    policy = PolicySnapshot("ScalingPolicy", "demo", "vllm", "uid", 1, raw_spec, {})
    observed = ScaleObservation(ObjectRef("apps/v1", "Deployment", "demo", "vllm"), replicas, replicas, replicas, "")
    readings = [MetricReading(m, "query", value, error) for m in spec.metrics]
    inputs = ReactiveInputs(
        spec_replicas=replicas,
        ready_replicas=replicas,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metrics=tuple(MetricObservation(m.name, value, m.target_type, m.target) for m in spec.metrics),
        behavior=spec.behavior,
    )
    decision = decide_reactive(inputs, state or ScalingState(), now)
    desired = _apply_fallback(decision, spec, observed, readings)
    applied = spec.mode == "Auto" and desired != replicas
    return _record(policy, spec, observed, readings, decision, desired, applied, now), decision.state


def scale_up() -> DecisionRecord:
    return decide(scaling_spec(), 1, 11.0)[0]


def recommendation() -> DecisionRecord:
    return decide(scaling_spec(mode="Recommend"), 1, 20.0)[0]


def stabilized_hold() -> DecisionRecord:
    spec = scaling_spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    _, state = decide(spec, 4, 16.0)
    return decide(spec, 4, 0.0, state=state, now=NOW + 10)[0]


def rate_limited_scale_up() -> DecisionRecord:
    spec = scaling_spec(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    return decide(spec, 1, 40.0)[0]


def metrics_missing() -> DecisionRecord:
    return decide(scaling_spec(), 3, None, error=MetricError("Unreachable", "cannot reach Prometheus"))[0]


def fallback() -> DecisionRecord:
    spec = scaling_spec(fallback={"onMetricsUnavailable": "Fallback", "replicas": 4})
    return decide(spec, 2, None, error=MetricError("NoData", "query returned no series"))[0]


SCALING_DECISIONS = {
    "scale-up": scale_up,
    "recommendation": recommendation,
    "stabilized-hold": stabilized_hold,
    "rate-limited": rate_limited_scale_up,
    "metrics-missing": metrics_missing,
    "fallback": fallback,
}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("build", SCALING_DECISIONS.values(), ids=SCALING_DECISIONS.keys())
def test_every_scaling_decision_line_matches_the_schema(build: Any) -> None:
    line = json.loads(json.dumps(build().to_log()))  # what a reader of the log gets back
    VALIDATOR.validate(line)


def test_the_scenarios_cover_each_action_and_the_limiting_rules() -> None:
    """Guards the table above: a scenario that stopped producing its decision would prove nothing."""
    records = {name: build() for name, build in SCALING_DECISIONS.items()}
    assert {r.action for r in records.values()} == {"ScaleUp", "Hold"}
    assert (records["scale-up"].action, records["scale-up"].to, records["scale-up"].applied) == ("ScaleUp", 3, True)
    assert records["recommendation"].applied is False and records["recommendation"].to == 5
    assert records["stabilized-hold"].reasons[-1] == "ScaleDownStabilized"
    assert records["rate-limited"].reasons[-1] == "ScaleUpRateLimited" and records["rate-limited"].to == 2
    assert records["metrics-missing"].inputs["metrics"][0]["value"] is None
    assert records["fallback"].reasons[0] == "FallbackReplicas" and records["fallback"].to == 4


def test_a_scale_down_line_matches_the_schema() -> None:
    spec = scaling_spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    record = decide(spec, 4, 4.0)[0]
    assert record.action == "ScaleDown"
    VALIDATOR.validate(record.to_log())


@pytest.mark.parametrize(
    ("change", "where"),
    [
        pytest.param(lambda d: d.update(action="Eject"), "action", id="action-of-another-kind"),
        pytest.param(lambda d: d.update(unknown=1), "", id="unknown-field"),
        pytest.param(lambda d: d["inputs"].pop("readyReplicas"), "inputs", id="scaling-input-missing"),
        pytest.param(lambda d: d["inputs"]["metrics"][0].update(value="12"), "inputs", id="value-as-text"),
        pytest.param(lambda d: d.update(time="2026-11-12 09:14:05"), "time", id="time-not-rfc3339"),
        pytest.param(lambda d: d.update(policy="vllm"), "policy", id="policy-without-namespace"),
    ],
)
def test_the_schema_rejects_malformed_lines(change: Any, where: str) -> None:
    line = copy.deepcopy(scale_up().to_log())
    change(line)
    errors = list(VALIDATOR.iter_errors(line))
    assert errors, "the malformed line was accepted"
    assert any(where in "/".join(map(str, e.absolute_path)) for e in errors)


DOC = (REPO / "docs/decision-log.md").read_text()


def test_every_example_in_the_documentation_matches_the_schema() -> None:
    examples = re.findall(r"```json\n(.*?)\n```", DOC, flags=re.DOTALL)
    assert len(examples) >= 3
    for example in examples:
        VALIDATOR.validate(json.loads(example))


def test_the_documentation_describes_every_field() -> None:
    documented = set(re.findall(r"`(\w+)(?:\[\])?`", DOC))
    for fields in (
        SCHEMA["properties"],
        SCHEMA["$defs"]["scalingInputs"]["properties"],
        SCHEMA["$defs"]["scalingOutput"]["properties"],
        SCHEMA["$defs"]["forecast"]["properties"],
        SCHEMA["$defs"]["trafficInputs"]["properties"],
        SCHEMA["$defs"]["trafficInputs"]["properties"]["backends"]["items"]["properties"],
        SCHEMA["$defs"]["breakerOutput"]["properties"],
        SCHEMA["$defs"]["routingOutput"]["properties"],
    ):
        assert set(fields) <= documented, set(fields) - documented
