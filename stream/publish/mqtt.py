"""MQTT publisher: the wallboard as retained per-queue snapshots, plus callback and alert twins.

Every topic sits under the root ``CALLSTREAM_MQTT_PREFIX`` (default ``callstream``). A screen
that subscribes to ``{root}/wallboard/{queue_id}`` gets the current figures at once (retained),
then each change, at most once a second; each message carries ``ready`` and the snapshot's
``ts`` so a display can tell stale figures. ``{root}/status/{instance}`` holds ``online``
(retained) while this process is connected, and ``offline`` once it left or its connection
died (the last will). Nothing upstream ever waits on the broker: snapshots are read from the
hub, events go through a bounded outbox, and the publisher reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from stream.config import Settings
from stream.errors import ConfigError
from stream.outage import Outage
from stream.publish.hub import SnapshotHub

log = logging.getLogger(__name__)

WALLBOARD_TOPIC = "{root}/wallboard/{queue_id}"
CALLBACKS_TOPIC = "{root}/callbacks/{queue_id}"
ALERTS_TOPIC = "{root}/alerts/{queue_id}"
STATUS_TOPIC = "{root}/status/{instance}"
ONLINE, OFFLINE = b"online", b"offline"
QOS = 1
#: The contract allows at most one wallboard message per second per queue.
MIN_INTERVAL_SECONDS = 1.0
BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
#: After ``stop``, time left to send a DISCONNECT (and queued events) before giving up.
STOP_GRACE_SECONDS = 0.8
OUTBOX_SIZE = 1000
_IDLE_SECONDS = 5.0
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_URL_RULE = (
    "CALLSTREAM_MQTT_URL must look like mqtt://[user:password@]host[:port] (default port 1883) "
    "or mqtts://... (TLS, default port 8883)"
)

Outgoing = tuple[str, bytes]


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to connect, read once from ``CALLSTREAM_MQTT_URL``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def __str__(self) -> str:
        """The broker as logs show it: never the password."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt[s]://[user:password@]host[:port]`` -> ``MqttTarget``; anything else is refused.

    Messages never echo the URL: it may hold a password.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{_URL_RULE}; {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"{_URL_RULE}; got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError(f"{_URL_RULE}; the host is missing")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{_URL_RULE}; a path, query or fragment is not allowed")
    if port == 0:
        raise ConfigError(f"{_URL_RULE}; port 0 is not a broker port")
    if parts.password is not None and not parts.username:
        raise ConfigError(f"{_URL_RULE}; a password needs a user name")
    return MqttTarget(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "mqtts",
    )


def _tls_context(target: MqttTarget, cafile: str) -> ssl.SSLContext | None:
    """TLS for ``mqtts://``: the system's CAs, or the bundle of ``CALLSTREAM_MQTT_CAFILE``."""
    if not target.tls:
        if cafile:
            raise ConfigError("CALLSTREAM_MQTT_CAFILE is set but CALLSTREAM_MQTT_URL is "
                              "mqtt:// (no TLS): use mqtts://, or unset the CA file")
        return None
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CALLSTREAM_MQTT_CAFILE: cannot use {cafile} as a CA bundle "
                          f"({exc})") from None


def without_callers(value: Any) -> Any:
    """A deep copy minus any ``caller`` key: caller numbers never reach the wallboard."""
    if isinstance(value, dict):
        return {k: without_callers(v) for k, v in value.items() if k != "caller"}
    if isinstance(value, list):
        return [without_callers(v) for v in value]
    return value


