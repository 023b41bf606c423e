"""Refreshes the live snapshot from Redis in the background, twice a second.

Scrapes, the API and the wallboard read the newest snapshot; none of them waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from .config import STAFFING_WINDOW_SECONDS, Policy, Settings
from .figures import agents_by_queue, queue_snapshot
from .health import Health
from .outage import Outage
from .state.store import StateStore
from .timefmt import rfc3339 as iso
from .waiting_calls import WaitingCalls
from .web.hub import Snapshot, SnapshotHub

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5


def bucket_windows(windows: list[int]) -> list[tuple[int, int]]:
    """Each window (plus the 15 m staffing window) with its bucket: at most W/30 long."""
    return [(w, max(1, w // 30)) for w in sorted(set(windows) | {STAFFING_WINDOW_SECONDS})]


class SnapshotRefresher:
    """Builds a snapshot of every known queue and publishes it to the hub; keeps the
    index of where calls wait (``calls``) up to date with it."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore, hub: SnapshotHub,
                 health: Health, calls: WaitingCalls | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.hub = hub
        self.health = health
        self.calls = calls

    async def now_ms(self) -> int:
        """Wall clock, or with ``clock=event`` the newest applied event time of any instance."""
        if self.settings.clock == "event":
            clock = await self.store.event_clock_ms()
            if clock is not None:
                return clock
        return int(time.time() * 1000)

    async def build(self) -> Snapshot:
        now_ms = await self.now_ms()
        queue_ids = await self.store.queue_ids()
        raw = await self.store.read_queues(queue_ids, now_ms)
        agents = agents_by_queue(await self.store.agent_states())
        if self.calls is not None:
            await self.calls.refresh(self.store, now_ms, raw, agents)
        queues: list[dict[str, Any]] = [
            queue_snapshot(q, raw[q], agents.get(q, {}), self.policy.for_queue(q),
                           self.settings.window_seconds, now_ms)
            for q in queue_ids
        ]
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
