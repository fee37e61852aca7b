"""The committed Grafana dashboards: generated, well-formed for Grafana, and querying metrics that exist.

That every query returns data is proven against a real Prometheus in tests/test_observability_e2e.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from controller.observability.metrics import (
    DECISIONS,
    LAST_REFIT,
    POLICY_GAUGES,
    QUERY_DURATION,
    QUERY_ERRORS,
    RECONCILE,
    REFIT_DURATION,
)
from devtools import dashboards

GENERATED = dashboards.generated_files()
BOARDS = {
    board.uid: json.loads((dashboards.DASHBOARD_DIR / f"{board.uid}.json").read_text()) for board in dashboards.BOARDS
}

# Series that come from elsewhere than the operator: vLLM pods, NVIDIA's DCGM exporter, the client's process collector.
EXTERNAL = re.compile(r"^(vllm|DCGM_FI_|process_)")
OPERATOR_FAMILIES = {f.name for f in POLICY_GAUGES} | {
    f.name for f in (DECISIONS, RECONCILE, QUERY_DURATION, QUERY_ERRORS, REFIT_DURATION, LAST_REFIT)
}


def panel_queries(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers before a ``{``, minus functions and keywords)."""
    return {name for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr) if name not in ("by", "on")}


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: p.name)
def test_committed_files_equal_the_generated_ones(path: Any) -> None:
    assert path.read_text() == GENERATED[path], "run: python -m devtools.dashboards"


@pytest.mark.parametrize("uid", BOARDS)
def test_the_json_is_a_grafana_dashboard_the_sdk_reads_back_unchanged(uid: str) -> None:
    """Grafana's own model round-trips the JSON: no unknown field, no field of the wrong type."""
    board = BOARDS[uid]
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board
    assert board["uid"] == uid and board["title"].startswith("infercast / ")


@pytest.mark.parametrize("uid", BOARDS)
def test_every_panel_queries_the_chosen_prometheus_with_unique_ref_ids(uid: str) -> None:
    variables = {v["name"]: v for v in BOARDS[uid]["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "policy"} <= variables.keys()
    for panel in BOARDS[uid]["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(refs), panel["title"]
        assert panel["gridPos"]["w"] <= 24


@pytest.mark.parametrize("uid", BOARDS)
def test_every_variable_a_query_uses_is_defined(uid: str) -> None:
    board = BOARDS[uid]
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval", "__interval"}
    texts = panel_queries(board) + [a["expr"] for a in board["annotations"].get("list", [])]
    texts += [v.get("query", "") for v in board["templating"]["list"] if v["type"] == "query"]
    # A Grafana variable's name starts with a letter; $1 is a PromQL label_replace group.
    used = {name for text in texts for name in re.findall(r"\$([A-Za-z_]\w*)", text)}
    assert used <= defined, used - defined


@pytest.mark.parametrize("uid", BOARDS)
def test_every_metric_queried_is_exported_by_the_operator_or_a_known_exporter(uid: str) -> None:
    board = BOARDS[uid]
    for expr in panel_queries(board):
        for name in metric_names(expr) - {""}:
            family = re.sub(r"_(bucket|count|sum)$", "", name)  # a histogram's series
            assert family in OPERATOR_FAMILIES or EXTERNAL.match(name), (name, expr)


def test_policy_series_are_filtered_by_the_namespace_and_policy_variables() -> None:
    for board in BOARDS.values():
        for expr in panel_queries(board):
            for name in metric_names(expr) & {f.name for f in POLICY_GAUGES}:
                assert re.search(
                    name + r'\{cluster=~"\$cluster", namespace=~"\$namespace", policy=~"\$policy"', expr
                ), expr


def test_the_configmaps_carry_the_grafana_sidecar_label_and_the_same_json() -> None:
    documents = list(yaml.safe_load_all(dashboards.CONFIGMAPS.read_text()))
    assert len(documents) == len(dashboards.BOARDS)
    for document in documents:
        assert document["kind"] == "ConfigMap"
        assert document["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = document["data"].items()
        assert json.loads(text) == BOARDS[key.removesuffix(".json")]


def test_the_dashboards_cover_what_the_issue_asks_for() -> None:
    """Each dashboard shows its part of issue 6; a panel removed by mistake fails here."""
    titles = {uid: " | ".join(p["title"] for p in board["panels"]).lower() for uid, board in BOARDS.items()}
    for word in ("load", "forecast", "capacity", "replicas", "first token", "output token", "gpu"):
        assert word in titles["infercast-fleet"], word
    for word in ("failure score", "ejected", "outlier thresholds", "route weights"):
        assert word in titles["infercast-traffic"], word
    for word in ("reconcile", "query errors", "forecast accuracy", "refit"):
        assert word in titles["infercast-operator"], word
    assert BOARDS["infercast-fleet"]["annotations"]["list"][0]["name"] == "Scale decisions"


@pytest.mark.parametrize("uid", BOARDS)
def test_no_axis_mixes_units(uid: str) -> None:
    """A panel has one unit on its left axis; a second unit is an override that moves its series to the right."""
    for panel in BOARDS[uid]["panels"]:
        overrides = panel["fieldConfig"].get("overrides") or []
        right_units = set()
        for override in overrides:
            assert override["matcher"]["id"] == "byFrameRefID", panel["title"]
            properties = {p["id"]: p["value"] for p in override["properties"]}
            assert properties.get("custom.axisPlacement") == "right", panel["title"]
            right_units.add(properties["unit"])
        assert len(right_units) <= 1, (panel["title"], right_units)
        assert panel["fieldConfig"]["defaults"]["unit"] not in right_units, panel["title"]


@pytest.mark.parametrize("uid", BOARDS)
def test_every_query_and_variable_is_narrowed_to_the_chosen_clusters(uid: str) -> None:
    board = BOARDS[uid]
    cluster = next(v for v in board["templating"]["list"] if v["name"] == "cluster")
    assert cluster["includeAll"] and cluster["allValue"] == ".*", "All also matches series without a cluster label"
    queries = panel_queries(board) + [a["expr"] for a in board["annotations"].get("list", [])]
    queries += [v["query"] for v in board["templating"]["list"] if v["type"] == "query" and v["name"] != "cluster"]
    for query in queries:
        # Series selectors; a regex's {5,10} inside one is part of it.
        selectors = re.findall(r"\{((?:[^{}]|\{[0-9,]*\})*)\}", query)
        assert all('cluster=~"$cluster"' in s for s in selectors), query
        assert selectors or query.startswith("vector($"), query  # only an SLO line selects no series
