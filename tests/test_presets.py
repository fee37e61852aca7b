"""Metric presets: every template renders to PromQL that real Prometheus parses, selecting the right pods."""

from __future__ import annotations

import math
import pathlib
import re
import shutil
import subprocess
from dataclasses import replace

import pytest
import yaml

from controller.clients.prometheus import union_query
from controller.clients.servers import CAPACITY_UNITS, PRESETS, SERVERS, backend_queries, render_preset, stalled
from controller.scaling.observe import predictive_queries
from controller.scaling.spec import parse_scaling_policy

REPO = pathlib.Path(__file__).resolve().parent.parent


def promtool_check(tmp_path: pathlib.Path, expressions: list[str]) -> None:
    """``promtool check rules``: Prometheus' own PromQL parser accepts every one of ``expressions``."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; `make test` installs it"
    rules = [{"record": f"infercast:preset_{i}", "expr": expr} for i, expr in enumerate(expressions)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "presets", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_preset_is_valid_promql_for_prometheus(tmp_path: pathlib.Path) -> None:
    """Each preset and its freshness query."""
    rendered = [
        render_preset(
            name,
            namespace="prod",
            kind=kind,
            name="vllm.llama-8b",
            model_name="meta-llama/Llama-3.1-8B" if PRESETS[name].model_label else None,
        )
        for name in sorted(PRESETS)
        for kind in ("Deployment", "StatefulSet", "Rollout", "SomethingElse")
    ]
    promtool_check(tmp_path, [query for r in rendered for query in (r.value, r.freshness) if query is not None])


def test_every_servers_signals_are_valid_promql_in_one_query(tmp_path: pathlib.Path) -> None:
    """A predictive cycle reads its server's signals in one query (a union of instant vectors)."""
    spec = parse_scaling_policy(yaml.safe_load((REPO / "examples" / "backtest-policy.yaml").read_text())["spec"])
    assert spec.forecast is not None
    unions = [
        union_query(
            predictive_queries("prod", spec, replace(spec.forecast, server=server, capacity=capacity)).signals()
        )
        for server in SERVERS
        for capacity in [replace(spec.forecast.capacity, unit=unit) for unit in SERVERS[server].load]
    ]
    promtool_check(tmp_path, unions)


@pytest.mark.parametrize(
    ("kind", "pod", "matches"),
    [
        ("Deployment", "vllm-7d4b9c6f5d-x2k9q", True),
        ("Deployment", "vllm-canary-7d4b9c6f5d-x2k9q", False),
        ("Deployment", "vllm-0", False),
        ("StatefulSet", "vllm-3", True),
        ("StatefulSet", "vllm-canary-3", False),
    ],
)
def test_default_selection_matches_only_the_workloads_pods(kind: str, pod: str, matches: bool) -> None:
    query = render_preset("vllm-requests-waiting", namespace="prod", kind=kind, name="vllm").value
    pattern = re.search(r'pod=~"([^"]+)"', query)
    assert pattern is not None
    # PromQL regex matchers are fully anchored.
    assert bool(re.fullmatch(pattern.group(1), pod)) is matches


def test_vllm_presets_match_colon_and_underscore_spellings() -> None:
    query = render_preset("vllm-kv-cache-usage", namespace="prod", kind="Deployment", name="vllm").value
    names = re.findall(r'__name__=~"([^"]+)"', query)
    assert names, query
    assert any(re.fullmatch(n, "vllm:kv_cache_usage_perc") for n in names)
    assert any(re.fullmatch(n, "vllm_kv_cache_usage_perc") for n in names)
    assert any(re.fullmatch(n, "vllm:gpu_cache_usage_perc") for n in names), "deprecated name as fallback"


def test_label_selector_and_model_name_shape_the_selection() -> None:
    query = render_preset(
        "vllm-requests-running",
        namespace="prod",
        kind="Deployment",
        name="vllm",
        model_name='we"ird',
        label_selector='app="vllm",namespace="prod"',
    ).value
    assert 'app="vllm",namespace="prod",model_name="we\\"ird"' in query
    assert "pod=~" not in query


def test_istio_preset_selects_by_destination_workload() -> None:
    query = render_preset("istio-request-rate", namespace="prod", kind="Deployment", name="vllm").value
    assert 'destination_workload="vllm"' in query and 'destination_workload_namespace="prod"' in query


def test_freshness_reads_every_series_a_preset_may_use() -> None:
    query = render_preset("vllm-kv-cache-usage", namespace="prod", kind="Deployment", name="vllm").freshness
    assert query is not None
    assert query.startswith("time() - max(")
    assert "kv_cache_usage_perc" in query and "gpu_cache_usage_perc" in query


