"""A remembered scaling history made safe to decide on: a lost record, a change by someone else, a skewed clock.

The history (:class:`~policies.scaling_types.ScalingState`) is persisted with the count it was
written with (``recorded``) and, while a write of the count is in flight, the write's intent
(:class:`PendingScale`, persisted *before* the write). By the next decision:

* **the operator's own write whose record was lost** (a crash, a lost status write, a leader that
  died between the two): the intent is still there and the target has the intended count. The
  move is added to the history at the time it was decided, exactly as if its record had been
  written, so a restarted or new leader counts it in both directions' rate limits. If the target
  still has the old count, the write never happened, and nothing is added: no phantom move.
* **a change by someone else** (a person's ``kubectl scale``, another tool): the count differs
  from both ``recorded`` and the intent. It is taken as the new current count, never reverted at
  once: a recommendation of the observed count is added, so the stabilization windows hold it. It
  is not a move of the policy's, and the rate limits are not charged with it (as the HPA: a move
  dated "now" would shift the start of every period and loosen the limit of the other direction).
* **entries dated in the future**: a replica whose clock ran ahead wrote them. Trusting such a
  date would keep the entry inside every window until that time (an entry dated next year would
  pin the count for a year), so it is moved to ``now``: it keeps counting for one full window or
  period, the cautious reading, and then ages out.

Pure: no clock (``now`` is an argument), no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from policies.scaling_types import ScalingState, Timed


@dataclass(frozen=True)
class PendingScale:
    """A write of the count decided at ``time`` (``from_`` -> ``to``), with the recommendation it came from."""

    from_: int
    to: int
    time: float
    recommended: int

    def to_dict(self) -> dict[str, float | int]:
        return {"from": self.from_, "to": self.to, "time": self.time, "recommended": self.recommended}

    @classmethod
    def from_dict(cls, data: object) -> PendingScale | None:
        """``None`` for anything malformed: a corrupted intent must degrade to "none", never crash."""
        if not isinstance(data, Mapping):
            return None
        values = [data.get(key) for key in ("from", "to", "time", "recommended")]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return None
        from_, to, time, recommended = values
        assert isinstance(time, int | float)
        return cls(int(from_), int(to), float(time), int(recommended))  # type: ignore[arg-type]  # checked above


@dataclass(frozen=True)
class SettledHistory:
    """The history to decide on, the count it now stands for, and the change by someone else (0 when none)."""

    state: ScalingState
    recorded: int | None
    changed_outside: int


def settle_history(
    state: ScalingState, *, now: float, recorded: int | None, pending: PendingScale | None, observed: int
) -> SettledHistory:
    """``state`` with a landed write of ``pending`` added, future dates moved to ``now``, and a change
    by someone else taken in (see the module docstring).

    ``recorded`` is the count the history was written with (``None`` before any history: nothing
    can have been missed); ``observed`` the target's count now.
    """
    if pending is not None and pending.to != pending.from_ and observed == pending.to:
        state = _with_move(state, pending)
        recorded = pending.to
    settled = ScalingState(
        recommendations=_not_after(state.recommendations, now),
        scale_up_events=_not_after(state.scale_up_events, now),
        scale_down_events=_not_after(state.scale_down_events, now),
    )
    change = 0 if recorded is None else observed - recorded
    if change == 0:
        return SettledHistory(settled, recorded, 0)
    taken = ScalingState(
        (*settled.recommendations, (now, observed)), settled.scale_up_events, settled.scale_down_events
    )
    return SettledHistory(taken, observed, change)


def _with_move(state: ScalingState, pending: PendingScale) -> ScalingState:
    recommendations = (*state.recommendations, (pending.time, pending.recommended))
    if pending.to > pending.from_:
        return ScalingState(
            recommendations,
            (*state.scale_up_events, (pending.time, pending.to - pending.from_)),
            state.scale_down_events,
        )
    return ScalingState(
        recommendations, state.scale_up_events, (*state.scale_down_events, (pending.time, pending.from_ - pending.to))
    )


def _not_after(entries: Timed, now: float) -> Timed:
    return tuple(sorted(((min(time, now), replicas) for time, replicas in entries), key=lambda entry: entry[0]))
