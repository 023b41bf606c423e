"""The steps that take a consumed batch to committed, in the one order that is safe.

1. admit the batch's new queues and agents under their bounds (refused: dead letters);
2. copy the dead letters to the DLQ and wait for the broker's acknowledgement;
3. apply the batch to the state (a message the state cannot take is dead-lettered first);
4. hand what legs with a caller did to the callers' keys (journeys, missed-call offers);
5. then, side by side (one round trip's wait): take it out of the queues' outboxes, run
   the batch hooks (callback attempts), and record in Redis the batch's last offsets and
   the last dead-lettered ones;
6. commit the offsets to Kafka.

Steps 1-3 (:meth:`Checkpoint.apply`) and 4-5 (:meth:`Checkpoint.finish`) are separate
calls, so that the consumer can apply the next batch's state while this one's facts are
relayed; each call is made for the batches in their order. The parts of step 5 need no
order among them: each is idempotent, and Kafka's commit waits for all of them (facts
left in an outbox by a crash are relayed again by the janitor, to the same effect).

Every step can be run again after a failure: the state skips what it applied, and a
dead letter already sent (by this instance, or as Redis recorded it) is not sent again.
Kafka's commit is last, and Redis holds the applied offsets whatever happens to it.

The queues keep the facts taken lately (``RELAYED_KEEP_MS``): after Redis went back, they
go to every handler again (:meth:`Checkpoint.relay_again`) before any batch goes on, for
a server holding callers' keys (another Cluster node than their queues') may have lost
what step 4 wrote there, and reading Kafka again would not bring those facts back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.ingest.batching import DeadLetter, PreparedBatch
from stream.outage import Outage
from stream.state.rows import CallerFact, StateBatch
from stream.state.store import QueueRules, RedisWentBack, StateStore

log = logging.getLogger(__name__)
#: A dead letter the broker refuses for good (too large) is sent as its first bytes.
TRUNCATED_BYTES = 64 * 1024


class FactHandler(Protocol):
    """Takes caller facts into the callers' own keys, idempotently by each fact's token:
    the same fact may come again (a retry, a relay of leftovers after a crash)."""

    async def take(self, facts: list[CallerFact], now_ms: int) -> None: ...

    async def take_again(self, facts: list[CallerFact], now_ms: int) -> None:
        """Facts taken before, again, after Redis may have lost some of what taking them
        wrote: that is written again, and nothing decided anew."""


class BatchHook(Protocol):
    """Acts on a batch's events once the state holds them; runs on every delivery of the
    batch (a redelivery too), so it must be idempotent per event."""

    async def after_apply(self, batch: StateBatch, now_ms: int) -> None: ...


class Stopped(Exception):
    """``stop`` was set while a step waited on Kafka: the batch is left uncommitted."""


class Checkpoint:
    """Owns the order of a batch's steps for one consumer of one topic."""

    def __init__(self, topic: str, dlq_topic: str, store: StateStore,
                 producer: AIOKafkaProducer, kafka_outage: Outage,
                 commit: Callable[[dict[int, int]], Awaitable[None]],
                 handlers: Sequence[FactHandler] = (), hooks: Sequence[BatchHook] = ()
                 ) -> None:
        self.topic, self.dlq_topic = topic, dlq_topic
        self.store = store
        self.producer = producer
        self.kafka_outage = kafka_outage
        self._commit = commit
        self.handlers = list(handlers)
        self.hooks = list(hooks)
        #: partition -> last offset copied to the DLQ (from Redis, then this instance's)
        self.dead_lettered: dict[int, int] = {}

    async def apply(self, batch: PreparedBatch, rules: dict[str, QueueRules],
                    stop: asyncio.Event) -> list[str | None]:
        """Steps 1-3; Redis errors propagate (the caller retries the whole call), and so
        does :class:`~stream.state.store.RedisWentBack`."""
        now_ms = int(time.time() * 1000)
        refused_queues, refused_agents = await self.store.admit(batch.state, now_ms)
        batch.refused_queues = refused_queues
        if refused_queues:
            batch.refuse(batch.state.messages_naming(refused_queues, set()),
                         "too_many_queues", "CALLSTREAM_MAX_QUEUES queues are tracked already")
        if refused_agents:
            batch.refuse(batch.state.messages_naming(set(), refused_agents),
                         "too_many_agents", "CALLSTREAM_MAX_AGENTS agents are tracked already")
        await self._send(batch.dead_letters, stop)

        async def on_failed(failed: list[tuple[int, str]]) -> None:
            for index, why in failed:
                letters = batch.refuse([index], "apply_failed", why)
                await self._send(letters, stop)

        try:
            return await self.store.apply(batch.state, rules, now_ms, on_failed)
        except RedisWentBack:
            # The shards that did apply kept their facts: hand them on now, not later (or,
            # should Redis fail again meanwhile, by the janitor); what Redis lost must be
            # read again whatever happens here.
            with contextlib.suppress(RedisError, OSError):
                await relay(self.store, self.handlers, batch.state.caller_facts, now_ms)
            raise

    async def finish(self, batch: PreparedBatch) -> None:
        """Steps 4-5, once :meth:`apply` returned for the batch; Redis errors propagate
        (the caller calls it again: every step is idempotent)."""
        now_ms = int(time.time() * 1000)
        facts = batch.state.caller_facts
        await hand_over(self.handlers, facts, now_ms)
        sent = {p: o for p, o in self.dead_lettered.items()
                if any(d.record.partition == p for d in batch.dead_letters)}
        steps = [hook.after_apply(batch.state, now_ms) for hook in self.hooks]
        if facts:
            steps.append(self.store.drop_caller_facts(facts))
        steps.append(self.store.save_positions(
            self.topic, batch.last_offsets, sent,
            batch.state.queue_ids - batch.refused_queues, now_ms))
        await _all(steps)

    async def relay_again(self) -> None:
        """After Redis went back: the facts taken lately to every handler again, then the
        facts still in the outboxes (of the batches left alone), the older first. Redis
        errors propagate (the caller calls it again: every step is idempotent)."""
        if not self.handlers:
            return
        now_ms = int(time.time() * 1000)
        queue_ids = await self.store.queue_ids()
        taken = await self.store.relayed_caller_facts(queue_ids)
        if taken:
            log.info("taking again the %d caller facts taken lately: a server holding "
                     "callers' keys may have lost what they wrote there", len(taken))
            await _all([handler.take_again(taken, now_ms) for handler in self.handlers])
        await relay(self.store, self.handlers, await self.store.pending_caller_facts(queue_ids),
                    now_ms)

    async def commit(self, batch: PreparedBatch) -> None:
        """Step 6, once the state holds the batch: Kafka's committed offsets."""
        await self._commit({p: o + 1 for p, o in batch.last_offsets.items()})

    async def _send(self, letters: list[DeadLetter], stop: asyncio.Event) -> None:
        """Copy rejected messages, unchanged, to the DLQ with the reason and the source;
        each at most once per offset (a crash between the broker's acknowledgement and
        Redis's record of it may repeat one, never lose one)."""
        todo = [d for d in letters
                if d.record.offset > self.dead_lettered.get(d.record.partition, -1)]
        if todo:
            reasons = Counter(d.rejection.reason for d in todo)
            first = todo[0]
            log.warning("dead-lettering %d message(s): %s; first %s: %s", len(todo),
                        ", ".join(f"{n} {r}" for r, n in reasons.most_common()),
                        first.source, first.rejection.detail)
        while todo:
            results = await asyncio.gather(*(self._send_one(d) for d in todo),
                                           return_exceptions=True)
            retry = []
            for dead, result in zip(todo, results, strict=True):
                if isinstance(result, KafkaError) and result.retriable:
                    retry.append(dead)
                elif isinstance(result, BaseException):
                    await self._send_truncated(dead, result)
            todo = retry
            if todo:
                self.kafka_outage.failed(KafkaError(f"{len(todo)} dead letter(s) not sent"))
                if stop.is_set():
                    raise Stopped
                await self.kafka_outage.backoff(stop)
        for dead in letters:
            partition = dead.record.partition
            self.dead_lettered[partition] = max(self.dead_lettered.get(partition, -1),
                                                dead.record.offset)

    def _send_one(self, dead: DeadLetter, value: bytes | None = None,
                  extra: list[tuple[str, bytes]] | None = None
                  ) -> Coroutine[Any, Any, Any]:
        record = dead.record
        headers = list(record.headers or ()) + [
            ("callstream-error", dead.rejection.reason.encode()),
            ("callstream-source", dead.source.encode()),
        ] + (extra or [])
        send: Callable[..., Coroutine[Any, Any, Any]] = self.producer.send_and_wait
        return send(self.dlq_topic, value=record.value if value is None else value,
                    key=record.key, headers=headers)

    async def _send_truncated(self, dead: DeadLetter, error: BaseException) -> None:
        """The broker refuses the copy for good (too large): send its first bytes, with a
        header that says so, rather than stop the pipeline."""
        size = len(dead.record.value or b"")
        log.error("dead letter %s refused by the broker (%s); sending its first %d of %d "
                  "bytes", dead.source, error, TRUNCATED_BYTES, size)
        try:
            await self._send_one(dead, (dead.record.value or b"")[:TRUNCATED_BYTES],
                                 [("callstream-truncated", str(size).encode())])
        except KafkaError as exc:
            log.error("dead letter %s could not be sent at all (%s)", dead.source, exc)


async def relay(store: StateStore, handlers: Sequence[FactHandler], facts: list[CallerFact],
                now_ms: int) -> None:
    """Hand caller facts to every handler, then take them out of the queues' outboxes."""
    if facts:
        await hand_over(handlers, facts, now_ms)
        await store.drop_caller_facts(facts)


async def hand_over(handlers: Sequence[FactHandler], facts: list[CallerFact],
                    now_ms: int) -> None:
    """Hand caller facts to every handler. The handlers write keys of their own, so they
    run side by side: one's Redis work overlaps another's Python work. Should any fail,
    the facts stay in the outboxes."""
    if facts:
        await _all([handler.take(facts, now_ms) for handler in handlers])


async def _all(steps: list[Coroutine[Any, Any, Any]]) -> None:
    """Run the steps side by side until every one has ended; then raise the first
    failure, if any (none is left running on its own)."""
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
