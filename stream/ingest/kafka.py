"""Kafka connection options, producers and topic creation, from settings."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import TopicAlreadyExistsError

from stream.config import Settings
from stream.errors import ConfigError

#: Retention given explicitly at creation: tansu reports only configs given then.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def client_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap, TLS and SASL options shared by every Kafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS to the brokers: the CA that signs them, and a client certificate if configured."""
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CALLSTREAM_KAFKA_SSL_CAFILE: cannot use "
                          f"{settings.kafka_ssl_cafile} as a CA bundle ({exc})") from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None,
                settings.kafka_ssl_key_password.get_secret_value() or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "CALLSTREAM_KAFKA_SSL_CERTFILE / CALLSTREAM_KAFKA_SSL_KEYFILE: cannot load the "
                f"client certificate and key ({exc}); check both files and "
                "CALLSTREAM_KAFKA_SSL_KEY_PASSWORD") from None
    elif settings.kafka_ssl_keyfile:
        raise ConfigError("CALLSTREAM_KAFKA_SSL_KEYFILE is set without "
                          "CALLSTREAM_KAFKA_SSL_CERTFILE: set both, or neither")
    return context


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer (not yet started) with acks=all; idempotence only where the broker takes it."""
    options: dict[str, Any] = {
        "acks": "all", "enable_idempotence": settings.kafka_idempotence, "linger_ms": 5,
    }
    return AIOKafkaProducer(**client_options(settings), **(options | overrides))


async def ensure_topics(settings: Settings, names: list[str], partitions: int = 8) -> None:
    """Create the topics that do not exist yet (an operator may have made them already)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
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


class KafkaProbe:
    """Asks the brokers for their metadata: a Kafka that answers is reachable.

    Connects on the first call and again after a failure, so a broker that was never
    reached at start-up, or went away, is noticed when it is back.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AIOKafkaClient | None = None

    async def __call__(self) -> None:
        if self._client is None:
            self._client = AIOKafkaClient(**client_options(self.settings))
            try:
                await self._client.bootstrap()
            except BaseException:
                await self.close()
                raise
        try:
            await self._client.fetch_all_metadata()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


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
