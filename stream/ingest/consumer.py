"""The Kafka consumer loop: batches, atomic apply, commits, rebalances, rewinds.

Three batches are at work at once: one is fetched and parsed while the one before has its
state applied in Redis, and the one before that has its caller facts relayed, its offsets
recorded and committed. A batch's state step goes to Redis the moment the one before is
applied, ahead of that one's relay: Redis is never left waiting for the relay's Python.
The steps of a batch, and their order, belong to :class:`~stream.ingest.checkpoint.Checkpoint`.
Redis records the offsets it applied with the state they produced, so a redelivery after
any crash is skipped exactly, and the resume point of a partition is the lower of Kafka's
committed offset and Redis's checkpoint. A Redis that comes back without writes it had
acknowledged is noticed (its run id changed, or a script finds its offsets behind what
this instance wrote there) and what it lost is read again; no batch is applied past the
gap before then, and the caller facts taken lately are taken again first (what a server
holding callers' keys lost of them is not in Kafka's offsets).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.config import Policy, Settings
from stream.health import Health
from stream.ingest.batching import PreparedBatch, add
from stream.ingest.checkpoint import BatchHook, Checkpoint, FactHandler, Stopped
from stream.ingest.kafka import client_options, end_offsets, make_producer
from stream.ingest.observer import PipelineObserver
from stream.outage import Outage
from stream.state.store import QueueRules, RedisWentBack, StateStore

log = logging.getLogger(__name__)
#: A batch whose state is applied, and each of its messages' results.
Applied = tuple[PreparedBatch, list[str | None]]
#: Records parsed between two yields to the event loop.
PARSE_SLICE = 500
#: How long the broker may hold a fetch open waiting for data: bounds the latency.
FETCH_MAX_WAIT_MS = 50
#: How often the Redis run id is compared with the one the state was written to.
WATCH_SECONDS = 1.0
#: How often a batch that failed looks whether the run ids were compared since.
SEEN_POLL_SECONDS = 0.05
#: Dead letters are copied whole: as large as anything the consumer can fetch.
DLQ_MAX_REQUEST_BYTES = 8 * 1024 * 1024
#: Objects a young-generation collection waits for (allocations less deallocations). A
#: batch of 10,000 events keeps some ten objects per event until it is committed, and
#: three batches are in flight: below that, the collector walks every batch again and
#: again (Python's default 700: a quarter of the CPU per event; 50,000: a tenth).
GC_THRESHOLDS = (200_000, 20, 100)


class Consumer:
    """Consumes the events topic into the state store, exactly once per event."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore,
                 observer: PipelineObserver, health: Health,
                 handlers: Sequence[FactHandler] = (), hooks: Sequence[BatchHook] = ()
                 ) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.observer = observer
        self.health = health
        self.topic = settings.topic_events
        self.rules: dict[str, QueueRules] = {}
        self.redis_outage = Outage("Redis", "CALLSTREAM_REDIS_URL", log)
        self.kafka_outage = Outage("Kafka", "CALLSTREAM_KAFKA_BOOTSTRAP", log)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.kafka_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=DLQ_MAX_REQUEST_BYTES,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._producer = make_producer(settings, max_request_size=DLQ_MAX_REQUEST_BYTES)
        self.checkpoint = Checkpoint(self.topic, settings.topic_dlq, store, self._producer,
                                     self.kafka_outage, self._commit, handlers, hooks)
        #: the newest batch's state step: the batch and its results once applied
        self._inflight: asyncio.Task[Applied | None] | None = None
        #: the batch before: its facts relayed, its offsets recorded and committed
        self._finishing: asyncio.Task[None] | None = None
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        #: partition -> the last offset of the last batch applied whole by this instance
        self._applied: dict[int, int] = {}
        #: partition -> where this instance began reading it
        self._origin: dict[int, int] = {}
        #: source -> offset to read again from; set when Redis went back
        self._rewind: dict[str, int] | None = None
        self._server_ids: frozenset[str] | None = None
        #: messages behind the end of the assigned partitions, at the last fetch
        self._lag = 0
        #: set by :meth:`run`'s caller to stop (a rebalance's settling gives up with it)
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the batch in flight and commit."""
        self._stop = stop
        gc.freeze()  # what exists by now lives as long as the process: never walk it again
        gc.set_threshold(*GC_THRESHOLDS)
        await self._producer.start()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        await self._consumer.start()
        watchers = [asyncio.create_task(self._watch_redis(stop))]
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
                if records:
                    self.health.waiting(len(records) + self._lag)
                prepared = await self._prepare(records) if records else None
                applied = await self._settle_state()
                if not records:
                    self.health.progressed(waiting=self._lag)
                if self._rewind is not None:
                    await self._settle(stop)
                    self._seek_back()  # the batch just parsed is read again
                    self.store.rewound()
                    await self._relay_again(stop)
                    continue
                if prepared is not None:
                    self._inflight = asyncio.create_task(self._apply(prepared, stop))
                    await asyncio.sleep(0)  # let it reach Redis before the relay's Python
                if applied is not None:
                    await self._hand_on(applied, stop)
            await self._settle(stop)
        finally:
            for watcher in watchers:
                watcher.cancel()
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
        event_clock = self.settings.event_clock
        for start in range(0, len(records), PARSE_SLICE):
            add(batch, records[start:start + PARSE_SLICE], wall_now_ms, event_clock)
            await asyncio.sleep(0)
        batch.state.encoded()
        return batch

    async def _settle_state(self) -> Applied | None:
        """Wait for the state step of the batch in flight; the batch if it was applied."""
        if self._inflight is None:
            return None
        task, self._inflight = self._inflight, None
        return await task

    async def _hand_on(self, applied: Applied, stop: asyncio.Event) -> None:
        """Once the batch before is finished, finish this one (in the background: the
        next batch's state is applied meanwhile)."""
        if self._finishing is not None:
            await self._finishing
        self._finishing = asyncio.create_task(self._finish(*applied, stop))

    async def _settle(self, stop: asyncio.Event) -> None:
        """Wait until every batch taken is applied, counted and committed."""
        applied = await self._settle_state()
        if applied is not None:
            await self._hand_on(applied, stop)
        if self._finishing is not None:
            task, self._finishing = self._finishing, None
            await task

    async def _apply(self, batch: PreparedBatch, stop: asyncio.Event) -> Applied | None:
        """The batch's state step; the batch and its results, or None when it was not
        applied (Redis went back, or ``stop`` came while it waited)."""
        rules = self._rules_for(batch)
        while True:
            try:
                return batch, await self.checkpoint.apply(batch, rules, stop)
            except RedisWentBack as exc:
                self._went_back(exc.resume)
                return None
            except Stopped:
                return None  # neither applied nor committed: the next owner reads it again
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                if stop.is_set():
                    return None
                await self.redis_outage.backoff()

    async def _finish(self, batch: PreparedBatch, results: list[str | None],
                      stop: asyncio.Event) -> None:
        """Relay the batch's facts, record its offsets in Redis, count it, commit it. A
        batch whose turn comes after Redis was found to have gone back is left alone: it
        is read again with what Redis lost, and its facts are in the outboxes if kept."""
        while self._rewind is None:
            try:
                await self.checkpoint.finish(batch)
                break
            except (RedisError, OSError) as exc:
                failed_ms = int(time.time() * 1000)
                self._redis_failed(exc)
                if stop.is_set():
                    return
                await self.redis_outage.backoff()
                await self._servers_seen_since(failed_ms, stop)
        else:
            return
        self.redis_outage.recovered()
        self.health.redis_ok = True
        self.observer.counted(batch.counts(results))
        self.observer.delayed(time.time() * 1000, [e.ts for e in batch.state.events])
        for partition, offset in batch.last_offsets.items():
            self._applied[partition] = offset
        await self.checkpoint.commit(batch)
        self.health.progressed(waiting=self._lag)

    async def _servers_seen_since(self, moment_ms: int, stop: asyncio.Event) -> None:
        """Wait until the run id watcher has found the servers unchanged since
        ``moment_ms``, or changed: a replica promoted while a batch's facts could not be
        taken is noticed before they are taken into it, on top of what it lacks."""
        while (self._rewind is None and not stop.is_set()
               and (self.store.servers_seen_ms or 0) < moment_ms):
            await asyncio.sleep(SEEN_POLL_SECONDS)

    async def _relay_again(self, stop: asyncio.Event) -> None:
        """Once read back to the gap, before any batch goes on: the caller facts taken
        lately, again (:meth:`~stream.ingest.checkpoint.Checkpoint.relay_again`)."""
        while not stop.is_set():
            try:
                await self.checkpoint.relay_again()
                return
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                await self.redis_outage.backoff(stop)

    def _redis_failed(self, exc: BaseException) -> None:
        self.health.redis_ok = False
        self.redis_outage.failed(exc)

    def _rules_for(self, batch: PreparedBatch) -> dict[str, QueueRules]:
        for queue_id in batch.state.queue_ids:
            if queue_id not in self.rules:
                policy = self.policy.for_queue(queue_id)
                self.rules[queue_id] = QueueRules(
                    sla_ms=round(policy.sla_seconds * 1000),
                    short_ms=round(policy.short_abandon_seconds * 1000),
                    callback_wait_ms=round(policy.callback_wait_seconds * 1000))
        return self.rules

    async def _commit(self, offsets: dict[int, int]) -> None:
        tps = {TopicPartition(self.topic, p): o for p, o in offsets.items()
               if TopicPartition(self.topic, p) in self._assigned}
        if not tps:
            return
        try:
            await self._consumer.commit(tps)
        except KafkaError as exc:
            # Safe to skip: Redis recorded the offsets, a redelivery is skipped exactly.
            log.info("commit skipped (%s); Redis holds the applied offsets", exc)

    # -- a Redis that went back ----------------------------------------------------------

    def _went_back(self, resume: dict[str, int]) -> None:
        log.error("Redis came back without writes it had acknowledged (a failover or a "
                  "crash of CALLSTREAM_REDIS_URL); reading them again from Kafka")
        merged = dict(self._rewind or {})
        for source, offset in resume.items():
            merged[source] = min(merged.get(source, offset), offset)
        self._rewind = merged

    def _seek_back(self) -> None:
        """Drop what was fetched and not applied, and read again from where the state is
        complete: the lost offsets, else the last batch applied whole here."""
        resume, self._rewind = self._rewind or {}, None
        for tp in self._assigned:
            candidates = [resume.get(f"{tp.topic}:{tp.partition}")]
            applied = self._applied.get(tp.partition)
            candidates.append(None if applied is None else applied + 1)
            known = [o for o in candidates if o is not None]
            offset = max(min(known), 0) if known else self._origin.get(tp.partition, 0)
            self._consumer.seek(tp, offset)
            # The state is complete up to here and no further: a second rewind before the
            # partition is read back (the run id watcher's, say) must not skip the gap.
            self._applied[tp.partition] = offset - 1
            log.info("partition %d: reading again from offset %d", tp.partition, offset)

    async def _watch_redis(self, stop: asyncio.Event) -> None:
        """A Redis whose run id changed (restarted, or a replica promoted) may have lost
        writes of shards that get no batch for a while: compare what it holds. While the
        run ids stay the same, the store learns when they were last seen so, and keeps
        the facts relayed up to ``RELAYED_KEEP_MS`` before then for a relay again."""
        while not stop.is_set():
            await asyncio.sleep(WATCH_SECONDS)
            try:
                asked_ms = int(time.time() * 1000)
                ids = await self.store.server_ids()
                if self._server_ids is not None and ids != self._server_ids:
                    log.warning("Redis run id changed (restart or failover): checking its "
                                "state against what this instance wrote")
                    await self._settle_quietly()
                    self._went_back(await self.store.lost_positions())
                else:
                    self.store.servers_seen_ms = asked_ms
                self._server_ids = ids
            except (RedisError, OSError):
                continue  # the apply loop reports the outage

    async def _settle_quietly(self) -> None:
        inflight = self._inflight
        if inflight is not None:
            await asyncio.wait([inflight])

    def _record_lag(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in fetched.items():
            self._positions[tp] = records[-1].offset + 1
        total = 0
        for tp, position in self._positions.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - position)
                self.observer.behind(tp.partition, lag)
                total += lag
        self._lag = total

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (apply and commit) the batch in flight before the partitions go."""
        self.health.assigned = False
        await self._settle(self._stop)
        self._assigned -= revoked
        for tp in revoked:
            self._applied.pop(tp.partition, None)
            self._origin.pop(tp.partition, None)
            if self._positions.pop(tp, None) is not None:
                self.observer.released(tp.partition)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek each partition to where Redis and Kafka agree it was applied.

        The partitions stay paused until then: records fetched from aiokafka's own
        starting point are dropped, never applied.
        """
        self._consumer.pause(*assigned)
        checkpoints = await self._retry_redis(lambda: self.store.checkpoints(self.topic))
        self.checkpoint.dead_lettered |= await self._retry_redis(
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
            self._positions[tp] = self._origin[tp.partition] = await self._consumer.position(tp)
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
