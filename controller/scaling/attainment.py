"""SLO attainment: the share of minutes that met the SLO, and the headroom that steers it to its target.

Users state what they need as ``spec.forecast.slo.attainment``: the share of minutes whose p95
TTFT and p95 TPOT meet the SLO (0.99 by default). The controller measures every minute it runs
(:func:`minute_met`: from the servers' latency histograms in a cluster, from the simulated
requests in a backtest) and provisions ``headroom`` x the replicas its forecast and capacity ask
for. The headroom follows **adaptive conformal inference** (Gibbs & Candes, 2021) on its
logarithm, with the miss rate ``1 - target`` as the level:

    log h  <-  log h + STEP x (missed - (1 - target))

so a missed minute raises it by ``STEP x target`` and a met one lowers it by ``STEP x (1 - target)``:
at 0.99, 99 met minutes undo one miss, the rate at which misses are allowed. ACI's argument
bounds the long-run miss rate whatever the load does: the log headroom is the running sum of
those steps and stays within its bounds, so over ``T`` minutes the miss rate exceeds
``1 - target`` by at most ``(log(MAX_HEADROOM / MIN_HEADROOM) + STEP) / (STEP x T)`` (1.5 % over a
day, 0.5 % over three), provided **every miss raises it by a full step** (and raises still buy
replicas: not at ``MAX_HEADROOM`` or the replica cap). Three changes fit it to a fleet, none of
which drops a miss:

* **the headroom is never lowered while the realized attainment over the recent window is below
  the target** (a met minute then leaves it as it is): it only skips lowering steps, which
  strengthens the bound on misses;
* **dead time**: a headroom raised now serves only once the replicas it orders are ready, one
  lead time (plus an interval) later, so misses before then are what the old headroom left. They
  are **held**: the first minute judged once the dead time is over raises the headroom by a full
  step for each (and starts a new dead time). Raises stay one per dead time, no second order on
  top of one not yet delivered, while every miss still counts, as online learning with delayed
  feedback applies late feedback instead of dropping it (Joulani, Gyorgy & Szepesvari, 2013).
  The bound loosens only by the misses still held at the end, at most the ``D`` minutes of one
  dead time: ``+ STEP x D`` in its numerator. An earlier version dropped them; misses come in runs
  (a surge lasts minutes), and under a 300-s cold start 35-72 % of the misses on two 3-day traces
  never raised the headroom, which settled below the target;
* **warm-up**: the headroom scales what the forecast asks for, so minutes that no forecast-driven
  decision could have served (before the first forecast plus one dead time) are judged and shown
  but do not steer it.

Cost is what the lowering steps buy back while the target is met, so realized attainment
converges on the target from above. Misses in runs behind a long dead time cost the most: their
held raises land together.

``STEP`` = 0.1: one miss costs about 10 % more replicas, the granularity of one replica in ten.
The window over which the realized attainment is shown and checked holds ``2 / (1 - target)``
minutes (two allowed misses), at least an hour. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

#: ACI's step on the log of the headroom.
STEP = 0.1
#: The headroom stays within these bounds: half to four times what forecast and capacity ask for.
MIN_HEADROOM = 0.5
MAX_HEADROOM = 4.0
#: The default share of minutes that must meet the SLO.
DEFAULT_TARGET = 0.99
#: The shortest window of the realized attainment, in minutes.
MIN_WINDOW_MINUTES = 60
#: The percentile of TTFT and TPOT a minute is judged by.
SLO_QUANTILE = 0.95


def window_minutes(target: float) -> int:
    """Minutes of the rolling attainment: two allowed misses' worth, at least an hour."""
    return max(MIN_WINDOW_MINUTES, math.ceil(2.0 / (1.0 - target) - 1e-9))


def minute_met(ttft_p95_s: float | None, tpot_p95_s: float | None, ttft_slo_s: float, tpot_slo_s: float) -> bool | None:
    """Whether a minute met the SLO from its p95 TTFT and TPOT; ``None`` when it had neither (no request).

    A missing percentile (no first token, or no multi-token request finished) does not fail the minute.
    """
    seen = [value for value in (ttft_p95_s, tpot_p95_s) if value is not None and math.isfinite(value)]
    if not seen:
        return None
    ttft_ok = ttft_p95_s is None or not math.isfinite(ttft_p95_s) or ttft_p95_s <= ttft_slo_s
    tpot_ok = tpot_p95_s is None or not math.isfinite(tpot_p95_s) or tpot_p95_s <= tpot_slo_s
    return ttft_ok and tpot_ok


