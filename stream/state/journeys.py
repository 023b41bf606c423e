"""Caller journeys in Redis (contract §2): each caller's journey in a slot of its own, and
what it decided about each queue in that queue's slot.

A fact goes first to its caller's journey (apply_journey.lua), which decides, once per
fact token, what the fact means for every queue (a repeat call, a miss, a recovery) and
answers the same decisions whenever the fact comes again; then each queue records those
decisions (journey_queue.lua), once each however often they come. Two atomic scripts in
two slots, never one script across slots, so it works the same on Redis Cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple, cast

from stream.state.store import JOURNEY_BUCKET_MS as BUCKET_MS
from stream.state.store import StateStore
from stream.state.wire import dumps

DAY_MS = 24 * 3600 * 1000
#: A journey (and a caller number in it) is kept this long after its last fact: the day
#: its misses may be recovered in, plus two hours for a late relay or callback.
KEEP_MS = DAY_MS + 2 * 3600 * 1000
#: Callers per journey script call on one Redis.
CALLERS_PER_CALL = 100
_TS_MS = itemgetter(4)  # JourneyOp.ts_ms, read in C


class JourneyOp(NamedTuple):
    """One step of a caller's journey: Q queued, A answered (or reached by a callback),
    B abandoned (a miss), S abandoned sooner than the queue's short-abandon threshold (no
    miss), X the miss at ``ts_ms`` on the queue may be lost (no token)."""

    caller: str
    op: str
    token: str
    queue_id: str
    ts_ms: int
    #: the queue's outbox entry that holds the fact (a repeat call counts while it does)
    box: str = ""


@dataclass(frozen=True, slots=True)
class QueueJourneys:
    """One queue's journey sums over the last day, and its misses now a day old."""

    missed: int
    offered_with_caller: int
    repeat_calls: int
    recovered: int
    recovery_ms: int
    lost: int
    lost_total: int
    due: list[tuple[str, int]]


class JourneyStore:
    """The callers' journeys and the queues' journey figures, behind the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.keys = store.keys

    async def take(self, ops: list[JourneyOp], now_ms: int) -> None:
        """Apply the ops to their callers' journeys, then record the decisions in the
        queues; safe to repeat with the same ops after any failure."""
        if not ops:
            return
        ops = sorted(ops, key=_TS_MS)  # a batch's facts come queue by queue
        # Each caller's steps in time order, as JSON text: queue ids match ID_PATTERN and
        # the rest are letters, digits and hex, so nothing needs escaping (twice as fast
        # as building lists to encode). Four strings a step, and no list of its own: the
        # script decodes a step in half the time.
        by_caller: dict[str, tuple[list[str], list[JourneyOp]]] = {}
        for step in ops:
            caller, op, token, queue_id, ts_ms, _ = step
            text = f'"{op}","{queue_id}","{ts_ms}","{_mark(token)}"'
            held = by_caller.get(caller)
            if held is None:
                by_caller[caller] = ([text], [step])
            else:
                held[0].append(text)
                held[1].append(step)
        config = dumps({"now": now_ms, "day_ms": DAY_MS, "keep_ms": KEEP_MS})
        callers = list(by_caller)
        keys = [self.keys.caller(c) for c in callers]
        groups = self.store.scripts.in_groups(keys, CALLERS_PER_CALL)
        replies = await self.store.scripts.run([
            ("apply_journey", tuple(keys[i] for i in group), config,
             "[" + ",".join("[" + ",".join(by_caller[callers[i]][0]) + "]" for i in group)
             + "]")
            for group in groups])
        by_queue: dict[str, list[list[Any]]] = {}
        for group, reply in zip(groups, replies, strict=True):
            flat = json.loads(reply) or ()  # cjson writes an empty list as {}
            for at in range(0, len(flat), 7):
                who, number, queue_id, *decision = flat[at:at + 7]
                caller = callers[group[who - 1]]
                step_of = by_caller[caller][1][number - 1] if number else None
                token, box = (step_of.token, step_of.box) if step_of else ("", "")
                rows = by_queue.get(queue_id)
                if rows is None:
                    rows = by_queue[queue_id] = []
                rows.append([caller, queue_id, token, *decision, box])
        if by_queue:
            queue_config = dumps({"bucket_ms": BUCKET_MS, "day_ms": DAY_MS})
            await self.store.scripts.run([
                ("journey_queue", self.keys.queue(q), queue_config, dumps(rows))
                for q, rows in by_queue.items()])

    async def read(self, queue_ids: list[str], now_ms: int, prune: bool = False,
                   sums: bool = True) -> dict[str, QueueJourneys]:
        """Each queue's sums over the day before ``now_ms`` (left at 0 without ``sums``)
        and its misses now a day old, in one round trip; ``prune`` also drops what is
        past the day."""
        if not queue_ids:
            return {}
        config = json.dumps({"now": now_ms, "day_ms": DAY_MS, "bucket_ms": BUCKET_MS,
                             "sums": sums, "prune": prune})
        replies = await self.store.scripts.run([("read_journeys", self.keys.queue(q), config)
                                             for q in queue_ids])
        return {q: _sums(json.loads(r)) for q, r in zip(queue_ids, replies, strict=True)}

    async def missed_callers(self, queue_id: str, now_ms: int) -> list[tuple[str, int]]:
        """(caller, ts of the last miss) of the queue's callers missed in the last day and
        not recovered since, oldest miss first."""
        raw = cast("list[tuple[Any, float]]", await self.store.client.zrangebyscore(
            self.keys.queue_key(queue_id, "missed"), f"({now_ms - DAY_MS}", "+inf",
            withscores=True))
        return [(str(caller), int(ts)) for caller, ts in raw]


def _mark(token: str) -> str:
    """A fact's mark in its caller's journey: the first 8 hex digits of its token's SHA-1,
    so that a journey stays small whatever the event ids (made here: several times
    cheaper than in Lua)."""
    return hashlib.sha1(token.encode()).digest()[:4].hex()


def _sums(raw: dict[str, Any]) -> QueueJourneys:
    flat = raw["due"] or []  # cjson writes an empty list as {}
    return QueueJourneys(
        missed=int(raw["missed"]), offered_with_caller=int(raw["c"]),
        repeat_calls=int(raw["r"]), recovered=int(raw["R"]), recovery_ms=int(raw["Rms"]),
        lost=int(raw["L"]), lost_total=int(raw["lost_total"]),
        due=[(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)])