class MqttPublisher:
    """Publishes the live wallboard and the callback and alert twins to one MQTT broker."""

    def __init__(
        self, settings: Settings, hub: SnapshotHub, *, outbox_size: int = OUTBOX_SIZE
    ) -> None:
        self.target = parse_mqtt_url(settings.mqtt_url)
        self.root = settings.mqtt_prefix
        self.status_topic = STATUS_TOPIC.format(root=self.root, instance=settings.instance)
        self.tls_context = _tls_context(self.target, settings.mqtt_cafile)
        self.hub = hub
        self.client_id = f"callstream-{settings.instance}"
        #: Events dropped because the outbox was full (the broker away for long).
        self.dropped = 0
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue(outbox_size)
        # Taken from the outbox but not acknowledged: sent again after a reconnect.
        self._unsent: Outgoing | None = None
        # Per queue: the figures last published on this connection, and when (monotonic).
        self._sent: dict[str, dict[str, Any]] = {}
        self._sent_at: dict[str, float] = {}
        self._outage = Outage(f"MQTT broker {self.target}", "CALLSTREAM_MQTT_URL", log,
                              BACKOFF_MIN_SECONDS, BACKOFF_MAX_SECONDS)
        self._connected_once = False

    def publish_callback(self, queue_id: str, offer: dict[str, Any]) -> None:
        """Queue an offer for ``{root}/callbacks/{queue_id}``; never waits on the broker."""
        self._enqueue(CALLBACKS_TOPIC.format(root=self.root, queue_id=queue_id), offer)

    def publish_alert(self, queue_id: str, alert: dict[str, Any]) -> None:
        """Queue an alert for ``{root}/alerts/{queue_id}``; never waits on the broker."""
        self._enqueue(ALERTS_TOPIC.format(root=self.root, queue_id=queue_id), alert)

    def _enqueue(self, topic: str, payload: dict[str, Any]) -> None:
        if self._outbox.full():
            # The newest events matter most to whoever reads them once the broker is back.
            self._outbox.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "MQTT outbox full (%d); dropped the oldest event, %d dropped so far",
                    self._outbox.maxsize,
                    self.dropped,
                )
        self._outbox.put_nowait((topic, json.dumps(payload).encode()))

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, reconnecting by itself; returns within a second."""
        connection = asyncio.create_task(self._keep_connected(stop))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not connection.done():
                await asyncio.wait({connection}, timeout=STOP_GRACE_SECONDS)
        finally:
            stopping.cancel()
            # Still running: a broker that does not answer; stopping wins over a clean goodbye.
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connection

    async def _keep_connected(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._client() as client:
                    if not self._connected_once:
                        log.info("publishing to MQTT broker %s", self.target)
                        self._connected_once = True
                    self._outage.recovered()
                    await self._publish_until(client, stop)
            except aiomqtt.MqttError as exc:
                self._outage.failed(exc)
                await self._outage.backoff(stop)

    def _client(self) -> aiomqtt.Client:
        target = self.target
        return aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=self.client_id,
            tls_context=self.tls_context,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=QOS, retain=True),
        )

    async def _publish_until(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; raises ``MqttError`` when the connection is lost."""
        # A restarted broker may have lost its retained messages: publish every queue again.
        self._sent.clear()
        await client.publish(self.status_topic, ONLINE, qos=QOS, retain=True)
        workers = [
            asyncio.create_task(work)
            for work in (
                self._publish_wallboard(client),
                self._publish_events(client),
                self._watch(client),
                stop.wait(),
            )
        ]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for worker in done:
            worker.result()
        await self._publish_events(client, until_empty=True)
        # A clean DISCONNECT discards the last will: say goodbye in its place.
        await client.publish(self.status_topic, OFFLINE, qos=QOS, retain=True)

    async def _publish_wallboard(self, client: aiomqtt.Client) -> None:
        while True:
            version, snapshot = self.hub.version, self.hub.snapshot
            next_due = math.inf
            ready = snapshot.get("ready") is True
            for queue in snapshot["queues"]:
                due = await self._publish_queue(client, queue, snapshot["ts"], ready)
                next_due = min(next_due, due)
            wait = next_due - time.monotonic() if next_due < math.inf else _IDLE_SECONDS
            await self.hub.wait_newer(version, max(0.0, wait))

    async def _publish_queue(
        self, client: aiomqtt.Client, queue: dict[str, Any], ts: str | None, ready: bool
    ) -> float:
        """Publish a queue's figures if they (or readiness) changed; returns when a held-back
        change is due."""
        queue_id = str(queue["queue_id"])
        figures: dict[str, Any] = without_callers(queue) | {"ready": ready}
        if self._sent.get(queue_id) == figures:
            return math.inf
        due = self._sent_at.get(queue_id, -math.inf) + MIN_INTERVAL_SECONDS
        if due > time.monotonic():
            return due
        payload = json.dumps(figures | {"ts": ts}).encode()
        await client.publish(
            WALLBOARD_TOPIC.format(root=self.root, queue_id=queue_id), payload, qos=QOS,
            retain=True,
        )
        self._sent[queue_id] = figures
        self._sent_at[queue_id] = time.monotonic()
        return math.inf

    async def _publish_events(self, client: aiomqtt.Client, *, until_empty: bool = False) -> None:
        while not (until_empty and self._unsent is None and self._outbox.empty()):
            if self._unsent is None:
                self._unsent = await self._outbox.get()
            topic, payload = self._unsent
            await client.publish(topic, payload, qos=QOS)
            self._unsent = None

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Fails as soon as the broker goes away, even while there is nothing to publish."""
        async for _ in client.messages:
            pass
        raise aiomqtt.MqttError("connection closed")
