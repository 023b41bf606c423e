"""Callers' journeys (contract §2, §5) as streams of calls from callers who call again,
and the model of the journey figures those streams must give, to compare with what a
processor shows."""

from __future__ import annotations

import random
from typing import Any

from harness.events import _event
from harness.probes import queue_figures

HOUR_MS = 3600_000
DAY_MS = 24 * HOUR_MS
FIVE_S = 5000


def queued(call: str, queue: str, ts: int, caller: str | None) -> dict[str, Any]:
    return _event(f"{call}-q", "call.queued", ts, call_id=call, queue_id=queue, caller=caller)


def answered(call: str, queue: str, ts: int) -> dict[str, Any]:
    return _event(f"{call}-a", "call.answered", ts, call_id=call, queue_id=queue,
                  agent_id="a1")


def abandoned(call: str, queue: str, ts: int) -> dict[str, Any]:
    return _event(f"{call}-b", "call.abandoned", ts, call_id=call, queue_id=queue)


def journeys_of(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if figures is None else figures.get("journeys")


Timeline = list[tuple[int, str, str, str]]  # ts, what, caller, queue


def repeat_caller_stream(calls: int, seed: int, start_ms: int
                         ) -> tuple[list[dict[str, Any]], Timeline]:
    """Calls from a small pool of callers (so every caller calls again), each caller always
    on the same queue (one partition: Kafka keeps their order) and never on two calls at
    once (so the order of their events is that of their times, however batches fall),
    and what each did, for :func:`model`."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    timeline: Timeline = []
    for i in range(calls):
        caller = f"49301{i % 120:04d}"  # every 240 s, each call over within 60 s
        queue = f"q{int(caller) % 4}"
        call, t = f"j{seed}-{i}", start_ms + i * 2_000
        wait = rng.randint(1, 60) * 1000
        events.append(queued(call, queue, t, caller))
        timeline.append((t, "queued", caller, queue))
        if rng.random() < 0.6:
            events.append(answered(call, queue, t + wait))
            timeline.append((t + wait, "answered", caller, queue))
        else:
            events.append(abandoned(call, queue, t + wait))
            timeline.append((t + wait, "abandoned" if wait >= FIVE_S else "short", caller,
                             queue))
    return events, timeline


def cross_queue_stream(callers: int, start_ms: int) -> tuple[list[dict[str, Any]], Timeline]:
    """Callers missed on `east` who call `west` an hour later and are answered there."""
    events: list[dict[str, Any]] = []
    timeline: Timeline = []
    for i in range(callers):
        caller, t = f"4420{i:06d}", start_ms + i * 1000
        events += [queued(f"x{i}", "east", t, caller), abandoned(f"x{i}", "east", t + 30_000),
                   queued(f"y{i}", "west", t + HOUR_MS, caller),
                   answered(f"y{i}", "west", t + HOUR_MS + 5_000)]
        timeline += [(t, "queued", caller, "east"), (t + 30_000, "abandoned", caller, "east"),
                     (t + HOUR_MS, "queued", caller, "west"),
                     (t + HOUR_MS + 5_000, "answered", caller, "west")]
    return events, timeline


def model(timeline: Timeline) -> dict[str, dict[str, Any]]:
    """Journey figures (contract §2) of an in-order timeline that spans less than a day."""
    figures: dict[str, dict[str, Any]] = {}
    called: set[str] = set()
    open_misses: dict[tuple[str, str], int] = {}
    resolved: dict[tuple[str, str], int] = {}  # the recovery time of the last recovery
    for ts, what, caller, queue in sorted(timeline, key=lambda e: e[0]):
        f = figures.setdefault(queue, {"offered_with_caller": 0, "repeat_calls": 0,
                                       "recovered": 0, "recovery_ms": 0})
        if what == "queued":
            f["offered_with_caller"] += 1
            f["repeat_calls"] += caller in called
            called.add(caller)
        elif what == "abandoned":
            # One state per caller and queue: missed again, no longer recovered.
            resolved.pop((caller, queue), None)
            open_misses[(caller, queue)] = ts
        elif what == "answered":
            for (c, q), m in list(open_misses.items()):
                if c == caller:
                    resolved[(c, q)] = ts - m
                    del open_misses[(c, q)]
    for (_, q), recovery in resolved.items():
        figures[q]["recovered"] += 1
        figures[q]["recovery_ms"] += recovery
    for queue, f in figures.items():
        f["missed"] = sum(1 for (_, q) in open_misses if q == queue)
    return figures


_COMPARED = ("offered_with_caller", "repeat_calls", "recovered", "missed")


async def shown_journeys(url: str, queues: list[str]) -> dict[str, dict[str, Any] | None]:
    """The compared journey figures of each queue, as the API shows them."""
    shown: dict[str, dict[str, Any] | None] = {}
    for queue in queues:
        figures = journeys_of(await queue_figures(url, queue))
        shown[queue] = None if figures is None else (
            {k: figures[k] for k in _COMPARED}
            | {"recovery_seconds": _rounded(figures["recovery_seconds"])})
    return shown


def wanted(expected: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    return {queue: {k: want[k] for k in _COMPARED} | {
        "recovery_seconds": _rounded(want["recovery_ms"] / want["recovered"] / 1000
                                     if want["recovered"] else None)}
        for queue, want in expected.items()}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


async def all_journeys_match(url: str, expected: dict[str, dict[str, Any]]) -> bool:
    shown = await shown_journeys(url, list(expected))
    return shown == wanted(expected)


def timeline_of(events: list[dict[str, Any]]) -> Timeline:
    """What each caller did in these events (calls queued with a caller), for :func:`model`."""
    from datetime import datetime

    def ms(event: dict[str, Any]) -> int:
        return round(datetime.fromisoformat(event["ts"]).timestamp() * 1000)

    queued_at: dict[str, tuple[str, int]] = {}
    timeline: Timeline = []
    for event in events:
        ts, queue = ms(event), event["queue_id"]
        if event["type"] == "call.queued":
            queued_at[event["call_id"]] = (event["caller"], ts)
            timeline.append((ts, "queued", event["caller"], queue))
            continue
        caller, start = queued_at[event["call_id"]]
        what = "answered" if event["type"] == "call.answered" else (
            "abandoned" if ts - start >= FIVE_S else "short")
        timeline.append((ts, what, caller, queue))
    return timeline
