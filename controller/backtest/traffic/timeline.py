"""How settings change during a traffic backtest: a fixed timeline, or a closed-loop controller.

A decisions timeline is the judge's ``time_s,subset,field,value`` CSV: each row sets one field
of one subset from ``time_s`` on; rows at ``time_s`` <= 0 set the initial value, rows after the
scenario's duration are ignored, rows at equal times apply in file order. A :class:`Controller`
instead decides at ``interval_s``, ``2 * interval_s``, ... up to the duration, from an
:class:`~controller.backtest.traffic.observe.Observation` of the window since its previous
decision; its updates apply at once, before anything else happens at that time. Either way the
simulator records every change it applied, and :func:`write_decisions` writes them in the
judge's format so that the judge can replay and score them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from controller.backtest.traffic.observe import Observation
from controller.backtest.traffic.settings import Change, coerce

COLUMNS = ("time_s", "subset", "field", "value")


@dataclass(frozen=True)
class SettingUpdate:
    """A controller's decision: set ``field`` of ``subset`` to ``value`` now."""

    subset: str
    field: str
    value: float


class Controller(Protocol):
    """A closed-loop policy: reads only past observations, returns setting updates."""

    @property
    def interval_s(self) -> float: ...

    def decide(self, observation: Observation) -> Sequence[SettingUpdate]: ...


@dataclass(frozen=True)
class Timeline:
    """A fixed decisions timeline (rows in file order)."""

    changes: tuple[Change, ...]
    name: str = "timeline"

    def initial(self) -> list[Change]:
        return [c for c in self.changes if c.time_s <= 0]

    def scheduled(self, duration_s: float) -> list[Change]:
        return [c for c in self.changes if 0 < c.time_s <= duration_s]


def read_decisions(path: str | Path) -> Timeline:
    """Read a ``time_s,subset,field,value`` CSV; fields and values are checked, subsets at run time."""
    path = Path(path)
    with path.open(newline="") as rows:
        reader = csv.DictReader(rows)
        if reader.fieldnames is None or set(COLUMNS) - set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns {','.join(COLUMNS)}")
        changes = tuple(
            Change(float(row["time_s"]), row["subset"], row["field"], coerce(row["field"], float(row["value"])))
            for row in reader
        )
    return Timeline(changes, name=path.name)


def write_decisions(path: str | Path, changes: Iterable[Change]) -> None:
    """Write changes as the judge's decisions CSV (integer fields as integers)."""
    with Path(path).open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for change in changes:
            writer.writerow((float(change.time_s), change.subset, change.field, change.value))
