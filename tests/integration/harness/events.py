"""Events as producers send them: one at a time, and deterministic streams of whole calls
with the totals they must produce."""

from __future__ import annotations

import time
from typing import Any


def call_stream(calls: int, queues: int = 4, seed: int = 7, start_ms: int | None = None,
                spacing_ms: int = 50) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """A deterministic stream of whole calls, and the totals it must produce per queue."""
    import random

    rng = random.Random(seed)
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 600_000
    events: list[dict[str, Any]] = []
    expected: dict[str, dict[str, int]] = {}
    for i in range(calls):
        queue = f"q{i % queues}"
        call = f"call-{seed}-{i}"
        t = start + i * spacing_ms
        totals = expected.setdefault(queue, {"offered": 0, "answered": 0, "abandoned": 0,
                                              "answered_in_sla": 0, "short_abandoned": 0})
        events.append(_event(f"{call}-q", "call.queued", t, call_id=call, queue_id=queue))
        totals["offered"] += 1
        wait = rng.randint(1, 40) * 1000
        if rng.random() < 0.75:
            events.append(_event(f"{call}-a", "call.answered", t + wait, call_id=call,
                                 queue_id=queue, agent_id=f"agent{i % 9}"))
            events.append(_event(f"{call}-e", "call.ended", t + wait + 60_000, call_id=call,
                                 queue_id=queue))
            totals["answered"] += 1
            totals["answered_in_sla"] += wait <= 20_000
        else:
            events.append(_event(f"{call}-b", "call.abandoned", t + wait, call_id=call,
                                 queue_id=queue))
            totals["abandoned"] += 1
            totals["short_abandoned"] += wait < 5000
    return events, expected


def _event(event_id: str, kind: str, ts_ms: int, **fields: Any) -> dict[str, Any]:
    from stream.timefmt import rfc3339 as iso

    return {"event_id": event_id, "type": kind, "ts": iso(ts_ms), **fields}
