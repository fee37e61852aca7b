"""The dev cluster itself: the emulator's API-server semantics (through the real ``kubernetes`` client),
CRD registration, the Prometheus class, and the process helpers."""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from devtools.apiserver import merge_patch, parse_api_path, selector_to_string, start_apiserver
from devtools.processes import start_process
from devtools.prometheus_server import Prometheus, PrometheusError
from tests.harness.exporter import Exporter
from tests.harness.kube import deployment, deployment_manifest, json_object, present, raw_request
from tests.harness.polling import wait_until

# -- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/namespaces", ("", "v1", "namespaces", None, None, None)),
        ("/api/v1/namespaces/ns1", ("", "v1", "namespaces", None, "ns1", None)),
        ("/api/v1/namespaces/ns1/status", ("", "v1", "namespaces", None, "ns1", "status")),
        ("/api/v1/namespaces/ns1/events", ("", "v1", "events", "ns1", None, None)),
        ("/apis/apps/v1/namespaces/ns1/deployments/d/scale", ("apps", "v1", "deployments", "ns1", "d", "scale")),
        ("/apis/infercast.io/v1alpha1/sps", ("infercast.io", "v1alpha1", "sps", None, None, None)),
        ("/apis/harness.infercast.io", ("harness.infercast.io", None, None, None, None, None)),
    ],
)
def test_api_paths_are_parsed_like_the_api_server_does(path: str, expected: tuple[str | None, ...]) -> None:
    parsed = parse_api_path(path)
    assert parsed is not None
    assert (parsed.group, parsed.version, parsed.plural, parsed.namespace, parsed.name, parsed.subresource) == expected


