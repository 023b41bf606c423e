"""The Redis state store: the only module that speaks Redis for queue state.

Writes go through two Lua scripts, one atomic call per queue (and one for agents) per
batch, all of a batch's calls in one pipelined round trip. Reads go through one script
per queue. Each script call also records the partition offsets it applied, so a replay
after any crash skips exactly what was applied.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from .keys import KeySpace

Redis = aioredis.Redis | aioredis.RedisCluster
#: An agent event's dedup mark lives in a hash per processing day for two days.
DEDUP_TTL_S = 2 * 86400 + 3600
#: A leg idle this long is forgotten (its late events then count as orphans). Its event
#: ids are its dedup marks, so this is also the dedup horizon: 24 h plus the up-to-1 h
#: coarseness of the leg index.
LEG_TTL_MS = 25 * 3600 * 1000
#: Buckets outlive their window by this much: events may be up to 5 min in the future.
BUCKET_TTL_EXTRA_S = 360


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@dataclass
class QueueWrite:
    """One queue's share of a batch: rows for apply_queue.lua, in consumption order."""

    queue_id: str
    rows: list[list[Any]] = field(default_factory=list)


@dataclass
class BatchWrite:
    """Everything one batch writes, sent in one round trip."""

    queues: dict[str, QueueWrite] = field(default_factory=dict)
    agent_rows: list[list[Any]] = field(default_factory=list)
    #: partition -> last offset of the batch, recorded once every script call succeeded.
    checkpoint: dict[int, int] = field(default_factory=dict)
    new_queues: set[str] = field(default_factory=set)
    #: partition -> last offset sent to the dead-letter topic in this batch
    dead_lettered: dict[int, int] = field(default_factory=dict)
    newest_ts_ms: int | None = None
    _encoded: tuple[dict[str, str], str] | None = field(default=None, repr=False)

    def encoded(self) -> tuple[dict[str, str], str]:
        """The rows as the scripts take them (JSON), encoded once: a retry reuses them, and
        the consumer encodes while Redis still applies the batch before."""
        if self._encoded is None:
            self._encoded = ({q: json.dumps(w.rows) for q, w in self.queues.items()},
                             json.dumps(self.agent_rows))
        return self._encoded

    def queue(self, queue_id: str) -> QueueWrite:
        write = self.queues.get(queue_id)
        if write is None:
            write = self.queues[queue_id] = QueueWrite(queue_id)
        return write


@dataclass(frozen=True)
class QueueRules:
    """The per-queue thresholds the apply script needs, in milliseconds."""

    sla_ms: int
    short_ms: int


