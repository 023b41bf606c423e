"""Longer check of the simulator against Erlang A and Erlang C, run by hand.

    .venv/bin/python bench/validate_simulator.py [--replications 40] [--measured 200000]
        [--first-seed 0]

For each stationary single-queue configuration it runs independent replications (seeds
S..S+R-1, empty start, 600 s warm-up discarded) and prints the contract's service level
(answered_in_sla ÷ (answered + abandoned − short_abandoned), SLA 20 s, short abandon 5 s),
abandon ratio and ASA as mean ± standard error, next to the Erlang prediction computed the
same way, with z = (measured − predicted) / standard error. It measures with the same helper
as tests/unit/test_simulate.py, so both check the same thing. The cases share their seeds
(the same random streams), so their z values move together; vary --first-seed to see them
scatter.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "tools"))

from test_simulate import (
    SHORT_ABANDON_SECONDS,
    SLA_SECONDS,
    replicate,
    single_queue,
)

from stream.figures.erlang import asa, erlang_a

#: (label, agents, arrival rate per s, AHT s, mean patience s)
CASES = [
    ("small, impatient", 5, 4.5 / 60, 60.0, 60.0),
    ("small, patient (Erlang C)", 7, 5 / 60, 60.0, math.inf),
    ("50 agents, 3 min calls", 50, 47 / 180, 180.0, 120.0),
    ("overloaded: 11 Erlangs on 10", 10, 11 / 120, 120.0, 90.0),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=40, help="runs per case")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds are first-seed .. first-seed + replications - 1",
    )
    parser.add_argument(
        "--measured",
        type=float,
        default=200_000.0,
        help="simulated seconds measured per run, after the warm-up",
    )
    args = parser.parse_args()
    print(
        f"{args.replications} replications (seeds from {args.first_seed}) x "
        f"{args.measured:.0f} s measured per case"
    )
    for label, agents, rate, aht, patience in CASES:
        began = time.process_time()
        measured = replicate(
            partial(single_queue, agents, rate, aht, patience),
            range(args.first_seed, args.first_seed + args.replications),
            600.0,
            args.measured,
            1800.0,
        )
        predicted = erlang_a(agents, rate, aht, patience, SLA_SECONDS, SHORT_ABANDON_SECONDS)
        expected = {
            "service_level": predicted.service_level,
            "abandon_ratio": predicted.abandon_ratio,
        }
        if math.isinf(patience):
            expected["asa"] = asa(agents, rate * aht, aht)
        print(
            f"\n{label}: {agents} agents, {rate * aht:.2f} Erlangs, AHT {aht:.0f} s, "
            f"patience {patience:g} s  ({time.process_time() - began:.1f} s CPU)"
        )
        for name, value in expected.items():
            result = measured[name]
            z = (result.mean - value) / result.standard_error if result.standard_error else 0.0
            print(
                f"  {name:14} predicted {value:8.4f}   measured {result.mean:8.4f} "
                f"± {result.standard_error:.4f}   z {z:+.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