def test_non_api_paths_are_not_parsed() -> None:
    assert parse_api_path("/version") is None
    assert parse_api_path("/metrics") is None


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, ""),
        ("app=x", "app=x"),
        ({"matchLabels": {"tier": "gpu", "app": "vllm"}}, "app=vllm,tier=gpu"),
        (
            {
                "matchLabels": {"app": "vllm"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b", "a"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "gpu", "operator": "Exists"},
                ],
            },
            "app=vllm,!canary,env notin (dev),gpu,zone in (a,b)",
        ),
    ],
)
def test_label_selectors_have_the_string_form_of_scale_status(
    selector: str | dict[str, Any] | None, expected: str
) -> None:
    assert selector_to_string(selector) == expected


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}}, {"a": 1, "b": {"d": 3, "e": 4}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"a": {"b": 2}}, {"a": {"b": 2}}),
        ({"a": {"b": 2}}, {"a": 1}, {"a": 1}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_patch(target, patch) == expected


# -- the emulator through the kubernetes client --------------------------------------------------


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture
def apps(kube: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube)


@pytest.fixture
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def test_create_answers_201_with_server_assigned_metadata(apps: client.AppsV1Api, namespace: str) -> None:
    created, status, _ = apps.create_namespaced_deployment_with_http_info(namespace, deployment("llm", replicas=2))
    assert status == 201
    assert (
        present(created.metadata).uid
        and present(created.metadata).resource_version
        and present(created.metadata).creation_timestamp
    )
    assert present(created.metadata).generation == 1
    assert present(created.metadata).namespace == namespace


def test_a_second_create_of_the_same_name_is_a_conflict(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    with pytest.raises(ApiException) as error:
        apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    assert error.value.status == 409


def test_generate_name_gives_distinct_names(core: client.CoreV1Api, namespace: str) -> None:
    event = {"metadata": {"generateName": "scaled-"}, "involvedObject": {"name": "llm"}, "reason": "Scaled"}
    names = {
        present(
            present(core.create_namespaced_event(namespace, client.CoreV1Event.model_validate(event)).metadata).name
        )
        for _ in range(3)
    }
    assert len(names) == 3
    assert all(name.startswith("scaled-") and len(name) > len("scaled-") for name in names)


def test_generation_follows_spec_changes_only(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))

    after_status = apps.patch_namespaced_deployment_status("llm", namespace, {"status": {"replicas": 1}})
    after_labels = apps.patch_namespaced_deployment("llm", namespace, {"metadata": {"labels": {"x": "y"}}})
    after_spec = apps.patch_namespaced_deployment("llm", namespace, {"spec": {"replicas": 4}})

    assert [present(after_status.metadata).generation, present(after_labels.metadata).generation] == [1, 1]
    assert present(after_spec.metadata).generation == 2
    versions = [
        int(present(present(o.metadata).resource_version)) for o in (created, after_status, after_labels, after_spec)
    ]
    assert versions == sorted(set(versions))


def test_a_no_op_patch_keeps_the_resource_version(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    patched = apps.patch_namespaced_deployment("llm", namespace, {"spec": {"replicas": 1}})
    assert present(patched.metadata).resource_version == present(created.metadata).resource_version


def test_a_stale_resource_version_is_a_conflict(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    apps.patch_namespaced_deployment("llm", namespace, {"spec": {"replicas": 2}})

    stale = {"metadata": {"resourceVersion": present(created.metadata).resource_version}, "spec": {"replicas": 3}}
    with pytest.raises(ApiException) as patch_error:
        apps.patch_namespaced_deployment("llm", namespace, stale)
    created.spec.replicas = 3
    with pytest.raises(ApiException) as update_error:
        apps.replace_namespaced_deployment("llm", namespace, created)

    assert (patch_error.value.status, update_error.value.status) == (409, 409)
    assert apps.read_namespaced_deployment("llm", namespace).spec.replicas == 2


def test_a_failing_json_patch_test_is_unprocessable(core: client.CoreV1Api, namespace: str, apiserver: str) -> None:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "c"}}))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    path = f"/api/v1/namespaces/{namespace}/configmaps/c"
    status, body = raw_request(apiserver, "PATCH", path, ops, content_type="application/json-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    assert present(core.read_namespaced_config_map("c", namespace).metadata).finalizers is None


def test_status_is_written_only_through_the_status_subresource(apps: client.AppsV1Api, namespace: str) -> None:
    manifest = {**deployment_manifest("llm", replicas=1), "status": {"replicas": 9}}
    created = apps.create_namespaced_deployment(namespace, client.V1Deployment.model_validate(manifest))
    assert created.status is None or created.status.replicas is None

    apps.patch_namespaced_deployment("llm", namespace, {"status": {"replicas": 5}})
    apps.patch_namespaced_deployment_status("llm", namespace, {"status": {"replicas": 1}, "spec": {"replicas": 7}})

    got = apps.read_namespaced_deployment("llm", namespace)
    assert (present(got.spec).replicas, present(got.status).replicas) == (1, 1)


def test_scale_is_a_real_scale_object(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=2, labels={"app": "vllm"}))
    apps.patch_namespaced_deployment_status("llm", namespace, {"status": {"replicas": 2}})

    scale = apps.read_namespaced_deployment_scale("llm", namespace)

    assert (scale.api_version, scale.kind) == ("autoscaling/v1", "Scale")
    assert present(scale.metadata).name == "llm"
    scale_status = present(scale.status)
    assert (present(scale.spec).replicas, scale_status.replicas, scale_status.selector) == (2, 2, "app=vllm")


def test_scale_writes_change_the_replicas_of_the_target(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=2))

    patched = apps.patch_namespaced_deployment_scale("llm", namespace, {"spec": {"replicas": 5}})
    assert present(patched.spec).replicas == 5
    present(patched.spec).replicas = 6
    replaced = apps.replace_namespaced_deployment_scale("llm", namespace, patched)

    assert present(replaced.spec).replicas == 6
    target = apps.read_namespaced_deployment("llm", namespace)
    assert (present(target.spec).replicas, present(target.metadata).generation) == (6, 3)


def test_a_resource_without_scale_subresource_has_no_scale(
    core: client.CoreV1Api, namespace: str, apiserver: str
) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "c"}, "data": {}})
    )
    status, _ = raw_request(apiserver, "GET", f"/api/v1/namespaces/{namespace}/configmaps/c/scale")
    assert status == 404


