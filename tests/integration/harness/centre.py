"""A contact centre of a test's own, without Kafka: events go through the production parse
-> route -> atomic apply path into the real Lua in Redis, and figures are read back as the
snapshot reads them. Times are seconds after ``T0``."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from harness.settings import REDIS_URL
from stream.config import Policy
from stream.figures.queue import agents_by_queue, queue_snapshot
from stream.figures.windows import bucket_windows
from stream.ingest.batching import PreparedBatch, add
from stream.state.keys import KeySpace
from stream.state.store import QueueRules, StateStore
from stream.timefmt import rfc3339 as iso

WINDOWS = [300, 900, 3600]
T0 = (int(time.time()) // 3600) * 3600 * 1000 - 3600_000  # an hour boundary, an hour ago
NOW = T0 + 100_000  # "now" for reads: 100 s after T0


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any = ()


class Centre:
    """Applies events to a queue state of its own and reads figures back."""

    def __init__(self, store: StateStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.offset = 0
        self.results: dict[tuple[str, str], int] = {}

    async def apply(self, *events: dict[str, Any] | bytes, partition: int = 0,
                    offset: int | None = None, topic: str = "t",
                    event_clock: bool = False) -> dict[tuple[str, str], int]:
        records = []
        for event in events:
            value = event if isinstance(event, bytes) else json.dumps(event).encode()
            records.append(Rec(topic, partition, self.offset if offset is None else offset,
                               None, value))
            self.offset += 1
        batch = PreparedBatch()
        now_ms = int(time.time() * 1000)
        add(batch, records, now_ms, event_clock=event_clock)
        rules = {q: QueueRules(round(self.policy.for_queue(q).sla_seconds * 1000),
                               round(self.policy.for_queue(q).short_abandon_seconds * 1000))
                 for q in batch.state.queue_ids}
        refused, _ = await self.store.admit(batch.state, now_ms)
        assert not refused

        async def no_failure(failed: list[tuple[int, str]]) -> None:
            raise AssertionError(f"not applied: {failed}")

        results = await self.store.apply(batch.state, rules, now_ms, no_failure)
        counted = dict(batch.counts(results))
        for key, n in counted.items():
            self.results[key] = self.results.get(key, 0) + n
        return counted

    async def figures(self, queue_id: str, now_ms: int) -> dict[str, Any]:
        raw = await self.store.read_queues([queue_id], now_ms)
        agents = agents_by_queue(await self.store.agent_states()).get(queue_id, {})
        return queue_snapshot(queue_id, raw[queue_id], agents, self.policy.for_queue(queue_id),
                              WINDOWS, now_ms)


async def new_store() -> StateStore:
    """A store with keys of its own, so tests never see each other's state."""
    return await StateStore.connect(REDIS_URL, bucket_windows(WINDOWS),
                                    KeySpace(f"f{uuid.uuid4().hex[:8]}"))


_ids = iter(range(10**9))


def ev(kind: str, at: float, **fields: Any) -> dict[str, Any]:
    """An event `at` seconds after T0."""
    return {"event_id": f"e{next(_ids)}", "type": kind, "ts": iso(T0 + round(at * 1000)),
            **fields}


def queued(call: str, at: float, queue: str = "q", **extra: Any) -> dict[str, Any]:
    return ev("call.queued", at, call_id=call, queue_id=queue, **extra)


def answered(call: str, at: float, queue: str = "q") -> dict[str, Any]:
    return ev("call.answered", at, call_id=call, queue_id=queue, agent_id="a1")


def abandoned(call: str, at: float, queue: str = "q") -> dict[str, Any]:
    return ev("call.abandoned", at, call_id=call, queue_id=queue)


def ended(call: str, at: float, queue: str = "q") -> dict[str, Any]:
    return ev("call.ended", at, call_id=call, queue_id=queue)


def transferred(call: str, at: float, src: str, dst: str) -> dict[str, Any]:
    return ev("call.transferred", at, call_id=call, queue_id=src, to_queue_id=dst)
