"""Turn a batch of Kafka records into a state batch, its dead letters and its counts.

Pure: no I/O. The consumer parses batch N+1 here while Redis applies batch N.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.parse.events import Rejection, parse
from stream.state.rows import StateBatch

#: An event older than this (by the wall clock) is past every window and the dedup
#: horizon: counted as stale, applied to nothing (contract §1 "Too old").
STALE_AFTER_MS = 24 * 3600 * 1000


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
    """A parsed batch: the state batch, its dead letters, and what to count and commit."""

    state: StateBatch = field(default_factory=StateBatch)
    #: the record of each of ``state``'s messages, by message index
    records: list[Record] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: event types of the stale messages
    stale: list[str] = field(default_factory=list)
    #: partition -> last offset of the batch
    last_offsets: dict[int, int] = field(default_factory=dict)
    size: int = 0
    #: the queues refused admission (under CALLSTREAM_MAX_QUEUES): not marked as seen
    refused_queues: set[str] = field(default_factory=set)

    def refuse(self, indexes: list[int], reason: str, detail: str) -> list[DeadLetter]:
        """Take messages out of the state batch and onto the dead-letter list."""
        self.state.drop(indexes)
        letters = [DeadLetter(self.records[i], Rejection(reason, detail,
                                                         self.state.events[i].type))
                   for i in indexes]
        self.dead_letters.extend(letters)
        return letters

    def counts(self, results: list[str | None]) -> Counter[tuple[str, str]]:
        """(type, result) -> messages: exactly one result per consumed message."""
        every: Counter[tuple[str, str | None]] = Counter(zip(
            [e.type for e in self.state.events], results, strict=True))
        counted: Counter[tuple[str, str]] = Counter(
            {(t, r): n for (t, r), n in every.items() if r is not None})  # None: dead letter
        for event_type in self.stale:
            counted[(event_type, "stale")] += 1
        for dead in self.dead_letters:
            counted[(dead.rejection.event_type, "rejected")] += 1
        return counted


def add(batch: PreparedBatch, records: list[Record], wall_now_ms: int,
        event_clock: bool) -> None:
    """Parse and route more records into ``batch`` in consumption order; a batch can be
    built a slice at a time, so the event loop can serve other work in between. With the
    event clock (replays of history) nothing is too old."""
    batch.size += len(records)
    oldest_ms = None if event_clock else wall_now_ms - STALE_AFTER_MS
    last_offsets, kept, state = batch.last_offsets, batch.records, batch.state
    for record in records:
        partition, offset = record.partition, record.offset
        last_offsets[partition] = offset
        event = parse(record.value, wall_now_ms)
        if isinstance(event, Rejection):
            batch.dead_letters.append(DeadLetter(record, event))
        elif oldest_ms is not None and event.ts < oldest_ms:
            batch.stale.append(event.type)
        else:
            kept.append(record)
            state.add(record.topic, partition, offset, event)
