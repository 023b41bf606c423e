"""The demo's simulated centre tells its story: near target for the hour before, an
unmistakable abandonment spike in the incident 2 minutes after going live, then recovery."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from stream.app.demo import HISTORY_SECONDS, SIMULATION
from stream.tools import simulate

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _figures(until: float) -> dict[str, list[tuple[float, float]]]:
    """Per outcome, the (time, wait) of every leg's end, over the whole centre."""
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    command = simulate.command_from_args(
        parser.parse_args(["simulate", *SIMULATION, "--duration", str(until)]))
    queued: dict[tuple[str, str], float] = {}
    ends: dict[str, list[tuple[float, float]]] = {"answered": [], "abandoned": []}
    for now, event in simulate.timeline(command.config, START):
        kind = event["type"]
        if kind == "agent.state":
            continue
        leg = (event["call_id"], event["queue_id"])
        if kind == "call.queued":
            queued[leg] = now
        elif kind == "call.transferred":
            queued.pop(leg, None)
            queued[(event["call_id"], event["to_queue_id"])] = now
        elif kind in ("call.answered", "call.abandoned") and leg in queued:
            ends[kind.removeprefix("call.")].append((now, now - queued.pop(leg)))
    return ends


def test_near_target_then_an_unmistakable_incident_then_recovery() -> None:
    live = HISTORY_SECONDS
    ends = _figures(live + 1500)

    def over(since: float, until: float) -> tuple[float, float]:
        """Service level (20 s, short abandons under 5 s left out) and abandon ratio."""
        answered = [w for t, w in ends["answered"] if since <= t < until]
        abandoned = [w for t, w in ends["abandoned"] if since <= t < until and w >= 5]
        calls = len(answered) + len(abandoned)
        return sum(w <= 20 for w in answered) / calls, len(abandoned) / calls

    before = over(600, live + 120)
    incident = over(live + 180, live + 420)
    after = over(live + 900, live + 1500)
    assert before[0] >= 0.85 and before[1] <= 0.05, before
    assert incident[0] <= 0.4 and incident[1] >= 0.3, incident
    assert after[0] >= 0.85 and after[1] <= 0.05, after
