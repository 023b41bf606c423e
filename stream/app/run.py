"""`callstream run`: wires the consumer, the snapshot refresher and the HTTP server."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.act.alerts import AlertWatch, alert_windows, baseline_reach
from stream.act.callbacks import Callbacks
from stream.act.janitor import sweep_forever
from stream.act.journeys import JourneyHandler, keep_journeys
from stream.config import Policy, Settings
from stream.errors import ConfigError
from stream.figures.estimates import WaitEstimates
from stream.figures.windows import bucket_windows
from stream.health import Health, watch
from stream.ingest.checkpoint import FactHandler
from stream.ingest.consumer import Consumer
from stream.ingest.kafka import KafkaProbe, all_topics, ensure_topics
from stream.outage import Outage
from stream.publish.hub import SnapshotHub
from stream.publish.metrics import build_registry
from stream.publish.mqtt import MqttPublisher
from stream.publish.snapshots import SnapshotRefresher
from stream.publish.waiting_calls import WaitingCalls
from stream.publish.web.app import build_app
from stream.state.client import Redis, connect_redis
from stream.state.journeys import JourneyStore
from stream.state.keys import KeySpace
from stream.state.store import StateStore

log = logging.getLogger(__name__)
T = TypeVar("T")
#: One start-up attempt that takes longer than this counts as failed (and is logged).
ATTEMPT_TIMEOUT_SECONDS = 10.0
#: Open HTTP connections get this long to finish at shutdown.
HTTP_SHUTDOWN_SECONDS = 1.0


class _Stopped(Exception):
    """``stop`` was set while an attempt was still running."""


async def _unless_stopped(attempt: Awaitable[T], stop: asyncio.Event, timeout: float) -> T:
    """Await ``attempt``, but give it up at once when ``stop`` is set, and after ``timeout``
    seconds (``TimeoutError``): a dependency that does not answer never holds up a stop."""
    task = asyncio.ensure_future(attempt)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)  # let it close what it opened
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: it failed while being given up, nothing to report
    if stop.is_set():
        raise _Stopped
    raise TimeoutError(f"no answer within {timeout:g} s: is this the right address, and the "
                       f"right kind of server?")


async def _until_reachable(what: Outage, dependency: str, health: Health, stop: asyncio.Event,
                           attempt: Callable[[], Awaitable[T]],
                           timeout: float = ATTEMPT_TIMEOUT_SECONDS) -> T:
    """Retry ``attempt`` with backoff until it succeeds (its result); ``_Stopped`` once
    ``stop`` is set."""
    while not stop.is_set():
        try:
            result = await _unless_stopped(attempt(), stop, timeout)
        except (RedisError, KafkaError, OSError, TimeoutError) as exc:
            what.failed(exc)
            health.reachable(dependency, False, exc)
            await what.backoff(stop)
            continue
        what.recovered()
        health.reachable(dependency, True)
        return result
    raise _Stopped


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_open(settings: Settings) -> None:
    if not settings.http_token.get_secret_value() and not is_loopback(settings.http_host):
        log.warning("the HTTP API, metrics and wallboard on %s:%d are open to anyone who can "
                    "reach this address: set CALLSTREAM_HTTP_TOKEN, or CALLSTREAM_HTTP_HOST="
                    "127.0.0.1 to keep them local", settings.http_host, settings.http_port)


async def _serve_http(app: web.Application, settings: Settings) -> web.AppRunner:
    """Start listening; a port in use or a bad host is a one-line ``ConfigError``."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_SECONDS)
    await runner.setup()
    where = f"{settings.http_host}:{settings.http_port}"
    try:
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {settings.http_port} is already in use on {settings.http_host} (another "
                f"callstream?): stop that program or set CALLSTREAM_HTTP_PORT to a free port"
            ) from None
        raise ConfigError(f"cannot listen on {where} ({exc.strerror or exc}): check "
                          f"CALLSTREAM_HTTP_HOST and CALLSTREAM_HTTP_PORT") from None
    log.info("serving http://%s/ (metrics, api, wallboard)", where)
    return runner


async def run_processor(settings: Settings, policy: Policy, stop: asyncio.Event,
                        health: Health | None = None) -> None:
    """Run until ``stop`` is set; then finish the batch in flight, commit and return.

    HTTP comes up first (liveness answers while the dependencies are still awaited); then
    Redis, then Kafka, each retried with backoff until it answers or ``stop`` is set.
    """
    health = health if health is not None else Health()
    hub = SnapshotHub(live=lambda: health.ready)
    mqtt = MqttPublisher(settings, hub) if settings.mqtt_url else None  # checks the URL now
    registry, metrics = build_registry(hub)
    calls = WaitingCalls(event_clock=settings.event_clock)
    refresher: SnapshotRefresher | None = None

    async def missed_callers(queue_id: str) -> list[dict[str, Any]] | None:
        return await refresher.missed_callers(queue_id) if refresher is not None else None

    runner = await _serve_http(build_app(hub, registry, health,
                                         settings.http_token.get_secret_value(), calls,
                                         missed_callers), settings)
    _warn_if_open(settings)
    kafka_probe = KafkaProbe(settings)
    connected: tuple[Redis, StateStore] | None = None
    windows = bucket_windows(settings.window_seconds, alert_windows(policy))

    async def connect() -> tuple[Redis, StateStore]:
        probe = await connect_redis(settings.redis_url)
        try:
            return probe, await StateStore.connect(
                settings.redis_url, windows, KeySpace(settings.redis_prefix),
                max_queues=settings.max_queues, max_agents=settings.max_agents,
                caller_facts=True, reach=baseline_reach(policy))
        except BaseException:
            await probe.aclose()
            raise

    try:
        connected = await _until_reachable(Outage("Redis", "CALLSTREAM_REDIS_URL", log),
                                           "redis", health, stop, connect)
        probe, store = connected
        background = [asyncio.create_task(watch(health, "redis", probe.ping, stop)),
                      asyncio.create_task(hub.watch_liveness(stop))]
        try:
            kafka = Outage("Kafka", "CALLSTREAM_KAFKA_BOOTSTRAP", log)
            await _until_reachable(kafka, "kafka", health, stop,
                                   lambda: ensure_topics(settings, all_topics(settings)))
            background.append(asyncio.create_task(watch(health, "kafka", kafka_probe, stop)))
            alerts = await _until_reachable(kafka, "kafka", health, stop, lambda: AlertWatch.start(
                settings, store, policy, mqtt.publish_alert if mqtt else None))
            estimates = WaitEstimates()
            callbacks = Callbacks(settings, policy, store, estimates,
                                  mqtt.publish_callback if mqtt else None)
            journeys = JourneyStore(store)
            handlers: list[FactHandler] = [JourneyHandler(journeys, policy), callbacks]
            consumer = Consumer(settings, policy, store, metrics, health,
                                handlers=handlers, hooks=[callbacks])
            refresher = SnapshotRefresher(settings, policy, store, hub, health, calls,
                                          parts=[alerts.snapshot_part], journeys=journeys,
                                          estimates=estimates)
            tasks: list[Awaitable[Any]] = [
                consumer.run(stop), refresher.run(stop), callbacks.run(stop), alerts.run(stop),
                sweep_forever(store, stop, handlers=handlers),
                keep_journeys(journeys, store.queue_ids,
                              lambda: store.now_ms(settings.event_clock), stop)]
            if mqtt is not None:
                tasks.append(mqtt.run(stop))
            await asyncio.gather(*tasks)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    except _Stopped:
        return
    finally:
        await runner.cleanup()
        await kafka_probe.close()
        if connected is not None:
            await connected[0].aclose()
            await connected[1].close()
