"""Refreshes the live snapshot from Redis in the background, twice a second.

Scrapes, the API and the wallboard read the newest snapshot; none of them waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from .config import STAFFING_WINDOW_SECONDS, Policy, Settings
from .consume import Health
from .figures import agents_by_queue, queue_snapshot
from .journeys import journey_figures
from .outage import Outage
from .state.journeys import JourneyStore
from .state.store import StateStore
from .web.hub import Snapshot, SnapshotHub

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5


def bucket_windows(windows: list[int]) -> list[tuple[int, int]]:
    """Each window (plus the 15 m staffing window) with its bucket: at most W/30 long."""
    return [(w, max(1, w // 30)) for w in sorted(set(windows) | {STAFFING_WINDOW_SECONDS})]


def iso(ms: int) -> str:
    """RFC 3339 with milliseconds and ``Z``, the contract's time format."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SnapshotRefresher:
    """Builds a snapshot of every known queue and publishes it to the hub."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore, hub: SnapshotHub,
                 health: Health, journeys: JourneyStore | None = None) -> None:
        self.settings = settings
        self.journeys = journeys
        self.policy = policy
        self.store = store
        self.hub = hub
        self.health = health

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
        queues: list[dict[str, Any]] = [
            queue_snapshot(q, raw[q], agents.get(q, {}), self.policy.for_queue(q),
                           self.settings.window_seconds, now_ms)
            for q in queue_ids
        ]
        if self.journeys is not None:
            await self._add_journeys(self.journeys, queues, now_ms)
        return {"ts": iso(now_ms), "ready": self.health.ready, "queues": queues}

    async def _add_journeys(self, journeys: JourneyStore, queues: list[dict[str, Any]],
                            now_ms: int) -> None:
        """Each queue's caller journey figures (contract §2), under "journeys"."""
        sums = await journeys.read([q["queue_id"] for q in queues], now_ms)
        for queue in queues:
            value = self.policy.for_queue(queue["queue_id"]).lost_caller_value
            queue["journeys"] = journey_figures(sums[queue["queue_id"]], value)

    async def missed_callers(self, queue_id: str) -> list[dict[str, Any]]:
        """The queue's missed callers not yet recovered, oldest miss first, with their
        numbers (for ``/api/queues/{id}/missed``, which masks them without a token)."""
        if self.journeys is None:
            return []
        now_ms = await self.now_ms()
        return [{"caller": caller, "missed_at": iso(ts), "missed_seconds": (now_ms - ts) / 1000}
                for caller, ts in await self.journeys.missed_callers(queue_id, now_ms)]

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
