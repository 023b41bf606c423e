"""Kafka sends awaited a chunk at a time: what simulate and replay both do to feed the topic."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

#: Sends awaited together: one round trip per chunk, not per event.
SEND_CHUNK = 1000


class Sends:
    """Messages handed to the producer whose acknowledgements are still to be awaited."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[asyncio.Future[Any]] = []

    async def send(self, value: bytes, key: str) -> None:
        """Hand one message to the producer; :meth:`settle` awaits its acknowledgement."""
        self._pending.append(await self._producer.send(self._topic, value, key=key.encode()))

    async def settle_if_full(self) -> None:
        """Settle once a chunk is in flight: the caller says where a chunk may end."""
        if len(self._pending) >= SEND_CHUNK:
            await self.settle()

    async def settle(self) -> None:
        """Wait for the sends in flight; a failed one raises its KafkaError, once."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
