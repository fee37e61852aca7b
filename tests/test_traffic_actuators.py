"""The Istio and Gateway API actuators against the dev API server, with the upstream CRDs registered.

Every object written is checked twice against the upstream v1 schema: by the API server, which
validates custom resources against their CRD (a violation is a 422), and here with jsonschema.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from controller.actuators.gateway import HTTPRouteActuator
from controller.actuators.istio import DestinationRuleActuator, VirtualServiceActuator, parse_duration_s
from controller.actuators.objects import TrafficObject
from controller.actuators.ownership import ForeignOwnerError, foreign_manager
from controller.actuators.patching import patch_ops
from controller.clients.kube import Kube, KubeError, load_configuration
from controller.clients.refs import BackendRef, TargetRef
from controller.errors import TargetError
from policies import BreakerSettings, ConnectionPool, OutlierDetection
from tests.harness.kube import custom_object, raw_request
from tests.harness.traffic import (
    DESTINATION_RULES,
    HTTP_ROUTES,
    VIRTUAL_SERVICES,
    destination_rule,
    http_route,
    register_upstream_crds,
    schema_errors,
    virtual_service,
)

pytestmark = pytest.mark.integration

ISTIO = "networking.istio.io/v1"
GATEWAY = "gateway.networking.k8s.io/v1"
WORKLOAD = TargetRef("apps/v1", "Deployment", "vllm")
TIGHT = BreakerSettings(OutlierDetection(2, 3, 5, 120, 50, 40), ConnectionPool(80, 20, 0))


@pytest.fixture(scope="module")
def upstream_crds(kube: client.ApiClient) -> None:
    register_upstream_crds(kube)


@pytest.fixture
def custom(kube: client.ApiClient, upstream_crds: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


@pytest.fixture
async def adapter(kubeconfig: pathlib.Path) -> AsyncIterator[Kube]:
    async with Kube(load_configuration(str(kubeconfig))) as kube:
        yield kube


def create(custom: client.CustomObjectsApi, namespace: str, obj: dict[str, Any]) -> None:
    group, version = obj["apiVersion"].split("/")
    plural = {"DestinationRule": "destinationrules", "VirtualService": "virtualservices", "HTTPRoute": "httproutes"}
    custom.create_namespaced_custom_object(group, version, namespace, plural[obj["kind"]], obj)


def read(custom: client.CustomObjectsApi, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    group, version = obj["apiVersion"].split("/")
    plural = {"DestinationRule": "destinationrules", "VirtualService": "virtualservices", "HTTPRoute": "httproutes"}
    return custom_object(custom, group, version, namespace, plural[obj["kind"]], obj["metadata"]["name"])


def test_destination_rule_gets_owned_fields_only_and_stays_valid(
    custom: client.CustomObjectsApi, adapter: Kube, namespace: str
) -> None:
    rule = destination_rule("vllm", "vllm.svc", ["h100", "l4"], trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    rule["spec"]["subsets"][0]["trafficPolicy"] = {"outlierDetection": {"consecutive5xxErrors": 7}}
    create(custom, namespace, rule)
    actuator = DestinationRuleActuator(
        TrafficObject(adapter, namespace, TargetRef(ISTIO, "DestinationRule", "vllm")),
        {"h100": "h100", "l4": "l4", "a100": "a100"},
    )

    async def run() -> tuple[bool, bool, Any]:
        observed = await actuator.observe()
        assert observed.live.missing == ("a100",)
        assert observed.settings["h100"] == BreakerSettings(), "a partial outlier section counts as unset"
        wrote = await actuator.apply({"h100": TIGHT, "l4": BreakerSettings(pool=ConnectionPool(8, 2, 3))}, observed)
        again = await actuator.observe()
        return wrote, await actuator.apply({"h100": TIGHT}, again), again

    wrote, rewrote, again = asyncio.run(run())
    assert (wrote, rewrote) == (True, False), "a second identical apply writes nothing"
    assert again.settings["h100"] == TIGHT
    live = read(custom, namespace, rule)
    assert live["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}, "fields we do not own are kept"
    assert live["spec"]["subsets"][0]["trafficPolicy"]["outlierDetection"]["interval"] == "5s"
    assert live["spec"]["subsets"][1]["trafficPolicy"] == {
        "connectionPool": {"http": {"http2MaxRequests": 8, "http1MaxPendingRequests": 2, "maxRetries": 3}}
    }
    assert schema_errors(DESTINATION_RULES, live) == []


def test_virtual_service_weights_and_a_concurrent_writer(
    custom: client.CustomObjectsApi, adapter: Kube, namespace: str, apiserver: str
) -> None:
    service = virtual_service("vllm", "vllm.svc", {"h100": 50, "l4": 40, "canary": 10})
    create(custom, namespace, service)
    actuator = VirtualServiceActuator(
        TrafficObject(adapter, namespace, TargetRef(ISTIO, "VirtualService", "vllm")),
        {"h100": "h100", "l4": "l4"},
        route_name="completions",
    )

    async def observe_then_race() -> Any:
        observed = await actuator.observe()
        assert (dict(observed.weights), observed.total) == ({"h100": 50.0, "l4": 40.0}, 90)
        assert await actuator.apply({"h100": 60, "l4": 30}, observed)
        # Another writer changes a weight between our read and our write: our patch must fail.
        stale = await actuator.observe()
        patch = [{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 35}]
        path = f"/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/vllm"
        assert raw_request(apiserver, "PATCH", path, patch, "application/json-patch+json")[0] == 200
        with pytest.raises(KubeError) as refused:
            await actuator.apply({"h100": 70, "l4": 20}, stale)
        return refused.value

    refused = asyncio.run(observe_then_race())
    assert refused.status == 422
    live = read(custom, namespace, service)
    assert [r["weight"] for r in live["spec"]["http"][0]["route"]] == [60, 35, 10], "the other writer's value stays"
    assert schema_errors(VIRTUAL_SERVICES, live) == []


def test_http_route_weights_on_an_inference_pool(
    custom: client.CustomObjectsApi, adapter: Kube, namespace: str
) -> None:
    pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "vllm-h100"}
    route = http_route("vllm", [pool, {"name": "vllm-l4", "port": 8000}])
    create(custom, namespace, route)
    actuator = HTTPRouteActuator(
        TrafficObject(adapter, namespace, TargetRef(GATEWAY, "HTTPRoute", "vllm")),
        {"h100": BackendRef("vllm-h100", "inference.networking.k8s.io", "InferencePool"), "l4": BackendRef("vllm-l4")},
        rule_name=None,
    )

    async def run() -> dict[str, float]:
        observed = await actuator.observe()
        assert await actuator.apply({"h100": 75, "l4": 25}, observed)
        return dict(observed.weights)

    assert asyncio.run(run()) == {"h100": 1.0, "l4": 1.0}, "an unset weight is the Gateway API default, 1"
    live = read(custom, namespace, route)
    assert [r["weight"] for r in live["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert schema_errors(HTTP_ROUTES, live) == []


@pytest.mark.parametrize(
    "metadata",
    [
        {"ownerReferences": [{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "vllm", "uid": "1"}]},
        {"ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "vllm", "uid": "1"}]},
        {"annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "vllm"}},
        {"labels": {"app.kubernetes.io/managed-by": "flagger"}},
    ],
)
def test_objects_of_canary_tools_are_refused(
    custom: client.CustomObjectsApi, adapter: Kube, namespace: str, metadata: dict[str, Any]
) -> None:
    service = virtual_service("vllm", "vllm.svc", {"h100": 100})
    service["metadata"].update(metadata)
    create(custom, namespace, service)
    actuator = VirtualServiceActuator(
        TrafficObject(adapter, namespace, TargetRef(ISTIO, "VirtualService", "vllm")),
        {"h100": "h100"},
        None,
    )
    with pytest.raises(ForeignOwnerError):
        asyncio.run(actuator.observe())


def test_a_missing_object_is_a_target_error(custom: client.CustomObjectsApi, adapter: Kube, namespace: str) -> None:
    actuator = DestinationRuleActuator(
        TrafficObject(adapter, namespace, TargetRef(ISTIO, "DestinationRule", "nope")), {"a": None}
    )
    with pytest.raises(TargetError) as missing:
        asyncio.run(actuator.observe())
    assert missing.value.reason == "TargetNotFound"


# --- offline: the patch itself --------------------------------------------------------------------


def test_patch_tests_what_it_replaces_and_guards_list_entries() -> None:
    live = {"spec": {"subsets": [{"name": "a", "trafficPolicy": {"x": 1}}]}}
    ops = patch_ops(
        live,
        {("spec", "subsets", 0, "trafficPolicy", "x"): 2, ("spec", "subsets", 0, "trafficPolicy", "p", "q"): 3},
        {("spec", "subsets", 0, "name"): "a"},
    )
    assert ops == [
        {"op": "test", "path": "/spec/subsets/0/name", "value": "a"},
        {"op": "test", "path": "/spec/subsets/0/trafficPolicy/x", "value": 1},
        {"op": "replace", "path": "/spec/subsets/0/trafficPolicy/x", "value": 2},
        {"op": "add", "path": "/spec/subsets/0/trafficPolicy/p", "value": {"q": 3}},
    ]
    assert (
        patch_ops(live, {("spec", "subsets", 0, "trafficPolicy", "x"): 1}, {("spec", "subsets", 0, "name"): "a"}) == []
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m", 60), ("1.5h", 5400), ("500ms", 0), ("10", None), (None, None)]
)
def test_istio_durations(text: str | None, seconds: int | None) -> None:
    assert parse_duration_s(text) == seconds


def test_foreign_manager_ignores_ordinary_metadata() -> None:
    assert foreign_manager({"metadata": {"labels": {"app": "vllm", "app.kubernetes.io/managed-by": "Helm"}}}) is None
