"""How the attainment feedback converges: realized attainment and headroom over time on a synthetic fleet.

    python benchmarks/attainment_convergence.py [--minutes 20000] [--seed 7]

The fleet misses a minute when the load's need, relative to what forecast and capacity ask for,
exceeds the headroom that serves it. The log of the need is normal around log 1.5 with standard
deviation 0.15 (10 % more headroom than the least that meets 0.95 cuts the miss probability from
5 % to 1.1 %: the same spread as the logistic an earlier version of this benchmark used), and an
AR(1) in time with ``persistence`` 0 (independent minutes) or 0.9 (misses in runs of several
minutes, as a surge on a real trace gives them). The headroom that serves a minute is
the one in force one dead time before it starts: a raise orders replicas that are ready only then.
Dead times: 105 s (a 90 s cold start and a 15 s interval, the default engine) and 315 s (300 s,
the heavy engine). For each case it prints, per span of minutes, the realized attainment and the
mean headroom, next to the least headroom that meets the target (where the miss probability is
``1 - target``), starting from headroom 1 (too little) and from 3 (too much).
docs/predictive-scaling.md shows its output.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from statistics import NormalDist

from controller.scaling.attainment import Attainment

SPANS = (60, 240, 1440, 4320, 20_000)
#: The need's median (relative to what forecast and capacity ask for) and its spread, in logs.
NEED_MEDIAN = 1.5
NEED_SIGMA = 0.15
DEAD_TIMES_S = (105.0, 315.0)
PERSISTENCES = (0.0, 0.9)


def least_headroom(target: float) -> float:
    """Where the miss probability is exactly ``1 - target``."""
    return math.exp(math.log(NEED_MEDIAN) + NEED_SIGMA * NormalDist().inv_cdf(target))


def minutes_served(
    target: float, start: float, dead_time_s: float, persistence: float, minutes: int, seed: int
) -> list[tuple[bool, float]]:
    """Each minute's outcome (met or not) and the headroom in force as it ended."""
    rng = random.Random(seed)
    state = Attainment(target=target, log_headroom=math.log(start)).forecasting(0.0, 0.0)
    # The headrooms in force at the ends of the last minutes; the oldest serves the coming minute.
    in_force = deque([state.headroom] * (1 + math.ceil(dead_time_s / 60.0)))
    shock, served = 0.0, []
    for minute in range(1, minutes + 1):
        shock = persistence * shock + math.sqrt(1 - persistence**2) * rng.gauss(0.0, 1.0)
        met = math.log(in_force[0]) >= math.log(NEED_MEDIAN) + NEED_SIGMA * shock
        served.append((met, state.headroom))
        state = state.record(met, 60.0 * minute, dead_time_s=dead_time_s)
        in_force.popleft()
        in_force.append(state.headroom)
    return served


def cells(served: list[tuple[bool, float]]) -> list[str]:
    """Per span of first minutes: the realized attainment at the mean headroom."""
    return [
        f"{sum(met for met, _ in served[:span]) / span:.3f} at {sum(h for _, h in served[:span]) / span:.2f}"
        for span in SPANS
        if span <= len(served)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=int, default=SPANS[-1])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    spans = [m for m in SPANS if m <= args.minutes]
    print(
        "| dead time | persistence | target | start | least headroom | "
        + " | ".join(f"first {m} min" for m in spans)
        + " |"
    )
    print("|---:|---:|---|---:|---:|" + "---:|" * len(spans))
    for dead_time_s in DEAD_TIMES_S:
        for persistence in PERSISTENCES:
            for target in (0.95, 0.99):
                for start in (1.0, 3.0):
                    served = minutes_served(target, start, dead_time_s, persistence, args.minutes, args.seed)
                    case = f"{dead_time_s:g} s | {persistence:g} | {target} | {start:g} | {least_headroom(target):.2f}"
                    print(f"| {case} | " + " | ".join(cells(served)) + " |")


if __name__ == "__main__":
    main()
