"""Flagger's canary analysis as a closed-loop controller of a traffic backtest (the judge's baseline).

At every ``interval_s`` it checks the canary's hosts over the window since its previous check:
at least one response, a success (non-5xx) rate of at least ``min_success_pct``, a p99 of the
successful attempts' server-side TTFT (from when the host received the attempt; Flagger's
request-duration check) of at most ``ttft_p99_s``, and, when ``tpot_p99_s`` > 0, a p99 TPOT of
the streams finished in the window of at most that. A passing check raises the canary's weight
by ``step_weight`` up to ``max_weight`` (the other subset gets the rest of 100), or promotes the
canary (weight 100) when it passes at ``max_weight``; every failing check counts, and at
``threshold`` failures the canary is rolled back (weight 0). The analysis then stops.

It reads only its :class:`~controller.backtest.traffic.observe.Observation`; it starts from the
weights in force, which are the scenario's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.backtest.traffic.observe import Observation, SubsetWindow
from controller.backtest.traffic.scenario import CANARY
from controller.backtest.traffic.timeline import SettingUpdate

PROMOTED = "promoted"
ROLLED_BACK = "rolled back"
IN_PROGRESS = "in progress"


@dataclass(frozen=True)
class FlaggerOutcome:
    """How a canary analysis ended: "promoted", "rolled back" or "in progress"."""

    result: str
    at_s: float | None
    failed_checks: int


@dataclass(frozen=True)
class FlaggerParams:
    """The analysis settings (the judge's ``--flagger-*`` options)."""

    interval_s: float = 60.0
    step_weight: int = 10
    max_weight: int = 50
    threshold: int = 5
    min_success_pct: float = 99.0
    ttft_p99_s: float = 2.0
    tpot_p99_s: float = 0.0


class Flagger:
    """A canary analysis between the subset named ``canary`` and the one other subset."""

    def __init__(self, params: FlaggerParams | None = None) -> None:
        self.params = params or FlaggerParams()
        self.failed_checks = 0
        self.result = IN_PROGRESS
        self.result_at_s: float | None = None

    @property
    def interval_s(self) -> float:
        return self.params.interval_s

    def outcome(self) -> FlaggerOutcome:
        return FlaggerOutcome(self.result, self.result_at_s, self.failed_checks)

    def decide(self, observation: Observation) -> list[SettingUpdate]:
        if self.result != IN_PROGRESS:
            return []
        others = [s.name for s in observation.subsets if s.name != CANARY]
        if len(others) != 1:
            raise ValueError("Flagger needs exactly two subsets, one of them named 'canary'")
        canary = observation.subset(CANARY)
        if self.passes(canary):
            weight = canary.settings.weight
            if weight < self.params.max_weight:
                return self._weights(min(weight + self.params.step_weight, self.params.max_weight), others[0])
            self._finish(PROMOTED, observation.end_s)
            return self._weights(100, others[0])
        self.failed_checks += 1
        if self.failed_checks >= self.params.threshold:
            self._finish(ROLLED_BACK, observation.end_s)
            return self._weights(0, others[0])
        return []

    def passes(self, canary: SubsetWindow) -> bool:
        responses = canary.responses
        if not responses:
            return False
        if 100.0 * (responses - canary.errors_5xx) / responses < self.params.min_success_pct:
            return False
        ttft = canary.ttft_s
        if not ttft or np.percentile(ttft, 99) > self.params.ttft_p99_s:
            return False
        if self.params.tpot_p99_s > 0:
            tpot = canary.tpot_s
            if tpot and np.percentile(tpot, 99) > self.params.tpot_p99_s:
                return False
        return True

    def _weights(self, canary_weight: int, other: str) -> list[SettingUpdate]:
        return [SettingUpdate(CANARY, "weight", canary_weight), SettingUpdate(other, "weight", 100 - canary_weight)]

    def _finish(self, result: str, at_s: float) -> None:
        self.result = result
        self.result_at_s = at_s
