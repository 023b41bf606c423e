"""Refreshes the live snapshot from Redis in the background, twice a second.

Scrapes, the API and the wallboard read the newest snapshot; none of them waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from stream.config import Policy, Settings
from stream.figures.agents import agent_snapshots
from stream.figures.estimates import WaitEstimates
from stream.figures.journeys import journey_figures
from stream.figures.queue import agents_by_queue, queue_snapshot
from stream.health import Health
from stream.outage import Outage
from stream.publish.hub import Snapshot, SnapshotHub
from stream.publish.waiting_calls import WaitingCalls
from stream.state.journeys import JourneyStore
from stream.state.store import StateStore
from stream.timefmt import rfc3339 as iso

log = logging.getLogger(__name__)
REFRESH_SECONDS = 0.5
#: A feature's live part of a queue's snapshot (the alerts in force, ...), by queue id.
QueuePart = Callable[[str], dict[str, Any]]


class SnapshotRefresher:
    """Builds a snapshot of every known queue and publishes it to the hub; keeps the
    index of where calls wait (``calls``) up to date with it."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore, hub: SnapshotHub,
                 health: Health, calls: WaitingCalls | None = None,
                 parts: Sequence[QueuePart] = (), journeys: JourneyStore | None = None,
                 estimates: WaitEstimates | None = None) -> None:
        self.settings = settings
        self.estimates = estimates
        self.parts = parts
        self.journeys = journeys
        self.policy = policy
        self.store = store
        self.hub = hub
        self.health = health
        self.calls = calls

    async def build(self) -> Snapshot:
        now_ms = await self.store.now_ms(self.settings.event_clock)
        queue_ids = await self.store.queue_ids()
        raw = await self.store.read_queues(queue_ids, now_ms)
        raw_agents = await self.store.read_agents(now_ms)
        agents = agents_by_queue(raw_agents.states)
        if self.calls is not None:
            await self.calls.refresh(self.store, now_ms, raw, agents)
        queues: list[dict[str, Any]] = [
            queue_snapshot(q, raw[q], agents.get(q, {}), self.policy.for_queue(q),
                           self.settings.window_seconds, now_ms)
            for q in queue_ids
        ]
        if self.estimates is not None:
            self.estimates.update(queues)
        for queue in queues:
            for part in self.parts:
                queue.update(part(queue["queue_id"]))
        if self.journeys is not None:
            await self._add_journeys(self.journeys, queues, now_ms)
        per_agent = agent_snapshots(
            raw_agents.states, raw_agents.state_ms,
            {q: raw[q]["windows"] for q in queue_ids}, self.store.windows,
            self.settings.window_seconds, now_ms, iso)
        return {"ts": iso(now_ms), "ready": self.health.ready, "queues": queues,
                "agents": per_agent}

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
        now_ms = await self.store.now_ms(self.settings.event_clock)
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
                self.hub.publish_not_ready()
            else:
                self.hub.publish(snapshot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