def rollout_crd(group: str) -> client.V1CustomResourceDefinition:
    """A CRD like Argo's Rollout: status and scale subresources, a schema with defaults and bounds."""
    integer = {"type": "integer", "minimum": 0}
    spec = {
        "type": "object",
        "properties": {
            "replicas": {**integer, "default": 1},
            "strategy": {"type": "string", "enum": ["Canary", "BlueGreen"], "default": "Canary"},
        },
    }
    status = {"type": "object", "properties": {"replicas": integer, "selector": {"type": "string"}}}
    schema = {"type": "object", "properties": {"spec": spec, "status": status}}
    scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    return client.V1CustomResourceDefinition.model_validate(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"rollouts.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "shortNames": ["ro"]},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                        "subresources": {"status": {}, "scale": scale},
                    }
                ],
            },
        }
    )


ROLLOUTS_GROUP = "rollouts.test.infercast.io"


@pytest.fixture(scope="module")
def rollouts(kube: client.ApiClient) -> Iterator[client.V1CustomResourceDefinition]:
    """The Rollout CRD, registered through the API for this module's tests."""
    extensions = client.ApiextensionsV1Api(kube)
    crd = rollout_crd(ROLLOUTS_GROUP)
    created = extensions.create_custom_resource_definition(crd)
    yield created
    assert crd.metadata is not None and crd.metadata.name is not None
    extensions.delete_custom_resource_definition(crd.metadata.name)