def test_the_crd_names_what_the_server_table_has() -> None:
    """Adding a server is one table entry plus its names in the CRD's enums: this says which are missing."""
    crd = yaml.safe_load((REPO / "crds" / "scalingpolicies.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    forecast = spec["forecast"]["properties"]
    assert sorted(spec["metrics"]["items"]["properties"]["preset"]["enum"]) == sorted(PRESETS)
    # A load is a rate: every server's load presets, and the mesh's request rate.
    loads = {preset for server in SERVERS.values() for preset in server.load.values()} | {"istio-request-rate"}
    assert sorted(forecast["load"]["properties"]["preset"]["enum"]) == sorted(loads)
    assert forecast["server"]["enum"] == list(SERVERS)
    assert forecast["capacity"]["properties"]["unit"]["enum"] == list(CAPACITY_UNITS)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_every_server_names_its_own_presets_for_load_and_capacity_signals(server: str) -> None:
    profile = SERVERS[server]  # type: ignore[index]
    signals = (profile.tpot, profile.running, profile.generated, profile.prefill_busy)
    named = [*profile.load.values(), *profile.prefilled.values(), profile.latency, profile.queue]
    named += [name for name in signals if name is not None]
    assert all(name in profile.presets for name in named), named


@pytest.mark.parametrize(
    "labels",
    [
        'namespace="prod",pod="vllm-7d4b9c6f5d-x2k9q",gpu="0"',
        # DCGM's exporter scraped with its own labels kept: the workload's pod is exported_pod.
        'namespace="gpu-operator",pod="dcgm-exporter-abcde",exported_namespace="prod",exported_pod="vllm-7d4b9c6f5d-x2k9q"',
    ],
    ids=["pod", "exported_pod"],
)
def test_gpu_utilization_is_found_whether_the_scrape_kept_pod_or_renamed_it(
    tmp_path: pathlib.Path, labels: str
) -> None:
    """Prometheus' own evaluator (``promtool test rules``) runs the preset over series of either shape."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; `make test` installs it"
    query = render_preset("dcgm-gpu-utilization", namespace="prod", kind="Deployment", name="vllm").value
    other_workload = labels.replace("vllm-7d4b9c6f5d", "vllm-canary-6c5b8d7f4e")
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump({"groups": []}))
    test = {
        "rule_files": ["empty.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"DCGM_FI_DEV_GPU_UTIL{{{labels}}}", "values": "70x3"},
                    {"series": f"DCGM_FI_DEV_GPU_UTIL{{{other_workload}}}", "values": "20x3"},
                ],
                "promql_expr_test": [
                    {"expr": query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 70}]}
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("errors_per_minute", "failing"),
    [
        ((30, 0, 0, 0), 1),  # one pod answers half of its requests with 5xx: it fails on its own
        ((30, 30, 30, 30), 0),  # the whole workload fails alike: no pod stands out
        ((2, 0, 0, 0), 0),  # 3 % of one pod's requests: below the error limit
        ((0, 0, 0, 0), 0),  # no 5xx series at all
    ],
)
def test_failing_pods_are_counted_by_prometheus_itself(
    tmp_path: pathlib.Path, errors_per_minute: tuple[int, ...], failing: int
) -> None:
    """The failing-replica signal of the traffic policies, run by ``promtool test rules`` over per-pod series."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; `make test` installs it"
    query = backend_queries(
        namespace="prod", kind="Deployment", name="vllm", model_name=None, window="1m", interval="5s"
    )
    workload = 'reporter="destination",destination_workload="vllm",destination_workload_namespace="prod"'
    series = []
    for index, errors in enumerate(errors_per_minute):
        pod = f'pod="vllm-7d4b9c6f5d-pod{index:02d}"'
        series.append(
            {"series": f'istio_requests_total{{{workload},{pod},response_code="200"}}', "values": f"0+{60 - errors}x10"}
        )
        if errors:
            series.append(
                {"series": f'istio_requests_total{{{workload},{pod},response_code="503"}}', "values": f"0+{errors}x10"}
            )
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump({"groups": []}))
    expected = [{"labels": "{}", "value": failing}]
    test = {
        "rule_files": ["empty.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [{"expr": query["failing_replicas"], "eval_time": "10m", "exp_samples": expected}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def evaluated_by_promtool(
    tmp_path: pathlib.Path, interval: str, series: list[dict[str, str]], tests: list[dict[str, object]]
) -> None:
    """``promtool test rules``: Prometheus' own evaluator runs each expression over ``series`` and
    compares its answer with the expected samples (an empty list: no data)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; `make test` installs it"
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump({"groups": []}))
    test = {
        "rule_files": ["empty.yaml"],
        "evaluation_interval": interval,
        "tests": [{"interval": interval, "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


Pair = tuple[float | None, float | None]


@pytest.mark.parametrize(
    ("running", "waiting", "generated", "expected"),
    [
        ((2, 2), (0, 0), (100.0, 140.0), False),  # decoding: tokens every step
        ((2, 2), (0, 0), (100.0, 100.0), True),  # sequences ran through the interval, no token: hung
        ((0, 0), (3, 9), (100.0, 100.0), True),  # hung between steps: requests pile up waiting
        ((0, 0), (0, 0), (100.0, 100.0), False),  # idle
        ((0, 1), (0, 0), (100.0, 100.0), False),  # a request arrived during the interval: not held through it
        ((1, 0), (0, 1), (100.0, 100.0), False),  # ... nor a gauge above 0 at both ends
        ((2, 2), (0, 0), (100.0, 100.5), False),  # a fraction of a step's tokens is progress (the fluid decode)
        ((2, 2), (0, 0), (900.0, 0.0), True),  # the counter reset (a restart) and nothing since: an increase of 0
        ((2, 2), (0, 0), (900.0, 30.0), False),  # reset, then 30 tokens
        ((2, 2), (None, None), (100.0, 100.0), True),  # the waiting gauge missing: the running one suffices
        ((None, 2), (0, 0), (100.0, 100.0), None),  # a gauge missing and no token: unknown
        ((None, None), (None, None), (100.0, 180.0), False),  # tokens prove progress whatever the gauges
        ((2, 2), (0, 0), (math.nan, 100.0), None),  # no counter: unknown
    ],
)
def test_a_stall_is_requests_held_through_the_interval_without_a_token(
    running: Pair, waiting: Pair, generated: Pair, expected: bool | None
) -> None:
    assert stalled(running, waiting, generated) is expected


def test_every_servers_backend_queries_are_valid_promql(tmp_path: pathlib.Path) -> None:
    """``promtool check rules`` parses every traffic signal of every server, the stall queries included."""
    queries = {
        f"{server}/{signal}": promql
        for server in sorted(SERVERS)
        for signal, promql in backend_queries(
            namespace="prod", kind="Deployment", name="vllm", model_name=None, window="1m", interval="5s", server=server
        ).items()
    }
    assert {q.split("/")[0] for q in queries if q.endswith("/stalled_replicas")} == {"TGI", "vLLM"}
    promtool_check(tmp_path, list(queries.values()))


#: A pod serving normally, scraped every second: two sequences running, none waiting, 40 tokens a
#: second, and no 5xx among its requests.
SERVING = ("2x400", "0x400", "0+40x400", 0)


@pytest.mark.parametrize(
    ("pods", "stalled", "failing"),
    [
        ((SERVING,) * 4, 0, 0),
        ((("2x400", "0x400", "9000x400", 0), SERVING, SERVING, SERVING), 1, 1),  # hung while decoding
        ((("0x400", "0+1x400", "9000x400", 0), SERVING, SERVING, SERVING), 1, 1),  # hung between steps: a queue
        ((("0x400", "0x400", "9000x400", 0), SERVING, SERVING, SERVING), 0, 0),  # idle: nothing held, nothing made
        ((("0x397 1 1 1", "0x400", "9000x400", 0), SERVING, SERVING, SERVING), 0, 0),  # a request arrived just now
        ((("2x400", "0x400", "9000x400", 0), ("2x400", "0x400", "0+40x400", 2)), 1, 2),  # one hung, one failing
        ((("2x400", "0x400", "9000x400", 2), SERVING, SERVING, SERVING), 1, 1),  # hung and failing: counted once
        ((None,) * 4, None, 0),  # no engine series: a stall is unknown, not absent
    ],
)
def test_stalled_pods_are_counted_by_prometheus_itself(
    tmp_path: pathlib.Path, pods: tuple[tuple[str, str, str, int] | None, ...], stalled: int | None, failing: int
) -> None:
    """The stall signal of the traffic policies over per-pod vLLM and Istio series, at a 5 s interval:
    a pod holding requests (running or waiting) through the interval and its token counter flat, and
    the failing pods (an outlier 5xx share, or stalled) counted once each."""
    query = backend_queries(
        namespace="prod", kind="Deployment", name="vllm", model_name=None, window="1m", interval="5s"
    )
    workload = 'reporter="destination",destination_workload="vllm",destination_workload_namespace="prod"'
    series = []
    for index, engine in enumerate(pods):
        pod = f'pod="vllm-7d4b9c6f5d-pod{index:02d}"'
        errors = engine[3] if engine else 0
        series.append({"series": f'istio_requests_total{{{workload},{pod},response_code="200"}}', "values": "0+4x400"})
        if errors:
            series.append(
                {"series": f'istio_requests_total{{{workload},{pod},response_code="503"}}', "values": f"0+{errors}x400"}
            )
        if engine:
            running, waiting, generated, _ = engine
            labels = f'namespace="prod",{pod}'
            series.append({"series": f"vllm:num_requests_running{{{labels}}}", "values": running})
            series.append({"series": f"vllm:num_requests_waiting{{{labels}}}", "values": waiting})
            series.append({"series": f"vllm:generation_tokens_total{{{labels}}}", "values": generated})
    expected_stalled = [] if stalled is None else [{"labels": "{}", "value": stalled}]
    evaluated_by_promtool(
        tmp_path,
        "1s",
        series,
        [
            {"expr": query["stalled_replicas"], "eval_time": "400s", "exp_samples": expected_stalled},
            {
                "expr": query["failing_replicas"],
                "eval_time": "400s",
                "exp_samples": [{"labels": "{}", "value": failing}],
            },
        ],
    )
