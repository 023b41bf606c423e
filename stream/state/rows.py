"""One batch of events on its way into the state: the only place that knows the rows the
Lua scripts take.

Callers add events with their Kafka position; the store applies the batch and answers one
result per message. A message can be dropped before it is applied (its queue or agent
refused, or applying it failed): its rows are then left out of every script call.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _text  # a str as JSON text, in C
from typing import Any, NamedTuple

from stream.parse.events import (
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


class _Shard:
    """One shard's rows, in order, with the message each came from."""

    __slots__ = ("highest", "index", "rows")

    def __init__(self) -> None:
        #: each row as JSON text, as the scripts take it
        self.rows: list[str] = []
        #: the message of each row; ``~message`` for a transfer's second row (the one in
        #: the queue transferred to), which does not give the message's result
        self.index: list[int] = []
        #: source -> the offset of its last row (the highest: offsets only grow)
        self.highest: dict[str, int] = {}


class StateBatch:
    """Events routed to per-queue rows (and agent rows), in consumption order. (Kept as a
    few flat lists, and each row as its JSON text: a batch holds thousands of events, and
    every object made per event is also freed per event.)"""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._shards: dict[str, _Shard] = {}
        self._dropped: set[int] = set()
        self._encoded: dict[str, str] | None = None
        self.newest_ts_ms: int | None = None
        #: shard -> the result letters of its applied rows (kept across retries), and the
        #: messages of those rows (as ``_Shard.index``)
        self.letters: dict[str, str] = {}
        self._applied: dict[str, list[int]] = {}
        #: what legs with a caller did, in the order the scripts applied them
        self.caller_facts: list[CallerFact] = []
        #: every queue the batch's messages name (transfer targets and agents' queues too)
        self.queue_ids: set[str] = set()
        self.agent_ids: set[str] = set()
        #: topic, partition, source and the source as JSON text of the last event added
        #: (a batch comes in runs of one partition's records)
        self._source: tuple[str, int, str, str] = ("", -1, "", "")

    def add(self, topic: str, partition: int, offset: int, event: Event) -> None:
        """Route one valid event read at this position; its rows keep the order of the
        calls to ``add``. (This runs for every event: no isinstance, no ``cast`` calls; rows
        are written as JSON text directly, four times as fast as encoding lists, escaping
        only the strings a producer chose: the other strings are ids, digits and letters
        that need none.)"""
        index = len(self.events)
        self.events.append(event)
        ts = event.ts
        if self.newest_ts_ms is None or ts > self.newest_ts_ms:
            self.newest_ts_ms = ts
        source = self._source
        if partition != source[1] or topic != source[0]:  # a new partition
            name = f"{topic}:{partition}"
            source = self._source = (topic, partition, name, _text(name))
        e: Any = event
        cls = type(event)
        if cls is AgentStateChanged:
            self.agent_ids.add(e.agent_id)
            self.queue_ids.update(e.queues)
            self._row(index, AGENTS, source[2], offset,
                      f'[{source[3]},{offset},{_text(e.event_id)},"{e.agent_id}",{ts},'
                      f'"{e.state}|{",".join(e.queues)}|{ts}"]')
            return
        caller = priority = agent = "null"
        if cls is CallQueued:
            if e.caller is not None:
                caller = f'"{e.caller}"'
            if e.priority is not None:
                priority = str(e.priority)
        elif cls in _WITH_AGENT and e.agent_id is not None:
            agent = f'"{e.agent_id}"'
        # a callback attempt's result last: answered, it reached the caller
        result = f',"{e.result}"' if cls is CallbackAttempt else ""
        self._row(index, e.queue_id, source[2], offset,
                  f'[{source[3]},{offset},{_text("E" + e.event_id)},"{_KIND[e.type]}",'
                  f'{_text(e.call_id)},{ts},{caller},{priority},{agent}{result}]')
        if cls is CallTransferred:
            # Its own token: a transfer back into the same queue opens a new leg there.
            self._row(~index, e.to_queue_id, source[2], offset,
                      f'[{source[3]},{offset},{_text("I" + e.event_id)},"I",'
                      f'{_text(e.call_id)},{ts},null,null,null]')

    def _row(self, index: int, shard: str, source: str, offset: int, row: str) -> None:
        held = self._shards.get(shard)
        if held is None:
            held = self._shards[shard] = _Shard()
            if shard != AGENTS:
                self.queue_ids.add(shard)
        held.rows.append(row)
        held.index.append(index)
        held.highest[source] = offset
        self._encoded = None

    def messages_naming(self, queue_ids: set[str], agent_ids: set[str]) -> list[int]:
        """Indexes of the messages with a row in one of these queues, or for these agents."""
        named: set[int] = set()
        for shard, held in self._shards.items():
            if shard in queue_ids:
                named.update(i if i >= 0 else ~i for i in held.index)
        agents = self._shards.get(AGENTS)
        for i in agents.index if agents else ():
            event: Any = self.events[i]
            if event.agent_id in agent_ids or not queue_ids.isdisjoint(event.queues):
                named.add(i)
        return sorted(named)

    def drop(self, indexes: list[int]) -> None:
        """Leave these messages out of the state: their rows are not sent."""
        self._dropped.update(indexes)
        self._encoded = None

    def is_dropped(self, index: int) -> bool:
        return index in self._dropped

    def _live(self, shard: str) -> tuple[list[int], list[str]]:
        """The shard's rows not dropped, and the message of each (as ``_Shard.index``)."""
        held = self._shards.get(shard)
        if held is None:
            return [], []
        if not self._dropped:
            return held.index, held.rows
        dropped = self._dropped
        live = [n for n, i in enumerate(held.index) if (i if i >= 0 else ~i) not in dropped]
        return [held.index[n] for n in live], [held.rows[n] for n in live]

    def shards(self) -> list[str]:
        """Shards with rows still to apply, queues first, agents last."""
        return sorted((s for s in self._shards if self._live(s)[0]), key=lambda s: s == AGENTS)

    def encoded(self) -> dict[str, str]:
        """Each shard's live rows as the scripts take them (a JSON list), joined once: a
        retry reuses them, and the consumer joins them while Redis still applies the batch
        before."""
        if self._encoded is None:
            self._encoded = {shard: "[" + ",".join(self._live(shard)[1]) + "]"
                             for shard in self.shards()}
        return self._encoded

    def highest_offsets(self, shard: str) -> dict[str, int]:
        """source -> the highest offset of the shard's live rows."""
        if not self._dropped:  # rows come in offset order per source: kept as added
            held = self._shards.get(shard)
            return held.highest if held else {}
        highest: dict[str, int] = {}
        for row in json.loads(self.encoded().get(shard, "[]")):  # rare: a message dropped
            source, offset = row[0], row[1]
            if offset > highest.get(source, -1):
                highest[source] = offset
        return highest

    def message_of_row(self, shard: str, live_index: int) -> int:
        """The message of the shard's ``live_index``-th live row."""
        i = self._live(shard)[0][live_index]
        return i if i >= 0 else ~i

    def applied(self, shard: str, letters: str) -> None:
        """Note the result letters Redis answered for the shard's live rows."""
        self.letters[shard] = letters
        self._applied[shard] = self._live(shard)[0]

    def results(self) -> list[str | None]:
        """Each message's result name: the letter of its first row (None: dropped)."""
        first: list[str | None] = [None] * len(self.events)
        for shard, letters in self.letters.items():
            for i, letter in zip(self._applied[shard], letters, strict=True):
                if i >= 0:
                    first[i] = letter
        for i in self._dropped:
            first[i] = None
        return list(map(RESULT_NAMES.get, first))  # type: ignore[arg-type]
