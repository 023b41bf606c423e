"""How right is the EWT? The table of docs/ewt.md, run by hand.

    .venv/bin/python bench/ewt_study.py [--seeds 10] [--measured 100000]

For stationary single-queue loads (20 agents, the simulator's default call: log-normal
handle time, AHT 240 s, 15 s wrap-up) at utilisation 0.6, 0.8 and 0.95, with patient
callers and with a mean patience of 120 s, plus an overloaded queue, it runs the simulator
in-process and, at each arrival, computes every method's EWT from the figures callstream
would show at that instant; it prints the mean absolute error and the bias (mean of EWT −
wait) against the callers' waits: virtual waits (the wait an abandoner would have had),
or, with --answered-only, answered callers' real waits only. --true-patience adds a column:
Erlang A told the simulator's patience instead of measuring it. Seeds 0 .. seeds − 1, each
run with a one-hour warm-up.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "figures"))

from test_ewt import Live, Load, Method, callstream_ewt, study

from stream.figures.queue import estimated_wait_seconds
from stream.vocabulary import STAFFED_STATES

LOADS = [
    Load(0.6, math.inf),
    Load(0.8, math.inf),
    Load(0.95, math.inf),
    Load(0.6, 120.0),
    Load(0.8, 120.0),
    Load(0.95, 120.0),
    Load(1.2, 120.0),
]


def _staffed(live: Live) -> int:
    return sum(live.agents.get(state, 0) for state in STAFFED_STATES)


def naive(live: Live) -> float | None:
    """AHT × position ÷ agents: the caller's position, whoever is free."""
    aht, staffed = live.windows[900]["aht_seconds"], _staffed(live)
    return None if aht is None or staffed == 0 else aht * (live.waiting + 1) / staffed


def former(live: Live) -> float | None:
    """Callstream before: max(0, waiting + 1 − available) × AHT ÷ staffed."""
    aht, staffed = live.windows[900]["aht_seconds"], _staffed(live)
    if aht is None or staffed == 0:
        return None
    return max(0, live.waiting + 1 - live.agents.get("available", 0)) * aht / staffed


def answer_rate(live: Live) -> float | None:
    """The calls left after the free agents, ÷ the queue's answer rate over 5 m."""
    answered = live.windows[300]["answered"]
    if answered == 0:
        return former(live)
    return max(0, live.waiting + 1 - live.agents.get("available", 0)) / (answered / 300)


def told_patience(load: Load) -> Method:
    """Erlang A with the simulator's own mean patience rather than the measured one."""

    def ewt(live: Live) -> float | None:
        return estimated_wait_seconds(live.waiting, live.agents,
                                      live.windows[900]["aht_seconds"], load.patience_seconds)

    return ewt


METHODS: dict[str, Method] = {
    "naive": naive,
    "former": former,
    "answer rate": answer_rate,
    "Erlang A": callstream_ewt,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="runs per load")
    parser.add_argument("--measured", type=float, default=100_000.0,
                        help="simulated seconds measured per run, after the warm-up")
    parser.add_argument("--answered-only", action="store_true",
                        help="score on answered callers' real waits only")
    parser.add_argument("--true-patience", action="store_true",
                        help="add Erlang A told the true mean patience")
    args = parser.parse_args()
    names = [*METHODS, "true patience"] if args.true_patience else list(METHODS)
    print(f"{args.seeds} seeds x {args.measured:.0f} s measured per load; errors in seconds, "
          f"MAE / bias, against {'answered callers' if args.answered_only else 'all callers'}\n")
    print("| utilisation | patience | abandoned | mean (virtual) wait | "
          + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for load in LOADS:
        began = time.process_time()
        methods = METHODS | {"true patience": told_patience(load)} if args.true_patience \
            else METHODS
        result = study(load, range(args.seeds), methods, warm_up=3600.0,
                       measured=args.measured)
        cells = []
        for name in names:
            errors = result.errors[name]
            mae, bias = ((errors.answered_mae, errors.answered_bias) if args.answered_only
                         else (errors.mae, errors.bias))
            cells.append(f"{mae:.1f} / {bias:+.1f}")
        patience = "∞" if math.isinf(load.patience_seconds) else f"{load.patience_seconds:g} s"
        print(f"| {load.utilisation:g} | {patience} | {result.abandoned / result.callers:.1%} | "
              f"{result.mean_wait:.1f} s | " + " | ".join(cells) + " |",
              f"<!-- {result.callers} callers, {time.process_time() - began:.0f} s CPU -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
