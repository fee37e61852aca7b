"""Make a remembered scaling history safe to decide on: what the record missed and what it cannot know.

The history (:class:`~policies.scaling_types.ScalingState`) is persisted with the count it was
written with (``recorded``). Two things can make it wrong by the time a decision reads it:

* **a change it did not record**: the target's count differs from ``recorded``. Either the
  operator's own write landed and its record did not (a crash, a lost status write, a leader
  that died between the two), or someone else scaled the target (a person, another tool). The
  two cannot be told apart, and both are handled as a change that just happened: a scale event
  of the difference (so the rate limits count it and a restarted or new leader never exceeds
  them) and a recommendation of the observed count (so the stabilization windows hold it and a
  manual scale is never reverted the next cycle). It is taken as the new current count.
* **entries dated in the future**: a replica whose clock ran ahead wrote them. Trusting such a
  date would keep the entry inside every window until that time (an entry dated next year would
  pin the count for a year), so it is moved to ``now``: it keeps counting for one full window
  or period, the cautious reading, and then ages out.

Pure: no clock (``now`` is an argument), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.scaling_types import ScalingState, Timed


@dataclass(frozen=True)
class SettledHistory:
    """The history to decide on, and the change of the count it had to take in (0 when none)."""

    state: ScalingState
    unrecorded_change: int


def settle_history(state: ScalingState, *, now: float, recorded: int | None, observed: int) -> SettledHistory:
    """``state`` with future dates moved to ``now`` and an unrecorded change of the count taken in.

    ``recorded`` is the count the history was written with (``None`` when no history was ever
    written: nothing can have been missed); ``observed`` the target's count now.
    """
    settled = ScalingState(
        recommendations=_not_after(state.recommendations, now),
        scale_up_events=_not_after(state.scale_up_events, now),
        scale_down_events=_not_after(state.scale_down_events, now),
    )
    change = 0 if recorded is None else observed - recorded
    if change == 0:
        return SettledHistory(settled, 0)
    up, down = settled.scale_up_events, settled.scale_down_events
    if change > 0:
        up += ((now, change),)
    else:
        down += ((now, -change),)
    return SettledHistory(ScalingState((*settled.recommendations, (now, observed)), up, down), change)


def _not_after(entries: Timed, now: float) -> Timed:
    return tuple(sorted(((min(time, now), replicas) for time, replicas in entries), key=lambda entry: entry[0]))
