"""The Kafka consumer loop: batches, dead letters, atomic apply, commits, rebalances.

One batch is applied in Redis while the next is fetched and parsed. A partition's offset
is committed only after Redis has applied its events; Redis itself records the offsets
it applied, so a redelivery after any crash is skipped exactly, and the resume point of a
partition is the lower of Kafka's committed offset and Redis's checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from .batching import PreparedBatch, add, count_results
from .config import Policy, Settings
from .health import Health
from .kafka_io import client_options, end_offsets, make_producer
from .metrics import PipelineMetrics
from .outage import Outage
from .state.store import QueueRules, StateStore

log = logging.getLogger(__name__)
#: Records parsed between two yields to the event loop.
PARSE_SLICE = 500
#: How long the broker may hold a fetch open waiting for data: bounds the latency.
FETCH_MAX_WAIT_MS = 50


class Consumer:
    """Consumes the events topic into the state store, exactly once per event."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore,
                 metrics: PipelineMetrics, health: Health) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.health = health
        self.topic = settings.topic_events
        self.known_queues: set[str] = set()
        self.rules: dict[str, QueueRules] = {}
        self.redis_outage = Outage("Redis", "CALLSTREAM_REDIS_URL", log)
        self.kafka_outage = Outage("Kafka", "CALLSTREAM_KAFKA_BOOTSTRAP", log)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.kafka_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._producer = make_producer(settings)
        self._inflight: asyncio.Task[None] | None = None
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._dead_lettered: dict[int, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the batch in flight and commit."""
        await self._producer.start()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        await self._consumer.start()
        watchdog = asyncio.create_task(self._watch_kafka(stop))
        try:
            while not stop.is_set():
                try:
                    fetched = await self._consumer.getmany(
                        timeout_ms=100, max_records=self.settings.kafka_batch_max)
                except KafkaError as exc:  # aiokafka retries on its own; so do we
                    self.kafka_outage.failed(exc)
                    await asyncio.sleep(0.5)
                    continue
                self._record_lag(fetched)
                records = [r for tp, batch in fetched.items() if tp in self._assigned
                           for r in batch]
                if not records:
                    await self._settle()
                    continue
                prepared = await self._prepare(records)
                await self._settle()
                self._inflight = asyncio.create_task(self._apply(prepared, stop))
                await asyncio.sleep(0)  # let it send to Redis before we parse the next batch
            await self._settle()
        finally:
            watchdog.cancel()
            for client in (self._consumer, self._producer):
                try:  # leaving the group needs Kafka; stopping without it is still a stop
                    await asyncio.wait_for(client.stop(), 3)
                except (KafkaError, OSError, TimeoutError) as exc:
                    log.warning("closed the Kafka %s without the broker (%s)",
                                type(client).__name__, exc)
                except asyncio.CancelledError:
                    # aiokafka's fetcher re-raises the cancellation of its own fetch task
                    # when it closes mid-retry; only a cancellation of ours goes on.
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise

    async def _prepare(self, records: list[Any]) -> PreparedBatch:
        """Parse a batch in slices, yielding in between, so that the batch in flight gets
        all of its request out to Redis, and its answer read, while this one is parsed."""
        batch = PreparedBatch()
        wall_now_ms = int(time.time() * 1000)
        for start in range(0, len(records), PARSE_SLICE):
            add(batch, records[start:start + PARSE_SLICE], self.known_queues, wall_now_ms)
            await asyncio.sleep(0)
        batch.write.encoded()
        return batch

    async def _settle(self) -> None:
        """Wait for the batch in flight (applied, counted and committed)."""
        if self._inflight is not None:
            task, self._inflight = self._inflight, None
            await task

    async def _apply(self, batch: PreparedBatch, stop: asyncio.Event) -> None:
        await self._dead_letter(batch)
        rules = self._rules_for(batch)
        while True:
            try:
                now_ms = int(time.time() * 1000)
                queue_results, agent_results = await self.store.apply(
                    batch.write, rules, self.topic, now_ms)
                break
            except (RedisError, OSError) as exc:
                self.health.redis_ok = False
                self.redis_outage.failed(exc)
                if stop.is_set():
                    return  # neither applied nor committed: the next owner reads it again
                await self.redis_outage.backoff()
        if self.redis_outage.recovered():
            self.known_queues.clear()  # re-register queues in case Redis lost them
        self.health.redis_ok = True
        self._count(batch, queue_results, agent_results)
        await self._commit(batch)

    def _rules_for(self, batch: PreparedBatch) -> dict[str, QueueRules]:
        for queue_id in batch.write.queues:
            if queue_id not in self.rules:
                policy = self.policy.for_queue(queue_id)
                self.rules[queue_id] = QueueRules(
                    sla_ms=round(policy.sla_seconds * 1000),
                    short_ms=round(policy.short_abandon_seconds * 1000))
        return self.rules

    def _count(self, batch: PreparedBatch, queue_results: dict[str, str],
               agent_results: str) -> None:
        for (event_type, result), n in count_results(batch, queue_results, agent_results).items():
            self.metrics.events.labels(event_type, result).inc(n)
        self.metrics.delay.observe_batch(time.time() * 1000,
                                         [ts for _type, _shard, _index, ts in batch.applied_refs])

    async def _dead_letter(self, batch: PreparedBatch) -> None:
        """Copy rejected messages, unchanged, to the DLQ with the reason and source.

        Redis records the last dead-lettered offset per partition with the batch, so a
        redelivered bad message is not sent twice.
        """
        sends = []
        for dead in batch.dead_letters:
            record = dead.record
            if record.offset <= self._dead_lettered.get(record.partition, -1):
                continue
            headers = list(record.headers or ()) + [
                ("callstream-error", dead.rejection.reason.encode()),
                ("callstream-source", dead.source.encode()),
            ]
            log.warning("dead-lettered %s: %s (%s)", dead.source, dead.rejection.reason,
                        dead.rejection.detail)
            sends.append((record, headers))
            batch.write.dead_lettered[record.partition] = record.offset
        while sends:
            try:
                await asyncio.gather(*[
                    await self._producer.send(self.settings.topic_dlq, value=record.value,
                                              key=record.key, headers=headers)
                    for record, headers in sends])
                self.kafka_outage.recovered()
                break
            except KafkaError as exc:  # sent again whole: a dead letter may repeat, never miss
                self.kafka_outage.failed(exc)
                await self.kafka_outage.backoff()
        self._dead_lettered |= batch.write.dead_lettered

    async def _commit(self, batch: PreparedBatch) -> None:
        offsets = {TopicPartition(self.topic, p): o for p, o in batch.commit_offsets.items()
                   if TopicPartition(self.topic, p) in self._assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Safe to skip: Redis recorded the offsets, a redelivery is skipped exactly.
            log.info("commit skipped (%s); Redis holds the applied offsets", exc)

    def _record_lag(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in fetched.items():
            self._positions[tp] = records[-1].offset + 1
        for tp, position in self._positions.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, highwater - position))

    async def _watch_kafka(self, stop: asyncio.Event) -> None:
        """Kafka reachability for /readyz: a metadata request every second."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._consumer._client.fetch_all_metadata(), 2)
                self.health.kafka_ok = True
                self.kafka_outage.recovered()
            except (KafkaError, OSError, TimeoutError) as exc:
                self.health.kafka_ok = False
                self.kafka_outage.failed(exc)
            await asyncio.sleep(1)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (apply and commit) the batch in flight before the partitions go."""
        self.health.assigned = False
        await self._settle()
        self._assigned -= revoked
        for tp in revoked:
            if self._positions.pop(tp, None) is not None:
                self.metrics.lag.remove(str(tp.partition))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek each partition to where Redis and Kafka agree it was applied.

        The partitions stay paused until then: records fetched from aiokafka's own
        starting point are dropped, never applied.
        """
        self._consumer.pause(*assigned)
        checkpoints = await self._retry_redis(lambda: self.store.checkpoints(self.topic))
        self._dead_lettered |= await self._retry_redis(
            lambda: self.store.dead_lettered(self.topic))
        fresh = []
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            applied = checkpoints.get(tp.partition)
            candidates = [o for o in (committed, None if applied is None else applied + 1)
                          if o is not None]
            if candidates:
                self._consumer.seek(tp, min(candidates))
            else:
                fresh.append(tp)
        for tp, offset in (await self._start_offsets(fresh)).items():
            self._consumer.seek(tp, offset)
        for tp in assigned:  # a fetch position on every partition before /readyz says so
            self._positions[tp] = await self._consumer.position(tp)
        self._assigned |= assigned
        self._consumer.resume(*assigned)
        self.health.assigned = True

    async def _start_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where a group with no committed offset begins (``CALLSTREAM_KAFKA_START``)."""
        if not tps:
            return {}
        if self.settings.kafka_start == "earliest":
            return dict(await self._consumer.beginning_offsets(tps))
        ends = await end_offsets(self.settings, tps)
        if self.settings.kafka_start == "latest":
            return ends
        since_ms = int(time.time() * 1000) - max(self.settings.window_seconds) * 1000
        found = await self._consumer.offsets_for_times({tp: since_ms for tp in tps})
        # No message that new, or tansu's "offset 0, timestamp -1": start at the end.
        return {tp: ends[tp] if found.get(tp) is None or found[tp].timestamp < 0
                else found[tp].offset for tp in tps}

    async def _retry_redis(self, call: Any) -> Any:
        while True:
            try:
                result = await call()
                self.redis_outage.recovered()
                return result
            except (RedisError, OSError) as exc:
                self.redis_outage.failed(exc)
                self.health.redis_ok = False
                await self.redis_outage.backoff()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.consumer.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.consumer.on_assigned(set(assigned))
