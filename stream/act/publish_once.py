"""Publishing decisions kept in Redis to a Kafka topic exactly once, across instances.

A decision (a callback offer, a cancel, an alert) is written into its queue's outbox in
the same atomic step that took it. Any instance may then claim it, send it, and confirm
it; a claim holds for ``claim_ms``. An instance that dies between claiming and confirming
leaves a claim that runs out: the next instance to claim the message first looks for it
in the topic (from the time of the first claim on, by its ``callstream-id`` header) and
sends it only if it is not there; so does every claim for a while after Redis came back
without writes it had acknowledged. So the telephony side never has to deduplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.config import Settings
from stream.ingest.kafka import client_options
from stream.state.outgoing import Outgoing
from stream.state.store import StateStore

log = logging.getLogger(__name__)
#: Where a message goes on once sent (the MQTT twin): its queue id and its JSON.
Forward = Callable[[str, dict[str, Any]], None]
#: How long a claim holds before another instance may take the message over.
CLAIM_MS = 10_000
#: How often each instance looks for due messages: bounds the delay to the topic.
TICK_SECONDS = 0.2
#: Messages claimed per queue per tick.
CLAIM_LIMIT = 200
#: The header that names a message, for the look-up after a takeover.
ID_HEADER = "callstream-id"
#: A takeover reads the topic from this long before the first claim (clock skew).
LOOKBACK_MS = 5_000
#: After Redis came back without some of its writes, a message may be one that was sent
#: and then forgotten: for this long every claim looks in the topic first.
DISTRUST_MS = 10 * 60_000


class OncePublisher:
    """Claims, sends and confirms one channel's messages (``offers``, ``alerts``, ...)."""

    def __init__(self, settings: Settings, store: StateStore, producer: AIOKafkaProducer,
                 topic: str, channel: str, instance: str,
                 on_sent: Callable[[Outgoing], None] | None = None,
                 claim_ms: int = CLAIM_MS) -> None:
        self.settings, self.store, self.producer = settings, store, producer
        self.topic, self.channel, self.instance = topic, channel, instance
        self.on_sent = on_sent
        self.claim_ms = claim_ms
        self._server_ids: frozenset[str] | None = None

    async def tick(self, queue_ids: list[str], now_ms: int | None = None) -> list[Outgoing]:
        """Claim what is due on these queues, send it, confirm it; returns what was sent
        (or found already sent)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        await self._notice_restart()
        claimed = await self.store.claim_outgoing(queue_ids, self.channel, now,
                                                  self.instance, self.claim_ms, CLAIM_LIMIT)
        if not claimed:
            return []
        went_back = self.store.went_back_at_ms
        if went_back is not None and time.time() * 1000 - went_back < DISTRUST_MS:
            claimed = [m if m.taken_over_from_ms is not None else
                       Outgoing(m.queue_id, m.msg_id, m.payload, went_back - DISTRUST_MS)
                       for m in claimed]
        taken_over = [m for m in claimed if m.taken_over_from_ms is not None]
        present = await self._already_sent(taken_over) if taken_over else set()
        to_send = [m for m in claimed if m.msg_id not in present]
        if present:
            log.warning("%d %s message(s) of an instance that stopped were already on %s: "
                        "not sent again", len(present), self.channel, self.topic)
        sends = [await self.producer.send(
            self.topic, value=m.payload.encode(), key=m.queue_id.encode(),
            headers=[(ID_HEADER, m.msg_id.encode())]) for m in to_send]
        await asyncio.gather(*sends)
        done: dict[str, list[str]] = {}
        for message in claimed:
            done.setdefault(message.queue_id, []).append(message.msg_id)
        await self.store.confirm_outgoing(self.channel, done)
        if self.on_sent is not None:
            for message in claimed:
                self.on_sent(message)
        return claimed

    async def _notice_restart(self) -> None:
        """A Redis restarted or failed over may have lost the confirmations of messages
        already sent: distrust every claim from now, before the consumer notices."""
        ids = await self.store.server_ids()
        if self._server_ids is not None and ids != self._server_ids:
            self.store.went_back_at_ms = int(time.time() * 1000)
        self._server_ids = ids

    async def run(self, stop: asyncio.Event, queue_ids: Callable[[], list[str]]) -> None:
        """Tick until ``stop`` is set; Redis or Kafka trouble only delays the messages."""
        while not stop.is_set():
            try:
                await self.tick(queue_ids())
            except (RedisError, KafkaError, OSError) as exc:
                log.debug("%s publisher: %s; trying again", self.channel, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)

    async def _already_sent(self, messages: list[Outgoing]) -> set[str]:
        """Which of these messages are on the topic already (sent by an instance that
        died before it could confirm them)."""
        wanted = {m.msg_id for m in messages}
        since = min(m.taken_over_from_ms or 0 for m in messages) - LOOKBACK_MS
        consumer = AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False)
        await consumer.start()
        found: set[str] = set()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            # tansu answers "offset 0, timestamp -1" past the end: nothing newer there
            scan = {tp: found_at.offset for tp, found_at in starts.items()
                    if found_at is not None and found_at.timestamp >= 0}
            if not scan:
                return found
            consumer.assign(list(scan))
            for tp, offset in scan.items():
                consumer.seek(tp, offset)
            pending = set(scan)
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                fetched = await consumer.getmany(*pending, timeout_ms=200)
                for records in fetched.values():
                    for record in records:
                        header = dict(record.headers or ()).get(ID_HEADER)
                        if header is not None and header.decode() in wanted:
                            found.add(header.decode())
                for tp in list(pending):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        pending.discard(tp)
            return found
        finally:
            await consumer.stop()
