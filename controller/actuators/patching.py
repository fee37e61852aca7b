"""JSON patches that write only the fields we own and fail, rather than overwrite, on a concurrent change.

Custom resources take JSON patch and merge patch, not strategic merge patch. A merge patch would
replace a whole list (a DestinationRule's subsets, a route's destinations), so any list entry is
addressed by index with a JSON patch, guarded by ``test`` operations: on the identity of the
entry (its name or subset) and on every value being replaced. If another writer reordered the
list or changed one of our fields since we read the object, the API server refuses the whole
patch (422) and the next cycle starts again from the new live object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Path = tuple[str | int, ...]


def pointer(path: Path) -> str:
    """RFC 6901 JSON pointer of ``path``."""
    return "".join("/" + str(step).replace("~", "~0").replace("/", "~1") for step in path)


def _child(node: Any, key: str | int) -> tuple[bool, Any]:
    if isinstance(node, Mapping) and isinstance(key, str) and key in node:
        return True, node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return True, node[key]
    return False, None


def _merge_into(target: dict[str, Any], path: Path, value: Any) -> None:
    node = target
    for step in path[:-1]:
        node = node.setdefault(str(step), {})
    node[str(path[-1])] = value


def patch_ops(live: Mapping[str, Any], changes: Mapping[Path, Any], guards: Mapping[Path, Any]) -> list[dict[str, Any]]:
    """The JSON patch that sets every ``changes`` path in ``live``; empty when nothing differs.

    Paths whose parents are missing are created with one ``add`` per missing subtree. ``guards``
    are values that must still hold (list entries' identities); they are tested first.
    """
    edits: list[dict[str, Any]] = []
    additions: dict[Path, dict[str, Any]] = {}
    for path, value in changes.items():
        node: Any = live
        for depth, step in enumerate(path):
            found, node = _child(node, step)
            if not found:
                ancestor, rest = path[: depth + 1], path[depth + 1 :]
                if rest:
                    _merge_into(additions.setdefault(ancestor, {}), rest, value)
                else:
                    edits.append({"op": "add", "path": pointer(path), "value": value})
                break
        else:
            if node != value:
                edits += [
                    {"op": "test", "path": pointer(path), "value": node},
                    {"op": "replace", "path": pointer(path), "value": value},
                ]
    edits += [{"op": "add", "path": pointer(path), "value": value} for path, value in additions.items()]
    if not edits:
        return []
    return [{"op": "test", "path": pointer(path), "value": value} for path, value in guards.items()] + edits
