"""Replica counts, written through the target's ``scale`` subresource and nothing else.

Going through ``/scale`` (as the HPA does) rather than patching ``spec.replicas`` makes any
workload kind work that declares the subresource, and needs RBAC on ``<plural>/scale`` only.

Every write is conditional on the ``resourceVersion`` observed: a count changed by someone else
since the observation (a person's ``kubectl scale``, another tool) makes the API server refuse
the write with 409 instead of letting it overwrite that change. The caller observes again and
decides anew.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.actuators.base import refused_when_missing, refused_when_target_missing
from controller.clients.kube import Kube, Resource
from controller.clients.refs import ObjectRef, TargetRef
from controller.errors import TargetError


@dataclass(frozen=True)
class ScaleObservation:
    target: ObjectRef
    spec_replicas: int
    ready_replicas: int
    selector: str
    resource_version: str = ""
    """Of the scale as read: the precondition of the write; empty writes unconditionally."""


@dataclass
class ScaleActuator:
    kube: Kube
    namespace: str
    target: TargetRef

    async def _resource(self) -> Resource:
        with refused_when_missing("UnknownKind", f"{self.target.api_version} has no kind {self.target.kind}"):
            resource = await self.kube.resource(self.target.api_version, self.target.kind)
        if "scale" not in resource.subresources:
            raise TargetError("NoScaleSubresource", f"{self.target.kind} ({resource.plural}) has no scale subresource")
        return resource

    async def observe(self) -> ScaleObservation:
        resource = await self._resource()
        with refused_when_target_missing(self.target, self.namespace):
            scale = await self.kube.get(resource, self.namespace, self.target.name, "scale")
            workload = await self.kube.get(resource, self.namespace, self.target.name)
        status = workload.get("status") or {}
        meta = workload.get("metadata") or {}
        return ScaleObservation(
            target=ObjectRef(
                api_version=self.target.api_version,
                kind=self.target.kind,
                namespace=self.namespace,
                name=self.target.name,
                uid=meta.get("uid"),
            ),
            spec_replicas=int((scale.get("spec") or {}).get("replicas") or 0),
            # Workloads omit readyReplicas when it is 0; a workload without the field is treated the
            # same way, which is the cautious reading (unready replicas count as idle on scale-up).
            ready_replicas=int(status.get("readyReplicas") or 0),
            selector=str((scale.get("status") or {}).get("selector") or ""),
            resource_version=str((scale.get("metadata") or {}).get("resourceVersion") or ""),
        )

    async def apply(self, desired: int, observed: ScaleObservation) -> bool:
        if desired == observed.spec_replicas:
            return False
        resource = await self._resource()
        precondition = {"metadata": {"resourceVersion": observed.resource_version}} if observed.resource_version else {}
        await self.kube.merge_patch(
            resource, self.namespace, self.target.name, {**precondition, "spec": {"replicas": desired}}, "scale"
        )
        return True
