"""How the attainment feedback converges: realized attainment and headroom over time on a synthetic fleet.

    python benchmarks/attainment_convergence.py [--minutes 20000] [--seed 7]

The fleet misses a minute with a probability that falls with the headroom (a logistic in its log,
50 % at headroom 1.5, slope 12: every 10 % more headroom cuts the odds of a miss by about three),
and a raise acts one dead time (105 s: a 90 s cold start and a 15 s interval) later. For each target
it prints, per span of minutes, the realized attainment and the mean headroom, next to the least
headroom that meets the target (where the miss probability equals ``1 - target``), starting from
headroom 1 (too little) and from 3 (too much). docs/predictive-scaling.md shows its output.
"""

from __future__ import annotations

import argparse
import math
import random

from controller.scaling.attainment import Attainment

SPANS = (60, 240, 1440, 4320, 20_000)


def miss_probability(headroom: float) -> float:
    return 1 / (1 + math.exp(12 * (math.log(headroom) - math.log(1.5))))


def least_headroom(target: float) -> float:
    """Where the miss probability is exactly ``1 - target``."""
    return math.exp(math.log(1.5) + math.log(target / (1 - target)) / 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=int, default=SPANS[-1])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print("| target | start | least headroom | " + " | ".join(f"first {m} min" for m in SPANS) + " |")
    print("|---|---:|---:|" + "---:|" * len(SPANS))
    for target in (0.95, 0.99):
        for start in (1.0, 3.0):
            rng = random.Random(args.seed)
            state = Attainment(target=target, log_headroom=math.log(start)).forecasting(0.0, 0.0)
            met_total = 0
            headroom_sum = 0.0
            cells = []
            for minute in range(1, args.minutes + 1):
                met = rng.random() >= miss_probability(state.headroom)
                met_total += met
                headroom_sum += state.headroom
                state = state.record(met, 60.0 * minute, dead_time_s=105.0)
                if minute in SPANS:
                    cells.append(f"{met_total / minute:.3f} at {headroom_sum / minute:.2f}")
            print(f"| {target} | {start:g} | {least_headroom(target):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
