"""Refreshes the live snapshot from Redis in the background, twice a second.

Scrapes, the API and the wallboard read the newest snapshot; none of them waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from .config import STAFFING_WINDOW_SECONDS, Policy, Settings
from .consume import Health
from .figures import agents_by_queue, queue_snapshot
from .outage import Outage
from .state.store import StateStore
from .web.hub import Snapshot, SnapshotHub

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5
#: A feature's live part of a queue's snapshot (the alerts in force, ...), by queue id.
QueuePart = Callable[[str], dict[str, Any]]


def bucket_windows(windows: list[int], also: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Each window (plus the 15 m staffing window, and the series features read: ``also``)
    with its bucket: at most W/30 long."""
    every = set(windows) | {STAFFING_WINDOW_SECONDS} | set(also)
    return [(w, max(1, w // 30)) for w in sorted(every)]


def iso(ms: int) -> str:
    """RFC 3339 with milliseconds and ``Z``, the contract's time format."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def clock_ms(settings: Settings, store: StateStore) -> int:
    """Wall clock, or with ``clock=event`` the newest applied event time of any instance."""
    if settings.clock == "event":
        clock = await store.event_clock_ms()
        if clock is not None:
            return clock
    return int(time.time() * 1000)


class SnapshotRefresher:
    """Builds a snapshot of every known queue and publishes it to the hub."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore, hub: SnapshotHub,
                 health: Health, parts: Sequence[QueuePart] = ()) -> None:
        self.settings = settings
        self.parts = parts
        self.policy = policy
        self.store = store
        self.hub = hub
        self.health = health

    async def build(self) -> Snapshot:
        now_ms = await clock_ms(self.settings, self.store)
        queue_ids = await self.store.queue_ids()
        raw = await self.store.read_queues(queue_ids, now_ms)
        agents = agents_by_queue(await self.store.agent_states())
        queues: list[dict[str, Any]] = [
            queue_snapshot(q, raw[q], agents.get(q, {}), self.policy.for_queue(q),
                           self.settings.window_seconds, now_ms)
            for q in queue_ids
        ]
        for queue in queues:
            for part in self.parts:
                queue.update(part(queue["queue_id"]))
        return {"ts": iso(now_ms), "ready": self.health.ready, "queues": queues}

    async def run(self, stop: asyncio.Event) -> None:
        outage = Outage("Redis (snapshot refresh)", "CALLSTREAM_REDIS_URL", log)
        while not stop.is_set():
            try:
                snapshot = await self.build()
                self.health.redis_ok = True
                outage.recovered()
            except (RedisError, OSError) as exc:
                self.health.redis_ok = False
                outage.failed(exc)
                snapshot = self.hub.snapshot | {"ready": False}
            self.hub.publish(snapshot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