class StateStore:
    """Queue and agent state in Redis, shared by every processor instance."""

    def __init__(self, client: Redis, windows: list[tuple[int, int]],
                 keys: KeySpace | None = None) -> None:
        self.client = client
        self.keys = keys or KeySpace()
        self.windows = windows
        self._sources = {
            name: _script(f"{name}.lua")
            for name in ("apply_queue", "apply_agents", "read_queue", "raise_clock")
        }
        self._shas: dict[str, str] = {}
        self._ready_scripts = False

    @classmethod
    async def connect(cls, url: str, windows: list[tuple[int, int]], keys: KeySpace
                      ) -> StateStore:
        """Connect to a Redis server or, when ``url`` names a Cluster node, the Cluster."""
        client: Redis = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            info = await client.info("cluster")
            if info.get("cluster_enabled"):
                await client.aclose()
                client = aioredis.RedisCluster.from_url(url, decode_responses=True)
        except Exception:
            await client.aclose()
            raise
        return cls(client, windows, keys)

    async def close(self) -> None:
        await self.client.aclose()

    async def load_scripts(self) -> None:
        """(Re)load the Lua scripts; needed after a Redis restart empties its script cache."""
        for name, source in self._sources.items():
            self._shas[name] = await self.client.script_load(source)
        self._ready_scripts = True

    async def apply(self, batch: BatchWrite, rules: dict[str, QueueRules], topic: str,
                    now_ms: int) -> tuple[dict[str, str], str]:
        """Apply a batch; returns result letters per queue and for the agent rows.

        Safe to call again with the same batch after any failure: offsets already applied
        are skipped by the scripts.
        """
        if not self._ready_scripts:
            await self.load_scripts()
        try:
            return await self._apply(batch, rules, topic, now_ms)
        except NoScriptError:
            await self.load_scripts()
            return await self._apply(batch, rules, topic, now_ms)

    async def _apply(self, batch: BatchWrite, rules: dict[str, QueueRules], topic: str,
                     now_ms: int) -> tuple[dict[str, str], str]:
        order = list(batch.queues)
        rows, agent_rows = batch.encoded()
        calls: list[tuple[str, str, str, str]] = []
        for queue_id in order:
            rule = rules[queue_id]
            config = {
                "now": now_ms, "sla_ms": rule.sla_ms, "short_ms": rule.short_ms,
                "windows": self.windows, "leg_ttl_ms": LEG_TTL_MS,
                "bucket_ttl_extra_s": BUCKET_TTL_EXTRA_S,
            }
            calls.append(("apply_queue", self.keys.queue(queue_id), json.dumps(config),
                          rows[queue_id]))
        if batch.agent_rows:
            calls.append(("apply_agents", self.keys.agents,
                          json.dumps({"now": now_ms, "dedup_ttl_s": DEDUP_TTL_S}), agent_rows))
        replies = await self._call_scripts(calls)
        # Written only after every script call succeeded; on one Redis its AOF keeps a
        # prefix of the writes, so a surviving checkpoint implies surviving state.
        tail = self.client.pipeline(transaction=False)
        if batch.checkpoint:
            tail.hset(self.keys.checkpoint(topic),
                      mapping=batch.checkpoint)  # type: ignore[arg-type]
        if batch.dead_lettered:
            tail.hset(self.keys.dead_lettered(topic),
                      mapping=batch.dead_lettered)  # type: ignore[arg-type]
        if batch.new_queues:
            tail.sadd(self.keys.queues, *batch.new_queues)
        await tail.execute()
        if batch.newest_ts_ms is not None:
            await self._call_scripts([("raise_clock", self.keys.event_clock,
                                       str(batch.newest_ts_ms))])
        results = {q: replies[i] for i, q in enumerate(order)}
        agents = replies[len(order)] if batch.agent_rows else ""
        return results, agents

    async def _call_scripts(self, calls: Sequence[tuple[str, ...]]) -> list[Any]:
        """Script calls ``(script, key, *args)``, each atomic, all in one round trip; on a
        Cluster, which refuses scripts in pipelines, as concurrent calls instead."""
        if isinstance(self.client, aioredis.RedisCluster):
            return list(await asyncio.gather(*(
                self.client.evalsha(self._shas[name], 1, key, *args)
                for name, key, *args in calls)))
        pipe = self.client.pipeline(transaction=False)
        for name, key, *args in calls:
            pipe.evalsha(self._shas[name], 1, key, *args)
        return list(await pipe.execute())

    async def checkpoints(self, topic: str) -> dict[int, int]:
        """partition -> last offset of the last batch applied whole."""
        return await self._offsets(self.keys.checkpoint(topic))

    async def dead_lettered(self, topic: str) -> dict[int, int]:
        """partition -> last offset copied to the dead-letter topic."""
        return await self._offsets(self.keys.dead_lettered(topic))

    async def _offsets(self, key: str) -> dict[int, int]:
        raw = await self.client.hgetall(key)
        return {int(p): int(o) for p, o in raw.items()}

    async def queue_ids(self) -> list[str]:
        return sorted(str(q) for q in await self.client.smembers(self.keys.queues))

    async def event_clock_ms(self) -> int | None:
        raw = await self.client.get(self.keys.event_clock)
        return int(raw) if raw is not None else None

    async def read_queues(self, queue_ids: list[str], now_ms: int) -> dict[str, dict[str, Any]]:
        """Live figures and window sums of each queue, in one round trip."""
        if not queue_ids:
            return {}
        if not self._ready_scripts:
            await self.load_scripts()
        config = json.dumps({"now": now_ms, "windows": self.windows})
        calls = [("read_queue", self.keys.queue(q), config) for q in queue_ids]
        try:
            replies = await self._call_scripts(calls)
        except NoScriptError:
            await self.load_scripts()
            replies = await self._call_scripts(calls)
        return {q: json.loads(r) for q, r in zip(queue_ids, replies, strict=True)}

    async def agent_states(self) -> dict[str, tuple[str, list[str]]]:
        """agent_id -> (state, queues)."""
        raw = await self.client.hgetall(self.keys.agent_states)
        agents: dict[str, tuple[str, list[str]]] = {}
        for agent, value in raw.items():
            state, _, queues = str(value).partition("|")
            agents[str(agent)] = (state, [q for q in queues.split(",") if q])
        return agents

