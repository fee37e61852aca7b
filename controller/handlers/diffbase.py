"""Kopf's "last handled configuration" of a policy, built without copying the policy's status.

Kopf compares a policy's *essence* (its spec, labels and annotations) with the one it last
handled, to fire the ``spec-changed`` handler (:func:`controller.handlers.daemons.register_policy_kind`).
It builds that essence at every watch event, and every cycle's status patch is one: it
deep-copies the whole body, status included, and only then deletes the status. A predictive
policy's status (the forecast in force, the capacity state, the last decision) is most of the
body, so that copy was about a sixth of the event loop's CPU at 200 policies (cProfile, see
docs/predictive-scaling.md). :class:`SpecDiffBaseStorage` hands Kopf the body without its status:
the essence is the same, since Kopf drops the status anyway and no handler watches a status field.

Must not change what the essence holds, nor where it is stored (the annotation keeps its name).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import kopf


class SpecDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's annotation storage of the essence, built from the body minus ``status``."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        fields = list(extra_fields or ())
        if any(_in_status(field) for field in fields):  # a handler on a status field needs the status
            return super().build(body=body, extra_fields=fields)
        without_status = kopf.Body(cast(kopf.RawBody, {key: value for key, value in body.items() if key != "status"}))
        return super().build(body=without_status, extra_fields=fields)


def _in_status(field: kopf.FieldSpec) -> bool:
    path = field.split(".") if isinstance(field, str) else list(field or ())
    return bool(path) and path[0] == "status"
