"""One batch of events on its way into the state: the only place that knows the rows the
Lua scripts take.

Callers add events with their Kafka position; the store applies the batch and answers one
result per message. A message can be dropped before it is applied (its queue or agent
refused, or applying it failed): its rows are then left out of every script call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..events import (
    AgentStateChanged,
    CallAnswered,
    CallbackAttempt,
    CallEnded,
    CallQueued,
    CallTransferred,
    Event,
)

#: Shard of the agent rows; queue shards are queue ids, which are never empty.
AGENTS = ""
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
_WITH_AGENT = (CallAnswered, CallEnded, CallTransferred)


class Position(NamedTuple):
    """Where a message was read: its offsets are kept per source in the state. (Tuples:
    one is made per event, and a frozen dataclass takes three times as long.)"""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


class CallerFact(NamedTuple):
    """What a leg with a caller did (contract §2 journeys, §3 missed calls): taken from
    the queue's outbox by the caller's own keys, and idempotent there by ``token``."""

    queue_id: str
    token: str
    what: str  # queued, answered, abandoned, accepted, reached (a callback answered)
    call_id: str
    ts_ms: int
    caller: str
    wait_ms: int | None
    #: the outbox entry holding it (the facts of one script call share one)
    box: str

    @classmethod
    def boxed(cls, queue_id: str, raw: list[list[Any]]) -> list[CallerFact]:
        """The facts of one outbox entry (a JSON list of facts; its box: the first's token)."""
        box = raw[0][0]
        make = cls._make  # no argument parsing: a batch has thousands of facts
        return [make((queue_id, token, what, call_id, int(ts), caller,
                      None if wait is None else int(wait), box))
                for token, what, call_id, ts, caller, wait in raw]


@dataclass(slots=True)
class Message:
    """An event of the batch, and where its rows went (its first row gives its result)."""

    position: Position
    event: Event
    rows: list[tuple[str, int]] = field(default_factory=list)


class StateBatch:
    """Events routed to per-queue rows (and agent rows), in consumption order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._rows: dict[str, list[tuple[int, list[Any]]]] = {}
        self._dropped: set[int] = set()
        self._encoded: dict[str, str] | None = None
        self.newest_ts_ms: int | None = None
        #: shard -> the result letters of its applied rows (kept across retries)
        self.letters: dict[str, str] = {}
        #: what legs with a caller did, in the order the scripts applied them
        self.caller_facts: list[CallerFact] = []
        #: every queue the batch's messages name (transfer targets and agents' queues too)
        self.queue_ids: set[str] = set()
        self.agent_ids: set[str] = set()
        #: topic, partition and source of the last event added (a batch comes in runs of
        #: one partition's records)
        self._source: tuple[str, int, str] = ("", -1, "")
        #: shard -> source -> the offset of its last row (the highest: offsets only grow)
        self._highest: dict[str, dict[str, int]] = {}

    def add(self, position: Position, event: Event) -> None:
        """Route one valid event; its rows keep the order of the calls to ``add``. (This
        runs for every event: no isinstance on pydantic models, no ``cast`` calls.)"""
        index = len(self.messages)
        message = Message(position, event, [])
        self.messages.append(message)
        ts = event.ts
        if self.newest_ts_ms is None or ts > self.newest_ts_ms:
            self.newest_ts_ms = ts
        source = self._source
        if position[1] != source[1] or position[0] != source[0]:  # a new partition
            source = self._source = (position[0], position[1], position.source)
        offset = position[2]
        e: Any = event
        cls = type(event)
        if cls is AgentStateChanged:
            self.agent_ids.add(e.agent_id)
            self.queue_ids.update(e.queues)
            self._row(message, index, AGENTS, [
                source[2], offset, e.event_id, e.agent_id, ts,
                f"{e.state}|{','.join(e.queues)}|{ts}"])
            return
        caller = priority = agent = None
        if cls is CallQueued:
            caller, priority = e.caller, e.priority
        elif cls in _WITH_AGENT:
            agent = e.agent_id
        row = [source[2], offset, "E" + e.event_id, _KIND[e.type], e.call_id, ts,
               caller, priority, agent]
        if cls is CallbackAttempt:
            row.append(e.result)  # answered: reached the caller
        self._row(message, index, e.queue_id, row)
        if cls is CallTransferred:
            # Its own token: a transfer back into the same queue opens a new leg there.
            self._row(message, index, e.to_queue_id, [
                source[2], offset, "I" + e.event_id, "I", e.call_id, ts, None, None, None])

    def _row(self, message: Message, index: int, shard: str, row: list[Any]) -> None:
        rows = self._rows.get(shard)
        if rows is None:
            rows = self._rows[shard] = []
            if shard != AGENTS:
                self.queue_ids.add(shard)
        message.rows.append((shard, len(rows)))
        rows.append((index, row))
        highest = self._highest.get(shard)
        if highest is None:
            highest = self._highest[shard] = {}
        highest[row[0]] = row[1]
        self._encoded = None

    def messages_naming(self, queue_ids: set[str], agent_ids: set[str]) -> list[int]:
        """Indexes of the messages with a row in one of these queues, or for these agents."""
        def names(message: Message) -> bool:
            event = message.event
            if isinstance(event, AgentStateChanged):
                return event.agent_id in agent_ids or not queue_ids.isdisjoint(event.queues)
            return any(shard in queue_ids for shard, _ in message.rows)

        return [i for i, m in enumerate(self.messages) if names(m)]

    def drop(self, indexes: list[int]) -> None:
        """Leave these messages out of the state: their rows are not sent."""
        self._dropped.update(indexes)
        self._encoded = None

    def is_dropped(self, index: int) -> bool:
        return index in self._dropped

    def live_rows(self, shard: str) -> list[tuple[int, list[Any]]]:
        rows = self._rows.get(shard, [])
        if not self._dropped:
            return rows
        return [(i, row) for i, row in rows if i not in self._dropped]

    def shards(self) -> list[str]:
        """Shards with rows still to apply, queues first, agents last."""
        return sorted((s for s in self._rows if self.live_rows(s)), key=lambda s: s == AGENTS)

    def encoded(self) -> dict[str, str]:
        """Each shard's live rows as the scripts take them (JSON), encoded once: a retry
        reuses them, and the consumer encodes while Redis still applies the batch before."""
        if self._encoded is None:
            self._encoded = {shard: json.dumps([row for _, row in self.live_rows(shard)])
                             for shard in self.shards()}
        return self._encoded

    def highest_offsets(self, shard: str) -> dict[str, int]:
        """source -> the highest offset of the shard's live rows."""
        if not self._dropped:  # rows come in offset order per source: kept as added
            return self._highest.get(shard, {})
        highest: dict[str, int] = {}
        for _, row in self.live_rows(shard):
            source, offset = row[0], row[1]
            if offset > highest.get(source, -1):
                highest[source] = offset
        return highest

    def message_of_row(self, shard: str, live_index: int) -> int:
        """The message of the shard's ``live_index``-th live row."""
        return self.live_rows(shard)[live_index][0]

    def results(self, letters: dict[str, str]) -> list[str | None]:
        """Each message's result name from the scripts' letters (None: dropped)."""
        live_index = self._live_indexes(letters) if self._dropped else None
        names: list[str | None] = []
        for i, message in enumerate(self.messages):
            if i in self._dropped:
                names.append(None)
                continue
            shard, row_index = message.rows[0]
            if live_index is not None:
                row_index = live_index[(shard, row_index)]
            names.append(RESULT_NAMES[letters[shard][row_index]])
        return names

    def _live_indexes(self, shards: dict[str, str]) -> dict[tuple[str, int], int]:
        """(shard, row index) -> the row's index among the shard's live rows."""
        position: dict[tuple[str, int], int] = {}
        for shard in shards:
            live = 0
            for row_index, (i, _) in enumerate(self._rows.get(shard, ())):
                if i not in self._dropped:
                    position[(shard, row_index)] = live
                    live += 1
        return position
