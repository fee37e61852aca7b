"""Other writers of traffic objects: canary tools that own the weights and policies they manage.

Flagger and Argo Rollouts rewrite VirtualServices, DestinationRules and HTTPRoutes on every step
of a rollout. Writing the same fields would start a tug of war that neither side can win, and
that moves real traffic back and forth; so an object either of them manages is refused (a
``Conflict`` condition), never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.errors import TargetError

# API groups of the tools' own objects (owner references) and the domains of their labels/annotations.
FOREIGN_GROUPS = ("flagger.app", "argoproj.io")
FOREIGN_MANAGERS = ("flagger", "argo-rollouts")


class ForeignOwnerError(TargetError):
    """The object is managed by another controller; infercast must not write it."""

    def __init__(self, message: str) -> None:
        super().__init__("ManagedByAnotherController", message)


def _foreign_domain(key: str) -> bool:
    domain = key.partition("/")[0] if "/" in key else ""
    return any(domain == group or domain.endswith("." + group) for group in FOREIGN_GROUPS)


def foreign_manager(obj: Mapping[str, Any]) -> str | None:
    """Why ``obj`` belongs to Flagger or Argo Rollouts, or ``None`` when it does not."""
    meta = obj.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        group = str(owner.get("apiVersion", "")).rpartition("/")[0]
        if group in FOREIGN_GROUPS:
            return f"owned by {owner.get('kind')} {owner.get('name')} ({owner.get('apiVersion')})"
    for where in ("labels", "annotations"):
        for key, value in (meta.get(where) or {}).items():
            if _foreign_domain(str(key)):
                return f"carries the {where[:-1]} {key}"
            if key == "app.kubernetes.io/managed-by" and str(value).lower() in FOREIGN_MANAGERS:
                return f"is managed by {value}"
    return None


def refuse_foreign(obj: Mapping[str, Any], described: str) -> None:
    why = foreign_manager(obj)
    if why:
        raise ForeignOwnerError(f"{described} {why}: another controller writes it, infercast will not")