def rollout(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{ROLLOUTS_GROUP}/v1", "kind": "Rollout", "metadata": {"name": name}, "spec": spec}


def test_a_crd_created_through_the_api_is_established_and_discoverable(
    rollouts: client.V1CustomResourceDefinition, kube: client.ApiClient
) -> None:
    assert {c.type: c.status for c in present(present(rollouts.status).conditions)} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    resources = client.CustomObjectsApi(kube).get_api_resources(ROLLOUTS_GROUP, "v1").resources
    assert {r.name for r in resources} == {"rollouts", "rollouts/status", "rollouts/scale"}


@pytest.mark.usefixtures("rollouts")
def test_custom_object_create_returns_the_object_with_schema_defaults(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    created = json_object(
        custom.create_namespaced_custom_object(ROLLOUTS_GROUP, "v1", namespace, "rollouts", rollout("r"))
    )
    assert created["metadata"]["uid"]
    assert created["spec"] == {"replicas": 1, "strategy": "Canary"}


@pytest.mark.usefixtures("rollouts")
@pytest.mark.parametrize("spec", [{"replicas": -1}, {"strategy": "Linear"}, {"replicas": "two"}])
def test_objects_violating_the_crd_schema_are_rejected(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any]
) -> None:
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(ROLLOUTS_GROUP, "v1", namespace, "rollouts", rollout("r", **spec))
    assert error.value.status == 422


@pytest.mark.usefixtures("rollouts")
def test_fields_unknown_to_the_crd_schema_are_pruned(custom: client.CustomObjectsApi, namespace: str) -> None:
    group = (ROLLOUTS_GROUP, "v1", namespace, "rollouts")
    created = json_object(custom.create_namespaced_custom_object(*group, rollout("r", replicas=2, paused=True)))
    patched = json_object(
        custom.patch_namespaced_custom_object_status(*group, "r", {"status": {"replicas": 2, "phase": "x"}})
    )
    assert created["spec"] == {"replicas": 2, "strategy": "Canary"}
    assert patched["status"] == {"replicas": 2}


@pytest.mark.usefixtures("rollouts")
def test_the_scale_subresource_of_a_crd_maps_to_its_declared_paths(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    group = (ROLLOUTS_GROUP, "v1", namespace, "rollouts")
    custom.create_namespaced_custom_object(*group, rollout("r", replicas=1))
    custom.patch_namespaced_custom_object_status(*group, "r", {"status": {"replicas": 1, "selector": "app=r"}})

    custom.patch_namespaced_custom_object_scale(*group, "r", {"spec": {"replicas": 3}})

    scale = json_object(custom.get_namespaced_custom_object_scale(*group, "r"))
    assert (scale["spec"]["replicas"], scale["status"]["replicas"], scale["status"]["selector"]) == (3, 1, "app=r")
    assert json_object(custom.get_namespaced_custom_object(*group, "r"))["spec"]["replicas"] == 3


@pytest.mark.usefixtures("rollouts")
@pytest.mark.parametrize("write", ["spec", "status"])
def test_an_update_is_judged_by_the_schema(custom: client.CustomObjectsApi, namespace: str, write: str) -> None:
    group = (ROLLOUTS_GROUP, "v1", namespace, "rollouts")
    custom.create_namespaced_custom_object(*group, rollout("r", replicas=1))
    patch = custom.patch_namespaced_custom_object if write == "spec" else custom.patch_namespaced_custom_object_status
    with pytest.raises(ApiException) as error:
        patch(*group, "r", {write: {"replicas": -1}})
    assert error.value.status == 422


def test_an_update_is_not_refused_for_what_it_leaves_unchanged(
    kube: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    """Validation ratcheting (Kubernetes 1.33): a stored spec that a newer schema refuses does not
    block status writes, but a spec write is judged by the newer schema."""
    extensions = client.ApiextensionsV1Api(kube)
    crd = rollout_crd("ratchet.test.infercast.io")
    extensions.create_custom_resource_definition(crd)
    assert crd.metadata is not None and crd.metadata.name is not None
    try:
        group = ("ratchet.test.infercast.io", "v1", namespace, "rollouts")
        custom.create_namespaced_custom_object(*group, {**rollout("r", replicas=0), "apiVersion": f"{group[0]}/v1"})
        minimum = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/replicas/minimum"
        extensions.patch_custom_resource_definition(crd.metadata.name, [{"op": "replace", "path": minimum, "value": 1}])

        patched = json_object(custom.patch_namespaced_custom_object_status(*group, "r", {"status": {"replicas": 0}}))
        with pytest.raises(ApiException) as error:
            custom.patch_namespaced_custom_object(*group, "r", {"spec": {"strategy": "BlueGreen"}})
    finally:
        extensions.delete_custom_resource_definition(crd.metadata.name)
    assert (patched["spec"]["replicas"], patched["status"]) == (0, {"replicas": 0})
    assert error.value.status == 422


def test_deleting_a_crd_stops_serving_its_resource(
    kube: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    extensions = client.ApiextensionsV1Api(kube)
    crd = rollout_crd("deleted.test.infercast.io")
    extensions.create_custom_resource_definition(crd)
    custom.list_namespaced_custom_object("deleted.test.infercast.io", "v1", namespace, "rollouts")

    assert crd.metadata is not None and crd.metadata.name is not None
    extensions.delete_custom_resource_definition(crd.metadata.name)

    with pytest.raises(ApiException) as error:
        custom.list_namespaced_custom_object("deleted.test.infercast.io", "v1", namespace, "rollouts")
    assert error.value.status == 404


def test_the_preloaded_crds_are_served(custom: client.CustomObjectsApi, namespace: str) -> None:
    listing = json_object(
        custom.list_namespaced_custom_object("infercast.io", "v1alpha1", namespace, "scalingpolicies")
    )
    assert listing["items"] == []


def test_finalizers_hold_the_deletion_until_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "c", "finalizers": ["test/hold"]}})
    )

    core.delete_namespaced_config_map("c", namespace)
    held = core.read_namespaced_config_map("c", namespace)
    assert present(held.metadata).deletion_timestamp is not None

    core.patch_namespaced_config_map("c", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("c", namespace)
    assert error.value.status == 404


def test_lists_filter_by_label_selector(core: client.CoreV1Api, namespace: str) -> None:
    for name, tier in (("a", "gpu"), ("b", "cpu"), ("c", "gpu")):
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap.model_validate({"metadata": {"name": name, "labels": {"tier": tier}}})
        )
    names = [
        present(present(cm.metadata).name)
        for cm in core.list_namespaced_config_map(namespace, label_selector="tier=gpu").items
    ]
    assert sorted(names) == ["a", "c"]


