"""The shared Mosquitto: whether it listens, and subscribers that record what arrives."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiomqtt
import pytest

from harness.settings import MQTT_HOST, MQTT_PORT


def listening(port: int) -> bool:
    """Whether something accepts connections on the Mosquitto host at ``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((MQTT_HOST, port)) == 0


needs_mosquitto = pytest.mark.skipif(
    not listening(MQTT_PORT), reason=f"no MQTT broker listens on {MQTT_HOST}:{MQTT_PORT}"
)


class Subscriber:
    """A fresh MQTT client that records what it receives, with receive times."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, aiomqtt.Message]] = []
        self._arrived = asyncio.Event()

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for _, m in self.messages if m.topic.value == topic]

    async def wait_for(self, topic: str, count: int = 1, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.on(topic)) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.messages.append((time.monotonic(), message))
            self._arrived.set()


@asynccontextmanager
async def subscribed(*topics: str, port: int = MQTT_PORT) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber()
    async with aiomqtt.Client(MQTT_HOST, port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        task = asyncio.create_task(subscriber._collect(client))
        try:
            yield subscriber
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
