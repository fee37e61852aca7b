"""A real Kopf operator (tests/harness/echo_operator.py) end to end against the emulated API server."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import OperatorFactory
from tests.harness.kube import custom_object, deployment, events_for, scale_replicas
from tests.harness.polling import wait_until

pytestmark = pytest.mark.integration

ECHO_CRD = pathlib.Path(__file__).parent / "harness" / "crds" / "echoes.yaml"
ECHO_OPERATOR = "tests/harness/echo_operator.py"
GROUP, VERSION, PLURAL = "harness.infercast.io", "v1", "echoes"


@pytest.fixture(scope="module")
def echo_crd(kube: client.ApiClient) -> Iterator[None]:
    """Registered through the API, as ``kubectl apply -f`` would."""
    crd = yaml.safe_load(ECHO_CRD.read_text())
    extensions = client.ApiextensionsV1Api(kube)
    extensions.create_custom_resource_definition(crd)
    yield
    extensions.delete_custom_resource_definition(crd["metadata"]["name"])


@pytest.fixture
def apps(kube: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube)


@pytest.fixture
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def create_echo(custom: client.CustomObjectsApi, namespace: str, name: str, target: str, replicas: int) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Echo",
        "metadata": {"name": name},
        "spec": {"target": target, "replicas": replicas},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def echo_status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    echo = custom_object(custom, GROUP, VERSION, namespace, PLURAL, name)
    return dict(echo.get("status") or {})


@pytest.mark.usefixtures("echo_crd")
def test_create_patches_status_posts_event_and_scales_target(
    namespace: str,
    operator: OperatorFactory,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    kube: client.ApiClient,
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    operator.kopf(ECHO_OPERATOR, namespace)

    create_echo(custom, namespace, "echo", target="llm", replicas=3)

    wait_until(lambda: echo_status(custom, namespace, "echo").get("echoedReplicas") == 3, timeout=15)
    assert scale_replicas(apps, namespace, "llm") == 3
    events = wait_until(lambda: events_for(client.CoreV1Api(kube), namespace, "echo"), timeout=5)
    assert [(event.reason, event.message) for event in events] == [("Scaled", "scaled llm to 3")]
    assert echo_status(custom, namespace, "echo")["creations"] == 1


@pytest.mark.usefixtures("echo_crd")
def test_restarted_operator_resumes_instead_of_starting_over(
    namespace: str, operator: OperatorFactory, apps: client.AppsV1Api, custom: client.CustomObjectsApi
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    first = operator.kopf(ECHO_OPERATOR, namespace)
    create_echo(custom, namespace, "echo", target="llm", replicas=2)
    wait_until(lambda: echo_status(custom, namespace, "echo").get("echoedReplicas") == 2, timeout=15)
    assert first.stop() == 0

    # A change made while no operator runs is picked up by the next one, as an update.
    patch = {"spec": {"replicas": 5}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "echo", patch)
    operator.kopf(ECHO_OPERATOR, namespace)

    wait_until(lambda: scale_replicas(apps, namespace, "llm") == 5, timeout=15)
    wait_until(lambda: echo_status(custom, namespace, "echo").get("echoedReplicas") == 5, timeout=5)
    assert echo_status(custom, namespace, "echo")["creations"] == 1


@pytest.mark.usefixtures("echo_crd")
def test_deletion_runs_the_finalizer_handler_before_the_object_goes(
    namespace: str, operator: OperatorFactory, apps: client.AppsV1Api, custom: client.CustomObjectsApi
) -> None:
    apps.create_namespaced_deployment(namespace, deployment("llm", replicas=1))
    operator.kopf(ECHO_OPERATOR, namespace)
    create_echo(custom, namespace, "echo", target="llm", replicas=4)
    wait_until(lambda: echo_status(custom, namespace, "echo").get("echoedReplicas") == 4, timeout=15)

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "echo")

    def echo_gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "echo")
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_until(echo_gone, timeout=15)
    assert scale_replicas(apps, namespace, "llm") == 0
