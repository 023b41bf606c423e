"""Turn a batch of Kafka records into one state write, and its results into counts.

Pure: no I/O. The consumer parses batch N+1 here while Redis applies batch N.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from .events import AgentStateChanged, CallQueued, CallTransferred, Event, Rejection, parse
from .state.store import BatchWrite

_KIND = {
    "call.queued": "Q",
    "call.answered": "A",
    "call.abandoned": "B",
    "call.callback_accepted": "C",
    "call.callback_attempt": "K",
    "call.transferred": "T",
    "call.ended": "E",
}
RESULT_NAMES = {"a": "applied", "d": "duplicate", "c": "conflict", "o": "orphan"}


class Record(Protocol):
    """What the batch needs of an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message to copy, unchanged, to the dead-letter topic."""

    record: Record
    rejection: Rejection

    @property
    def source(self) -> str:
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"


@dataclass
class PreparedBatch:
    """A parsed batch: the state write, its dead letters, and how to read its results."""

    write: BatchWrite = field(default_factory=BatchWrite)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: (event type, shard: queue id or "" for agents, row index, event ts in ms)
    applied_refs: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: partition -> next offset to commit
    commit_offsets: dict[int, int] = field(default_factory=dict)
    size: int = 0


def prepare(records: list[Record], known_queues: set[str], wall_now_ms: int) -> PreparedBatch:
    """Parse and route records (all from one topic) in consumption order."""
    batch = PreparedBatch()
    add(batch, records, known_queues, wall_now_ms)
    batch.write.encoded()
    return batch


def add(batch: PreparedBatch, records: list[Record], known_queues: set[str],
        wall_now_ms: int) -> None:
    """Parse and route more records into ``batch``; a batch can be built a slice at a
    time, so the event loop can serve other work in between."""
    write = batch.write
    newest = write.newest_ts_ms
    batch.size += len(records)
    for record in records:
        batch.commit_offsets[record.partition] = record.offset + 1
        write.checkpoint[record.partition] = record.offset
        event = parse(record.value, wall_now_ms)
        if isinstance(event, Rejection):
            batch.dead_letters.append(DeadLetter(record, event))
            continue
        if newest is None or event.ts > newest:
            newest = event.ts
        _route(event, record, write, known_queues, batch.applied_refs)
    write.newest_ts_ms = newest


def _route(event: Event, record: Record, write: BatchWrite, known: set[str],
           refs: list[tuple[str, str, int, int]]) -> None:
    head = [record.partition, record.offset, event.event_id]
    if isinstance(event, AgentStateChanged):
        for queue_id in event.queues:
            _see(queue_id, known, write)
        refs.append((event.type, "", len(write.agent_rows), event.ts))
        write.agent_rows.append(
            head + [event.agent_id, event.ts, f"{event.state}|{','.join(event.queues)}"]
        )
        return
    caller = event.caller if isinstance(event, CallQueued) else None
    priority = event.priority if isinstance(event, CallQueued) else None
    rows = write.queue(event.queue_id).rows
    _see(event.queue_id, known, write)
    refs.append((event.type, event.queue_id, len(rows), event.ts))
    rows.append(head + [_KIND[event.type], event.call_id, event.ts, caller, priority])
    if isinstance(event, CallTransferred):
        _see(event.to_queue_id, known, write)
        write.queue(event.to_queue_id).rows.append(
            head + ["I", event.call_id, event.ts, None, None]
        )


def _see(queue_id: str, known: set[str], write: BatchWrite) -> None:
    if queue_id not in known:
        known.add(queue_id)
        write.new_queues.add(queue_id)


def count_results(batch: PreparedBatch, queue_results: dict[str, str], agent_results: str
                  ) -> Counter[tuple[str, str]]:
    """(type, result) -> messages, one result per consumed message."""
    counts: Counter[tuple[str, str]] = Counter()
    for event_type, shard, index, _ts in batch.applied_refs:
        letters = queue_results[shard] if shard else agent_results
        counts[(event_type, RESULT_NAMES[letters[index]])] += 1
    for dead in batch.dead_letters:
        counts[(dead.rejection.event_type, "rejected")] += 1
    return counts
