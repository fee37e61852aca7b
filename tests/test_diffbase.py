"""The essence Kopf keeps of a policy is the same whether or not it is built with the status."""

from __future__ import annotations

from typing import Any, cast

import kopf

from controller.handlers.diffbase import SpecDiffBaseStorage

POLICY: dict[str, Any] = {
    "apiVersion": "infercast.io/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {
        "name": "vllm",
        "namespace": "ns",
        "uid": "u-1",
        "generation": 3,
        "labels": {"app": "vllm"},
        "annotations": {
            "note": "kept",
            "infercast.io/last-handled-configuration": '{"spec":{"maxReplicas":4}}\n',
        },
    },
    "spec": {"maxReplicas": 8, "forecast": {"model": "Auto"}},
    "status": {"desiredReplicas": 3, "forecast": {"last": {"upper": [1.0, 2.0]}}},
}


def essences(extra_fields: list[kopf.FieldSpec]) -> tuple[kopf.BodyEssence, kopf.BodyEssence]:
    body = kopf.Body(cast(kopf.RawBody, POLICY))
    kopf_own = kopf.AnnotationsDiffBaseStorage(prefix="infercast.io", key="last-handled-configuration")
    ours = SpecDiffBaseStorage(prefix="infercast.io", key="last-handled-configuration")
    return ours.build(body=body, extra_fields=extra_fields), kopf_own.build(body=body, extra_fields=extra_fields)


def test_the_essence_is_kopfs_without_copying_the_status() -> None:
    ours, kopf_own = essences([("spec",)])
    assert ours == kopf_own
    assert ours == {"spec": POLICY["spec"], "metadata": {"labels": {"app": "vllm"}, "annotations": {"note": "kept"}}}


def test_a_handler_on_a_status_field_still_sees_it() -> None:
    ours, kopf_own = essences([("status", "desiredReplicas"), "spec"])
    assert ours == kopf_own
    assert ours["status"] == {"desiredReplicas": 3}
