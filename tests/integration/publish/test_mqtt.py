"""The MQTT publisher against a real Mosquitto: retained wallboard, rate limit, events, reconnect.

Every test uses queue ids (or a topic root) of its own and clears the retained messages it
leaves on the shared broker.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from harness import MQTT_HOST, MQTT_PORT, MQTT_URL
from harness.mqtt import listening, needs_mosquitto, subscribed
from stream.config import Settings
from stream.errors import ConfigError
from stream.publish.hub import SnapshotHub
from stream.publish.mqtt import MqttPublisher, MqttTarget, parse_mqtt_url
from stream.tools.broker import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


# --- URL parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", MqttTarget("broker", 1883)),
        ("mqtts://broker", MqttTarget("broker", 8883, tls=True)),
        ("mqtt://broker:1999/", MqttTarget("broker", 1999)),
        ("MQTTS://Broker.example:8884", MqttTarget("broker.example", 8884, tls=True)),
        ("mqtt://wall@broker", MqttTarget("broker", 1883, username="wall")),
        ("mqtts://u%40site:p%3Aw%2F@broker", MqttTarget("broker", 8883, "u@site", "p:w/", True)),
        ("mqtt://[::1]:1884", MqttTarget("::1", 1884)),
    ],
)
def test_parse_mqtt_url(url: str, expected: MqttTarget) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "broker:1883",
        "http://broker",
        "tcp://broker:1883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://broker:port",
        "mqtt://broker:70000",
        "mqtt://broker:0",
        "mqtt://broker/topic",
        "mqtt://broker?tls=1",
        "mqtt://:secret@broker",
    ],
)
def test_parse_mqtt_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_MQTT_URL must look like mqtt://"):
        parse_mqtt_url(url)


def test_target_never_shows_the_password() -> None:
    target = parse_mqtt_url("mqtts://wall:s3cret@broker")
    assert str(target) == "mqtts://wall@broker:8883"
    assert "s3cret" not in repr(target)
    with pytest.raises(ConfigError) as refused:
        parse_mqtt_url("ftp://wall:s3cret@broker")
    assert "s3cret" not in str(refused.value)


def test_publisher_refuses_a_bad_url_at_start() -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_MQTT_URL"):
        MqttPublisher(Settings(mqtt_url="localhost:1883"), SnapshotHub())


# --- helpers ----------------------------------------------------------------------------------


def queue(queue_id: str, waiting: int = 0, **extra: Any) -> dict[str, Any]:
    """A queue entry shaped like ``figures.queue_snapshot``."""
    return {
        "queue_id": queue_id,
        "waiting": waiting,
        "longest_wait_seconds": 0.0,
        "ewt_seconds": None,
        "agents": {"available": 1, "busy": 0, "wrapup": 0, "away": 0, "offline": 0},
        "agents_required": 1,
        "policy": {
            "sla_seconds": 20,
            "short_abandon_seconds": 5,
            "service_level_target": 0.8,
            "callback_wait_seconds": 120,
        },
        "windows": {"5m": {"offered": waiting, "answered": 0}},
        "totals": {"offered": waiting},
    } | extra


def snapshot(*queues: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": f"2026-11-22T10:15:{time.time() % 60:06.3f}Z",
        "ready": True,
        "queues": list(queues),
    }


def ids(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"t{tag}-{i}" for i in range(n)]


@asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[None]:
    """Run the publisher; on the way out check it stops within a second."""
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        yield
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - started < 1.0


async def clear_retained(queue_ids: list[str], port: int = MQTT_PORT) -> None:
    async with aiomqtt.Client(MQTT_HOST, port) as client:
        for queue_id in queue_ids:
            await client.publish(f"callstream/wallboard/{queue_id}", b"", qos=1, retain=True)


def publisher_for(hub: SnapshotHub, port: int = MQTT_PORT, settings: Settings | None = None,
                  **options: Any) -> MqttPublisher:
    settings = settings or Settings()
    return MqttPublisher(settings.model_copy(update={"mqtt_url": f"mqtt://{MQTT_HOST}:{port}"}),
                         hub, **options)


def figures(message: aiomqtt.Message) -> dict[str, Any]:
    assert isinstance(message.payload, bytes)
    decoded: dict[str, Any] = json.loads(message.payload)
    return decoded


# --- against the shared broker ----------------------------------------------------------------


@needs_mosquitto
async def test_fresh_subscriber_gets_a_retained_snapshot_per_queue() -> None:
    q1, q2 = ids(2)
    topics = [f"callstream/wallboard/{q}" for q in (q1, q2)]
    hub = SnapshotHub()
    first = snapshot(
        queue(q1, 3, longest_wait_seconds=42.5),
        queue(q2, 0, agents={"available": 2, "caller": "+33612345678"}),
    )
    hub.publish(first)
    try:
        async with running(publisher_for(hub)):
            async with subscribed(*topics) as live:  # published at all, before checking retain
                await live.wait_for(topics[0])
                await live.wait_for(topics[1])
            async with subscribed(*topics) as fresh:
                await fresh.wait_for(topics[0])
                await fresh.wait_for(topics[1])
        (one,), (two,) = fresh.on(topics[0]), fresh.on(topics[1])
        assert one.retain and two.retain and one.qos == 1
        assert figures(one) == first["queues"][0] | {"ts": first["ts"], "ready": True}
        assert figures(two)["agents"] == {"available": 2}
        assert b"+33612345678" not in two.payload
    finally:
        await clear_retained([q1, q2])


@needs_mosquitto
async def test_at_most_one_message_per_second_and_the_last_is_the_latest() -> None:
    (q,) = ids(1)
    topic = f"callstream/wallboard/{q}"
    hub = SnapshotHub()
    hub.publish(snapshot(queue(q, 0)))
    try:
        async with subscribed(topic) as live, running(publisher_for(hub)):
            await live.wait_for(topic)
            await asyncio.sleep(1.1)  # the next change may go out at once
            burst = time.monotonic()
            for waiting in range(1, 11):
                hub.publish(snapshot(queue(q, waiting)))
                await asyncio.sleep(0.05)
            await live.wait_for(topic, count=3)
            await asyncio.sleep(1.3)  # nothing more may follow
        after = [(at, m) for at, m in live.messages if at >= burst]
        assert len([1 for at, _ in after if at < burst + 1.0]) <= 2
        assert len(after) == 2
        assert [figures(m)["waiting"] for _, m in after] == [1, 10]
        assert after[1][0] - after[0][0] >= 0.9
    finally:
        await clear_retained([q])


@needs_mosquitto
async def test_an_unchanged_snapshot_is_not_republished() -> None:
    (q,) = ids(1)
    topic = f"callstream/wallboard/{q}"
    hub = SnapshotHub()
    hub.publish(snapshot(queue(q, 4)))
    try:
        async with subscribed(topic) as live, running(publisher_for(hub)):
            await live.wait_for(topic)
            for _ in range(5):  # a new ts every refresh, same figures
                await asyncio.sleep(0.25)
                hub.publish(snapshot(queue(q, 4)))
            await asyncio.sleep(0.3)
        assert len(live.on(topic)) == 1
    finally:
        await clear_retained([q])


@needs_mosquitto
async def test_callbacks_and_alerts_are_delivered_and_a_full_outbox_drops_the_oldest() -> None:
    (q,) = ids(1)
    callbacks, alerts = f"callstream/callbacks/{q}", f"callstream/alerts/{q}"
    publisher = publisher_for(SnapshotHub(), outbox_size=2)
    for attempt in (1, 2, 3):  # queued before any connection: the outbox holds two
        publisher.publish_callback(
            q, {"offer_id": "o1", "caller": "+33612345678", "attempt": attempt}
        )
    assert publisher.dropped == 1
    async with subscribed(callbacks, alerts) as live, running(publisher):
        await live.wait_for(callbacks, count=2)
        publisher.publish_alert(q, {"alert_id": "a1", "status": "firing", "queue_id": q})
        await live.wait_for(alerts)
    assert [figures(m)["attempt"] for m in live.on(callbacks)] == [2, 3]
    assert figures(live.on(callbacks)[0])["caller"] == "+33612345678"  # its Kafka twin has it
    (alert,) = live.on(alerts)
    assert figures(alert)["status"] == "firing" and alert.qos == 1 and not alert.retain


async def test_stops_promptly_while_the_broker_is_unreachable() -> None:
    async with running(publisher_for(SnapshotHub(), port=free_port())):
        await asyncio.sleep(0.3)


async def test_stops_promptly_while_the_broker_does_not_answer() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the CONNECT, never sends a CONNACK
        writer.close()

    server = await asyncio.start_server(silent, MQTT_HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server, running(publisher_for(SnapshotHub(), port=port)):
        await asyncio.sleep(0.3)


# --- against a broker of its own, killed and restarted ----------------------------------------


class Mosquitto:
    """An in-memory mosquitto on a port of its own: killing it loses its retained messages."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 5
        while not listening(self.port):
            assert self.process.poll() is None, "mosquitto exited at start"
            assert time.monotonic() < deadline, "mosquitto did not listen within 5 s"
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_mosquitto() -> Iterator[Mosquitto]:
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"{MOSQUITTO} is not installed")
    broker = Mosquitto(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


async def test_reconnects_and_republishes_retained_snapshots(
    own_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream.publish.mqtt")
    port = own_mosquitto.port
    (q,) = ids(1)
    topic = f"callstream/wallboard/{q}"
    hub = SnapshotHub()
    hub.publish(snapshot(queue(q, 7)))
    async with running(publisher_for(hub, port=port)):
        async with subscribed(topic, port=port) as before:
            await before.wait_for(topic)
        own_mosquitto.kill()
        await asyncio.sleep(2.5)  # long enough for two failed retries (after 1 s and 2 s)
        own_mosquitto.start()  # empty: it lost the retained snapshot
        async with subscribed(topic, port=port) as live:
            await live.wait_for(topic, timeout=5)  # the republish, as it comes or retained
        async with subscribed(topic, port=port) as after:
            await after.wait_for(topic)
    (message,) = after.on(topic)
    assert message.retain and figures(message)["waiting"] == 7
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1
    assert "CALLSTREAM_MQTT_URL" in lost[0].getMessage()


# --- topic root, readiness, status and last will ---------------------------------------------


def own_root() -> str:
    return f"t{uuid.uuid4().hex[:8]}/callstream"


async def clear_topics(topics: list[str], port: int = MQTT_PORT) -> None:
    async with aiomqtt.Client(MQTT_HOST, port) as client:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


@needs_mosquitto
async def test_topics_sit_under_the_configured_root_and_carry_ready_and_ts() -> None:
    root = own_root()
    (q,) = ids(1)
    topic, callbacks = f"{root}/wallboard/{q}", f"{root}/callbacks/{q}"
    hub = SnapshotHub()
    first = snapshot(queue(q, 2))
    hub.publish(first)
    publisher = publisher_for(hub, settings=Settings(mqtt_prefix=root, instance="edge-1"))
    try:
        async with subscribed(topic, callbacks) as live, running(publisher):
            await live.wait_for(topic)
            publisher.publish_callback(q, {"offer_id": "o1"})
            await live.wait_for(callbacks)
            await asyncio.sleep(1.1)
            # Same figures, processor no longer ready: published again, so a display sees it.
            hub.publish(first | {"ready": False})
            await live.wait_for(topic, count=2)
        one, two = live.on(topic)
        assert figures(one)["ready"] is True and figures(one)["ts"] == first["ts"]
        assert figures(two)["ready"] is False and figures(two)["waiting"] == 2
        assert not live.on(f"callstream/wallboard/{q}")
    finally:
        await clear_topics([topic, f"{root}/status/edge-1"])


@needs_mosquitto
async def test_status_is_online_while_connected_and_offline_after_a_clean_stop() -> None:
    root = own_root()
    status = f"{root}/status/edge-2"
    publisher = publisher_for(SnapshotHub(), settings=Settings(mqtt_prefix=root,
                                                               instance="edge-2"))
    try:
        async with running(publisher):
            async with subscribed(status) as live:  # published at all, before checking retain
                await live.wait_for(status)
            async with subscribed(status) as fresh:
                await fresh.wait_for(status)
            (online,) = fresh.on(status)
            assert online.payload == b"online" and online.retain
        async with subscribed(status) as after:
            await after.wait_for(status)
        (offline,) = after.on(status)
        assert offline.payload == b"offline" and offline.retain
    finally:
        await clear_topics([status])


CHILD = """
import asyncio, sys
from stream.config import Settings
from stream.publish.mqtt import MqttPublisher
from stream.publish.hub import SnapshotHub

async def main():
    settings = Settings(mqtt_url=sys.argv[1], mqtt_prefix=sys.argv[2], instance="edge-3")
    await MqttPublisher(settings, SnapshotHub()).run(asyncio.Event())

asyncio.run(main())
"""


@needs_mosquitto
async def test_the_last_will_says_offline_when_the_process_dies() -> None:
    root = own_root()
    status = f"{root}/status/edge-3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, MQTT_URL, root])
    try:
        async with subscribed(status) as live:
            await live.wait_for(status, timeout=10)
            assert live.on(status)[0].payload == b"online"
            child.kill()  # no DISCONNECT: the broker sees the connection die
            child.wait()
            await live.wait_for(status, count=2, timeout=5)
        assert live.on(status)[1].payload == b"offline"
        async with subscribed(status) as after:  # and it stays, retained
            await after.wait_for(status)
        assert after.on(status)[0].payload == b"offline"
    finally:
        child.kill()
        child.wait()
        await clear_topics([status])


# --- TLS with a CA file of the operator's own --------------------------------------------------


def _make_ca_and_server_cert(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=callstream test CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if not os.access(MOSQUITTO, os.X_OK) or shutil.which("openssl") is None:
        pytest.skip("needs mosquitto and openssl")
    _make_ca_and_server_cert(tmp_path)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        # Started as root, mosquitto would drop to a user that cannot read tmp_path.
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\n", encoding="utf-8")
    process = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not listening(port):
            assert process.poll() is None, "mosquitto (TLS) exited at start"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield port, tmp_path / "ca.pem"
    finally:
        process.kill()
        process.wait()


async def test_mqtts_with_the_operators_ca_file(tls_mosquitto: tuple[int, Path]) -> None:
    port, ca = tls_mosquitto
    (q,) = ids(1)
    hub = SnapshotHub()
    hub.publish(snapshot(queue(q, 5)))
    settings = Settings(mqtt_url=f"mqtts://{MQTT_HOST}:{port}", mqtt_cafile=str(ca))
    context = ssl.create_default_context(cafile=str(ca))
    async with (running(MqttPublisher(settings, hub)),
                aiomqtt.Client(MQTT_HOST, port, tls_context=context) as client):
        await client.subscribe(f"callstream/wallboard/{q}", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert figures(message)["waiting"] == 5
                break


async def test_mqtts_without_the_ca_file_refuses_the_broker(
    tls_mosquitto: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = tls_mosquitto
    caplog.set_level(logging.INFO, logger="stream.publish.mqtt")
    settings = Settings(mqtt_url=f"mqtts://{MQTT_HOST}:{port}")
    async with running(MqttPublisher(settings, SnapshotHub())):
        await asyncio.sleep(0.5)
    (lost,) = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert "CERTIFICATE_VERIFY_FAILED" in lost.getMessage() or "certificate" in \
        lost.getMessage().lower()


def test_a_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"CALLSTREAM_MQTT_CAFILE .* mqtts://"):
        MqttPublisher(Settings(mqtt_url="mqtt://broker", mqtt_cafile=str(ca)), SnapshotHub())