@dataclass(frozen=True)
class Attainment:
    """The target, the recent minutes' outcomes and the headroom in force.

    ``recent`` holds the last :func:`window_minutes` outcomes, oldest first (``1`` met, ``0``
    missed); ``adaptive`` is false when ``spec.forecast.quantile`` is set (the expert override):
    attainment is then measured and shown, and the headroom stays 1.
    """

    target: float = DEFAULT_TARGET
    log_headroom: float = 0.0
    recent: str = ""
    minutes: int = 0
    missed: int = 0
    last_minute_end_s: float | None = None
    last_raise_s: float | None = None
    """When missed minutes last raised the headroom (the dead time counts from it)."""
    held: int = 0
    """Misses within the dead time of the last raise, whose raises apply when it is over."""
    steer_from_s: float | None = None
    """Minutes ending from then on steer the headroom: the first forecast plus one dead time."""
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"the attainment target must be in (0, 1), got {self.target}")

    @property
    def headroom(self) -> float:
        return math.exp(self.log_headroom)

    @property
    def realized(self) -> float | None:
        """The share of the recent minutes that met the SLO; ``None`` before the first one."""
        return self.recent.count("1") / len(self.recent) if self.recent else None

    def record(self, met: bool | None, minute_end_s: float, dead_time_s: float = 0.0) -> Attainment:
        """The state after one more minute, ending at ``minute_end_s``; ``met`` is ``None`` for a
        minute without a request (it only moves the clock on). ``dead_time_s`` is how long a raise
        takes to act: the lead time plus one interval."""
        if met is None:
            return replace(self, last_minute_end_s=minute_end_s)
        recent = (self.recent + ("1" if met else "0"))[-window_minutes(self.target) :]
        log_headroom, last_raise, held = self.log_headroom, self.last_raise_s, self.held
        if self.adaptive and self.steer_from_s is not None and minute_end_s >= self.steer_from_s:
            held += not met
            if held and (last_raise is None or minute_end_s - last_raise >= dead_time_s):
                log_headroom += STEP * self.target * held
                held, last_raise = 0, minute_end_s
            if met and recent.count("1") >= self.target * len(recent):
                log_headroom -= STEP * (1.0 - self.target)
            log_headroom = min(max(log_headroom, math.log(MIN_HEADROOM)), math.log(MAX_HEADROOM))
        return Attainment(
            target=self.target,
            log_headroom=log_headroom,
            recent=recent,
            minutes=self.minutes + 1,
            missed=self.missed + (not met),
            last_minute_end_s=minute_end_s,
            last_raise_s=last_raise,
            held=held,
            steer_from_s=self.steer_from_s,
            adaptive=self.adaptive,
        )

    def forecasting(self, now: float, dead_time_s: float) -> Attainment:
        """The state once a forecast decides: the first time, minutes from one dead time on steer."""
        return self if self.steer_from_s is not None else replace(self, steer_from_s=now + dead_time_s)

    def to_status(self) -> dict[str, Any]:
        realized = self.realized
        return {
            "target": self.target,
            "realized": None if realized is None else round(realized, 4),
            "windowMinutes": len(self.recent),
            "headroom": round(self.headroom, 4),
            "adaptive": self.adaptive,
            "minutes": self.minutes,
            "missedMinutes": self.missed,
            "recent": self.recent,
            "lastMinuteEnd": self.last_minute_end_s,
            "lastRaise": self.last_raise_s,
            "heldMisses": self.held,
            "steerFrom": self.steer_from_s,
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None, target: float, adaptive: bool) -> Attainment:
        """What a status holds for this target; anything malformed starts afresh, never a crash.

        A changed target keeps the outcomes and the headroom: both remain evidence.
        """
        fresh = cls(target=target, adaptive=adaptive)
        if not isinstance(raw, Mapping):
            return fresh
        try:
            recent = str(raw.get("recent") or "")
            headroom = float(raw.get("headroom", 1.0))
            minutes, missed = int(raw.get("minutes", 0)), int(raw.get("missedMinutes", 0))
            held = int(raw.get("heldMisses") or 0)
            last_end, last_raise, steer_from = (
                _time(raw.get(key)) for key in ("lastMinuteEnd", "lastRaise", "steerFrom")
            )
        except (TypeError, ValueError):
            return fresh
        if set(recent) - {"0", "1"} or not (math.isfinite(headroom) and headroom > 0) or min(minutes, missed, held) < 0:
            return fresh
        return cls(
            target=target,
            log_headroom=math.log(min(max(headroom, MIN_HEADROOM), MAX_HEADROOM)) if adaptive else 0.0,
            recent=recent[-window_minutes(target) :],
            minutes=minutes,
            missed=missed,
            last_minute_end_s=last_end,
            last_raise_s=last_raise,
            held=held,
            steer_from_s=steer_from,
            adaptive=adaptive,
        )


def _time(value: object) -> float | None:
    """A time in a status: a finite number, else ``None``; anything else raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a time: {value!r}")
    return float(value) if math.isfinite(value) else None
