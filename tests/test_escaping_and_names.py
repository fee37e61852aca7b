"""Two "Also" items of issue 12, against the real servers: a model name reaches PromQL escaped, an Event name fits.

* A traffic backend's ``modelName`` goes into the PromQL of its health signals: a name with a quote
  and a backslash selects exactly that model's series in a real Prometheus (and no other), instead
  of closing the matcher and appending PromQL of the author's choosing.
* An Event's name is the object's name plus a suffix; for a policy whose name is 253 characters
  (the longest the API server takes) it must still be a valid name. Before, it was 270 characters,
  and the API server refused every Event about that policy.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from kubernetes import client

from controller.clients.kube import MAX_NAME_LENGTH, Kube, load_configuration
from controller.clients.refs import ObjectRef
from controller.clients.servers import backend_queries
from devtools.prometheus_server import Prometheus
from tests.harness.exporter import Exporter
from tests.harness.kube import events_for, present

pytestmark = pytest.mark.integration

KV_CACHE = "vllm:kv_cache_usage_perc"


def test_a_model_name_with_a_quote_selects_only_its_own_series(
    namespace: str, exporter: Exporter, prometheus: Prometheus
) -> None:
    tricky = 'llama"} or vector(1) or {x="\\'
    pod = "vllm-7d4b9c6f5d-pod00"
    exporter.set_gauge(KV_CACHE, 0.25, namespace=namespace, pod=pod, model_name=tricky)
    exporter.set_gauge(KV_CACHE, 0.75, namespace=namespace, pod=pod, model_name="llama")
    query = backend_queries(
        namespace=namespace, kind="Deployment", name="vllm", model_name=tricky, window="1m", interval="5s"
    )["saturation"]
    (series,) = prometheus.wait_for_series(query, timeout=20)
    assert float(series["value"][1]) == 0.25


def test_an_event_about_an_object_with_the_longest_name_is_accepted(
    namespace: str, kubeconfig: pathlib.Path, kube: client.ApiClient
) -> None:
    name = "p" * MAX_NAME_LENGTH
    about = ObjectRef("infercast.io/v1alpha1", "ScalingPolicy", namespace, name, None)

    async def post() -> None:
        async with Kube(load_configuration(str(kubeconfig))) as api:
            await api.post_event(
                about, type_="Normal", reason="Test", message="a long name", now_iso="2026-01-01T00:00:00Z"
            )

    asyncio.run(post())
    (event,) = events_for(client.CoreV1Api(kube), namespace, name)
    assert len(present(present(event.metadata).name)) <= MAX_NAME_LENGTH