def test_a_watch_resumes_from_a_resource_version_and_honours_its_timeout(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "before"}}))
    since = present(core.list_namespaced_config_map(namespace).metadata).resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "after"}}))
    core.patch_namespaced_config_map("after", namespace, {"data": {"k": "v"}})

    started = time.monotonic()
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=since, timeout_seconds=1)
    events = [(event["type"], event["object"].metadata.name) for event in stream]

    assert events == [("ADDED", "after"), ("MODIFIED", "after")]
    assert time.monotonic() - started < 5


def test_server_side_apply_is_refused_rather_than_ignored(
    apps: client.AppsV1Api, namespace: str, apiserver: str
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/llm"
    status, _ = raw_request(apiserver, "PATCH", path, {"spec": {"replicas": 3}}, "application/apply-patch+yaml")
    assert status == 415
    assert apps.read_namespaced_deployment("llm", namespace).spec.replicas == 1


def test_the_api_server_process_exits_cleanly_on_sigterm(tmp_path: pathlib.Path) -> None:
    server = start_apiserver(tmp_path)
    with urllib.request.urlopen(f"{server.url}/version", timeout=5) as response:
        assert response.status == 200
    assert server.stop() == 0


# -- Prometheus ----------------------------------------------------------------------------------


def test_prometheus_scrapes_colon_named_metrics_of_the_exporter(
    prometheus: Prometheus, exporter: Exporter, namespace: str
) -> None:
    # The session's exporter is shared: vLLM metrics always carry the labels a vLLM pod has.
    pod = "vllm-7d4b9c6f5d-abcde"
    exporter.set_gauge("vllm:num_requests_waiting", 7, namespace=namespace, pod=pod, model_name="llama")
    exporter.inc_counter("vllm:prompt_tokens_total", 100, namespace=namespace, pod=pod, model_name="llama")

    series = prometheus.wait_for_series(f'vllm:num_requests_waiting{{namespace="{namespace}"}}', timeout=10)

    assert [s["value"][1] for s in series] == ["7"]
    assert series[0]["metric"]["job"] == "exporter"
    assert series[0]["metric"]["instance"] == exporter.address
    counter = prometheus.wait_for_series(f'vllm:prompt_tokens_total{{namespace="{namespace}"}}', timeout=10)
    assert counter[0]["value"][1] == "100"


def test_prometheus_sees_new_values_within_a_few_scrapes(
    prometheus: Prometheus, exporter: Exporter, namespace: str
) -> None:
    selector = f'tgi_queue_size{{namespace="{namespace}"}}'
    exporter.set_gauge("tgi_queue_size", 1, namespace=namespace)
    prometheus.wait_for_series(f"{selector} == 1", timeout=10)

    exporter.set_gauge("tgi_queue_size", 12, namespace=namespace)

    wait_until(lambda: prometheus.query(f"{selector} == 12"), timeout=5, interval=0.2)


def test_the_exporter_serves_plain_text_even_when_openmetrics_is_asked_for(exporter: Exporter, namespace: str) -> None:
    exporter.set_gauge("vllm:num_requests_running", 3, namespace=namespace, pod="vllm-7d4b9c6f5d-abcde", model_name="m")
    request = urllib.request.Request(exporter.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        body = response.read().decode()
    assert content_type.startswith("text/plain")
    assert (
        f'vllm:num_requests_running{{model_name="m",namespace="{namespace}",pod="vllm-7d4b9c6f5d-abcde"}} 3.0' in body
    )


def test_an_unavailable_exporter_shows_as_down(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set_available(False)
    try:
        wait_until(lambda: prometheus.query('up{job="exporter"} == 0'), timeout=5, interval=0.2)
    finally:
        exporter.set_available(True)
    wait_until(lambda: prometheus.query('up{job="exporter"} == 1'), timeout=5, interval=0.2)


def test_a_rejected_query_raises(prometheus: Prometheus) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum(")


def openmetrics_history(name: str, labels: dict[str, str], values: list[float], end: float, step: int) -> str:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    start = int(end) - step * len(values)
    lines = [f"# TYPE {name} gauge"]
    lines += [f"{name}{{{label_text}}} {value} {start + i * step}" for i, value in enumerate(values)]
    return "\n".join([*lines, "# EOF"])


def test_backfilled_history_is_queryable_before_and_after_a_start(tmp_path: pathlib.Path) -> None:
    address = "127.0.0.1:1"  # never scraped successfully: only history exists
    labels = Prometheus.instance_labels("fleet", address)
    now = time.time()
    server = Prometheus({"fleet": [address]}, workdir=tmp_path / "prometheus")
    server.backfill(openmetrics_history("load", labels, [1.0, 2.0, 3.0, 4.0], end=now - 3600, step=60))
    with server:
        result = server.query_range(
            f'load{{job="fleet",instance="{address}"}}', start=now - 7200, end=now - 3600, step=60
        )
        assert [float(v) for _, v in result[0]["values"]][:4] == [1.0, 2.0, 3.0, 4.0]

        port = server.port
        server.backfill(openmetrics_history("load2", labels, [5.0, 6.0], end=now - 600, step=60))
        assert server.port == port and server.running()
        assert server.query(f"count_over_time(load2[1h] @ {now - 600:.0f})")[0]["value"][1] == "2"


def test_a_stopped_prometheus_leaves_no_process_and_no_temp_dir() -> None:
    server = Prometheus({}).start()
    url, workdir = server.url, server.workdir
    server.stop()
    assert not server.running()
    assert not workdir.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/-/ready", timeout=1)


# -- processes -----------------------------------------------------------------------------------


def test_stop_reaches_grandchildren(tmp_path: pathlib.Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    process = start_process(["sh", "-c", script], log_path=tmp_path / "sh.log")
    grandchild = int(wait_until(lambda: pid_file.read_text().strip() if pid_file.exists() else None, timeout=5))

    process.stop(timeout=2)

    wait_until(lambda: not pathlib.Path(f"/proc/{grandchild}").exists() or _is_zombie(grandchild), timeout=5)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: pathlib.Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);print('ready', flush=True); time.sleep(60)"
    )
    process = start_process([sys.executable, "-c", code], log_path=tmp_path / "stubborn.log")
    wait_until(lambda: "ready" in process.log_text(), timeout=5)

    assert process.stop(timeout=0.3) == -signal.SIGKILL


def _is_zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_children_get_the_parent_death_signal(tmp_path: pathlib.Path) -> None:
    # The safety net for a parent killed with SIGKILL (no cleanup runs): the kernel kills the child.
    code = (
        "import sys; sys.path.insert(0, {root!r});"
        "from devtools.processes import start_process; import pathlib, time;"
        "p = start_process(['sleep', '60'], log_path=pathlib.Path({log!r}));"
        "print(p.pid, flush=True); time.sleep(60)"
    ).format(root=str(pathlib.Path(__file__).resolve().parent.parent), log=str(tmp_path / "sleep.log"))
    parent = start_process([sys.executable, "-c", code], log_path=tmp_path / "parent.log")
    child = int(wait_until(lambda: parent.log_text().strip(), timeout=10))

    os.kill(parent.pid, signal.SIGKILL)
    parent.popen.wait(5)

    wait_until(lambda: not pathlib.Path(f"/proc/{child}").exists() or _is_zombie(child), timeout=5)


def test_exporter_rejects_a_metric_reused_with_other_labels() -> None:
    exporter = Exporter()
    try:
        exporter.set_gauge("g", 1, namespace="a")
        with pytest.raises(ValueError, match="labels"):
            exporter.set_gauge("g", 1, namespace="a", pod="p")
    finally:
        exporter.stop()
