"""What the Istio and Gateway API actuators share: reading the live object and writing a guarded patch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.actuators.base import refused_when_missing, refused_when_target_missing
from controller.actuators.ownership import refuse_foreign
from controller.actuators.patching import Path, patch_ops
from controller.clients.kube import Kube, Resource
from controller.clients.refs import ObjectRef, TargetRef

JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class LiveObject:
    """A traffic object as read, with what the actuator found missing in it."""

    ref: ObjectRef
    body: dict[str, Any]
    missing: tuple[str, ...] = ()  # backends (subsets, destinations, backendRefs) not found


@dataclass
class TrafficObject:
    """One Istio or Gateway API object of the policy's namespace, addressed through discovery."""

    kube: Kube
    namespace: str
    target: TargetRef

    async def _resource(self) -> Resource:
        unknown = f"the API serves no {self.target.kind} in {self.target.api_version}: is the CRD installed?"
        with refused_when_missing("UnknownKind", unknown):
            return await self.kube.resource(self.target.api_version, self.target.kind)

    async def read(self) -> tuple[ObjectRef, dict[str, Any]]:
        """The live object; refused when missing or managed by Flagger or Argo Rollouts."""
        resource = await self._resource()
        with refused_when_target_missing(self.target, self.namespace):
            body = await self.kube.get(resource, self.namespace, self.target.name)
        refuse_foreign(body, self.target.describe())
        ref = ObjectRef(
            self.target.api_version, self.target.kind, self.namespace, self.target.name, body["metadata"].get("uid")
        )
        return ref, body

    async def write(self, live: dict[str, Any], changes: dict[Path, Any], guards: dict[Path, Any]) -> bool:
        """Patch only what differs from ``live``; whether anything was written."""
        ops = patch_ops(live, changes, guards)
        if not ops:
            return False
        resource = await self._resource()
        await self.kube.request("PATCH", resource.path(self.namespace, self.target.name), ops, content_type=JSON_PATCH)
        return True
