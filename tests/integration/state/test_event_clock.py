"""`clock=event`: a replay of a whole day ends with the windows live processing would show.

The reference computes each window straight from the events, by the contract's definition
(ts in (now - W, now], the old edge rounded down to a bucket boundary), where now is the
newest event time.
"""

from __future__ import annotations

import json
from typing import Any

from harness import (
    InProcessProcessor,
    call_stream,
    produce,
    queue_figures,
    unique_settings,
    wait_until,
)
from stream.figures.windows import bucket_windows
from stream.parse.events import parse
from stream.tools.broker import EmbeddedBroker

DAY_MS = 24 * 3600 * 1000
WINDOWS = {"5m": 300, "15m": 900, "1h": 3600}
KINDS = {"call.queued": "offered", "call.answered": "answered", "call.abandoned": "abandoned"}


def ts_ms(event: dict[str, Any]) -> int:
    parsed = parse(json.dumps(event).encode(), 2**62)
    assert not hasattr(parsed, "reason"), parsed
    return int(parsed.ts)  # type: ignore[union-attr]


def reference(events: list[dict[str, Any]], queue: str, window_s: int, now_ms: int
              ) -> dict[str, int]:
    bucket_ms = dict(bucket_windows([window_s]))[window_s] * 1000
    first_bucket = (now_ms - window_s * 1000) // bucket_ms
    counts = dict.fromkeys(KINDS.values(), 0)
    for event in events:
        ts = ts_ms(event)
        if event["queue_id"] == queue and event["type"] in KINDS and \
                ts // bucket_ms >= first_bucket and ts <= now_ms:
            counts[KINDS[event["type"]]] += 1
    return counts


async def test_a_day_replayed_on_the_event_clock_matches_live_windows(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    start = 1_795_300_000_000 - DAY_MS  # a day of history, long before the wall clock
    events, expected = call_stream(2000, queues=3, seed=11, start_ms=start,
                                   spacing_ms=DAY_MS // 2000)
    now_ms = max(ts_ms(e) for e in events)
    wanted = {(q, label): reference(events, q, seconds, now_ms)
              for q in ("q0", "q1", "q2") for label, seconds in WINDOWS.items()}
    assert all(w["offered"] > 0 for w in wanted.values())  # every window has calls
    assert wanted[("q0", "5m")] != wanted[("q0", "1h")]
    await produce(settings, events)
    async with InProcessProcessor(settings) as processor:
        async def windows_match() -> bool:
            for (queue, label), want in wanted.items():
                figures = await queue_figures(processor.url, queue)
                if figures is None or figures["totals"]["offered"] != \
                        expected[queue]["offered"]:
                    return False
                if {k: figures["windows"][label][k] for k in want} != want:
                    return False
            return True

        await wait_until(windows_match, timeout=30)
