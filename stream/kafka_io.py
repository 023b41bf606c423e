"""Kafka connection options, producers and topic creation, from settings."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .config import Settings

#: Retention given explicitly at creation: tansu reports only configs given then.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def client_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap, TLS and SASL options shared by every Kafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=settings.kafka_ssl_cafile or None
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return options


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer (not yet started) with acks=all; idempotence only where the broker takes it."""
    options: dict[str, Any] = {
        "acks": "all", "enable_idempotence": settings.kafka_idempotence, "linger_ms": 5,
    }
    return AIOKafkaProducer(**client_options(settings), **(options | overrides))


async def ensure_topics(settings: Settings, names: list[str], partitions: int = 8) -> None:
    """Create the topics that do not exist yet (an operator may have made them already)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs={"retention.ms": str(DEFAULT_RETENTION_MS)})
            for name in names
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def all_topics(settings: Settings) -> list[str]:
    """Every topic callstream reads or writes."""
    return [
        settings.topic_events,
        settings.topic_dlq,
        settings.topic_offers,
        settings.topic_cancels,
        settings.topic_alerts,
    ]


async def end_offsets(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after the last message of each partition, read from a fetch.

    A fetch's high watermark is the end offset on every broker, while some (tansu)
    answer the end-offset request with the last batch's first offset plus one. So read
    from just before the reported end with a consumer of its own and take the watermark.
    """
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        reported: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        consumer.assign([tp for tp in tps if reported[tp] > 0])
        for tp in consumer.assignment():
            consumer.seek(tp, reported[tp] - 1)
        ends = dict(reported)
        pending = set(consumer.assignment())
        deadline = asyncio.get_running_loop().time() + 5
        while pending and asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp] = max(ends[tp], highwater)
                    pending.discard(tp)
        return ends
    finally:
        await consumer.stop()
