"""The operator's PrometheusRule: valid for promtool, every alert unit-tested, and built on real metric names.

``deploy/monitoring/prometheusrule.yaml`` is a Prometheus Operator object; its ``spec.groups`` is a
plain Prometheus rule file, which is what promtool checks. ``promtool`` comes with Debian's
prometheus package (``make install``). The unit tests are ``tests/alerts/infercast-rules.test.yaml``.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import yaml

from controller.observability.metrics import OperatorMetrics

REPO = pathlib.Path(__file__).resolve().parent.parent
RULE = REPO / "deploy/monitoring/prometheusrule.yaml"
UNIT_TESTS = REPO / "tests/alerts/infercast-rules.test.yaml"


def rule_groups() -> dict[str, Any]:
    (rule,) = [doc for doc in yaml.safe_load_all(RULE.read_text()) if doc]
    assert rule["kind"] == "PrometheusRule"
    return {"groups": rule["spec"]["groups"]}


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups()["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def write_rule_file(directory: pathlib.Path) -> pathlib.Path:
    """The rule groups under the name the unit tests load, beside a copy of the unit tests."""
    (rule_file,) = yaml.safe_load(UNIT_TESTS.read_text())["rule_files"]
    path = directory / str(rule_file)
    path.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    return path


def test_promtool_checks_the_rules(tmp_path: pathlib.Path) -> None:
    path = write_rule_file(tmp_path)
    checked = promtool("check", "rules", path.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass(tmp_path: pathlib.Path) -> None:
    write_rule_file(tmp_path)
    tested = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_unit_tests_fail_on_a_changed_threshold(tmp_path: pathlib.Path) -> None:
    """The control for the test above: the unit tests see an alert that fires at another level."""
    path = write_rule_file(tmp_path)
    path.write_text(
        path.read_text().replace("infercast_forecast_error_ratio > 0.5", "infercast_forecast_error_ratio > 0.9")
    )
    tested = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and "InfercastForecastErrorHigh" in tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert len(alerts) == 7
    assert firing == alerts
    assert silent == alerts


def exported_series_names() -> set[str]:
    """Every series name the operator's /metrics can carry, from the families' TYPE lines."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", OperatorMetrics().exposition().decode(), re.MULTILINE):
        suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("", "_total")}.get(kind, ("",))
        names |= {
            family.removesuffix("_total") + suffix if kind == "counter" else family + suffix for suffix in suffixes
        }
    return names


def test_the_rules_read_metrics_the_operator_exports() -> None:
    # Metric names, not the recording rules' level:metric:operation names.
    used = {name for rule in rules() for name in re.findall(r"(?<![\w:])infercast_\w+(?![\w:])", rule["expr"])}
    assert used - exported_series_names() == set()
