"""One batch of events on its way into the state: the only place that knows the rows the
Lua scripts take.

Callers add events with their Kafka position; the store applies the batch and answers one
result per message. A message can be dropped before it is applied (its queue or agent
refused, or applying it failed): its rows are then left out of every script call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..events import AgentStateChanged, CallbackAttempt, CallQueued, CallTransferred, Event

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


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message was read: its offsets are kept per source in the state."""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class CallerFact:
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
        return [cls(queue_id, token, what, call_id, int(ts), caller,
                    None if wait is None else int(wait), box)
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

    def add(self, position: Position, event: Event) -> None:
        """Route one valid event; its rows keep the order of the calls to ``add``."""
        index = len(self.messages)
        message = Message(position, event)
        self.messages.append(message)
        if self.newest_ts_ms is None or event.ts > self.newest_ts_ms:
            self.newest_ts_ms = event.ts
        head: list[Any] = [position.source, position.offset]
        if isinstance(event, AgentStateChanged):
            self._row(message, index, AGENTS, head + [
                event.event_id, event.agent_id, event.ts,
                f"{event.state}|{','.join(event.queues)}|{event.ts}"])
            return
        caller = event.caller if isinstance(event, CallQueued) else None
        priority = event.priority if isinstance(event, CallQueued) else None
        agent = getattr(event, "agent_id", None)
        row = head + ["E" + event.event_id, _KIND[event.type], event.call_id, event.ts, caller,
                      priority, agent]
        if isinstance(event, CallbackAttempt):
            row.append(event.result)  # an answered attempt reached the caller
        self._row(message, index, event.queue_id, row)
        if isinstance(event, CallTransferred):
            # Its own token: a transfer back into the same queue opens a new leg there.
            self._row(message, index, event.to_queue_id, head + [
                "I" + event.event_id, "I", event.call_id, event.ts, None, None, None])

    def _row(self, message: Message, index: int, shard: str, row: list[Any]) -> None:
        rows = self._rows.setdefault(shard, [])
        message.rows.append((shard, len(rows)))
        rows.append((index, row))
        self._encoded = None

    @property
    def queue_ids(self) -> set[str]:
        """Every queue the batch's messages name (transfer targets and agents' queues
        included)."""
        named = {shard for shard in self._rows if shard != AGENTS}
        for message in self.messages:
            if isinstance(message.event, AgentStateChanged):
                named.update(message.event.queues)
        return named

    @property
    def agent_ids(self) -> set[str]:
        return {m.event.agent_id for m in self.messages
                if isinstance(m.event, AgentStateChanged)}

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
        return [(i, row) for i, row in self._rows.get(shard, ()) if i not in self._dropped]

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
        position: dict[tuple[str, int], int] = {}
        for shard in letters:
            live = 0
            for row_index, (i, _) in enumerate(self._rows.get(shard, ())):
                if i not in self._dropped:
                    position[(shard, row_index)] = live
                    live += 1
        names: list[str | None] = []
        for i, message in enumerate(self.messages):
            if i in self._dropped:
                names.append(None)
                continue
            shard, row_index = message.rows[0]
            names.append(RESULT_NAMES[letters[shard][position[(shard, row_index)]]])
        return names
