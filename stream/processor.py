"""`callstream run`: wires the consumer, the snapshot refresher and the HTTP server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from .config import Policy, Settings
from .consume import Consumer, Health
from .janitor import sweep_forever
from .journeys import JourneyHandler, keep_journeys
from .kafka_io import all_topics, ensure_topics
from .metrics import build_registry
from .mqtt import MqttPublisher
from .outage import Outage
from .snapshots import SnapshotRefresher, bucket_windows
from .state.journeys import JourneyStore
from .state.keys import KeySpace
from .state.store import StateStore
from .web.app import build_app
from .web.hub import SnapshotHub

log = logging.getLogger(__name__)


async def _until_reachable(what: Outage, stop: asyncio.Event,
                           attempt: Callable[[], Awaitable[object]]) -> bool:
    """Retry ``attempt`` with backoff until it succeeds (True) or ``stop`` is set (False)."""
    while not stop.is_set():
        try:
            await attempt()
            what.recovered()
            return True
        except (RedisError, KafkaError, OSError) as exc:
            what.failed(exc)
            await what.backoff(stop)
    return False


async def run_processor(settings: Settings, policy: Policy, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; then finish the batch in flight, commit and return."""
    hub = SnapshotHub()
    mqtt = MqttPublisher(settings, hub) if settings.mqtt_url else None  # checks the URL now
    registry, metrics = build_registry(hub)
    health = Health()
    refreshers: list[SnapshotRefresher] = []

    async def missed_callers(queue_id: str) -> list[dict[str, Any]] | None:
        return await refreshers[0].missed_callers(queue_id) if refreshers else None

    app = build_app(hub, registry, health, settings.http_token, missed_callers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    log.info("serving http://%s:%d/ (metrics, api, wallboard)", settings.http_host,
             settings.http_port)
    store: StateStore | None = None
    try:
        windows = bucket_windows(settings.window_seconds)
        holder: list[StateStore] = []

        async def connect() -> None:
            holder.append(await StateStore.connect(
                settings.redis_url, windows, KeySpace(settings.redis_prefix),
                max_queues=settings.max_queues, max_agents=settings.max_agents,
                caller_facts=True))

        if not await _until_reachable(Outage("Redis", "CALLSTREAM_REDIS_URL", log), stop,
                                      connect):
            return
        store = holder[0]
        if not await _until_reachable(Outage("Kafka", "CALLSTREAM_KAFKA_BOOTSTRAP", log), stop,
                                      lambda: ensure_topics(settings, all_topics(settings))):
            return
        journeys = JourneyStore(store)
        handlers = [JourneyHandler(journeys, policy)]
        consumer = Consumer(settings, policy, store, metrics, health)
        consumer.checkpoint.handlers.extend(handlers)
        refresher = SnapshotRefresher(settings, policy, store, hub, health, journeys)
        refreshers.append(refresher)
        tasks = [consumer.run(stop), refresher.run(stop), sweep_forever(store, stop, handlers),
                 keep_journeys(journeys, store.queue_ids, refresher.now_ms, stop)]
        if mqtt is not None:
            tasks.append(mqtt.run(stop))
        await asyncio.gather(*tasks)
    finally:
        await runner.cleanup()
        if store is not None:
            await store.close()
