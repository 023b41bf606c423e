"""Scripted call histories for the abandonment-spike alerts (contract §4), and the state
store the alert watch reads them from. Times are seconds after ``START``."""

from __future__ import annotations

import time
from typing import Any

from harness.centre import WINDOWS
from harness.settings import REDIS_URL
from stream.act.alerts import alert_windows, baseline_reach
from stream.config import Policy, Settings
from stream.figures.windows import bucket_windows
from stream.state.keys import KeySpace
from stream.state.store import StateStore
from stream.timefmt import rfc3339 as iso

#: The scripted histories start two hours ago, on a whole hour.
START = (int(time.time()) // 3600) * 3600 * 1000 - 2 * 3600_000
#: The alert watch of these tests goes by the events' times (the histories are in the past).
SETTINGS = Settings(clock="event")


def at(seconds: float) -> str:
    return iso(START + round(seconds * 1000))


def call(call_id: str, queue: str, start_s: float, wait_s: float, answered: bool
         ) -> list[dict[str, Any]]:
    """One call's events: answered after ``wait_s`` (and ended a minute later), or
    abandoned then."""
    base = {"call_id": call_id, "queue_id": queue}
    end = start_s + wait_s
    events = [{"event_id": f"{call_id}-q", "type": "call.queued", "ts": at(start_s), **base}]
    if answered:
        events += [
            {"event_id": f"{call_id}-a", "type": "call.answered", "ts": at(end),
             "agent_id": "a1", **base},
            {"event_id": f"{call_id}-e", "type": "call.ended", "ts": at(end + 60), **base}]
    else:
        events.append({"event_id": f"{call_id}-b", "type": "call.abandoned", "ts": at(end),
                       **base})
    return events


def calls(queue: str, first_s: float, every_s: float, count: int, abandon_every: int = 0
          ) -> list[dict[str, Any]]:
    """``count`` calls ``every_s`` apart; each ``abandon_every``-th is abandoned after 30 s
    (not short), the others answered after 10 s."""
    events = []
    for i in range(count):
        lost = abandon_every > 0 and i % abandon_every == abandon_every - 1
        events += call(f"{queue}-{first_s:.0f}-{i}", queue, first_s + i * every_s,
                       30 if lost else 10, not lost)
    return events


async def open_store(root: str) -> StateStore:
    policy = Policy()
    return await StateStore.connect(
        REDIS_URL, bucket_windows(WINDOWS, alert_windows(policy)), KeySpace(root),
        reach=baseline_reach(policy))


def spike_history(queue: str) -> list[dict[str, Any]]:
    """A calm hour (2 abandons in 60 calls), 40 calls with 12 abandons (30 %) in 5
    minutes, then calm again for 15 minutes."""
    return (calls(queue, 0, 60, 60, abandon_every=30)
            + [e for i in range(40) for e in call(f"{queue}-s{i}", queue, 3600 + i * 7.5,
                                                   30 if i % 10 in (1, 4, 7) else 10,
                                                   i % 10 not in (1, 4, 7))]
            + calls(queue, 3900, 10, 90))
