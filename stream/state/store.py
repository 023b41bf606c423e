"""The Redis state store: the only module that speaks Redis for queue and agent state.

Writes go through Lua scripts, one atomic call per queue (and one for agents) per batch,
all of a batch's calls in one pipelined round trip. Each call also records the offsets it
applied, per source (topic and partition), in the same atomic step as the state they
produced, so a replay after any crash skips exactly what was applied, and a Redis that
lost acknowledged writes is caught: every call carries the offsets this instance applied
there before, and a script that finds its stored offsets behind them writes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from stream.config import TREND_WINDOW_SECONDS
from stream.errors import CallstreamError
from stream.state.client import Redis, connect_redis
from stream.state.keys import KeySpace
from stream.state.outgoing import Outgoing
from stream.state.rows import AGENTS, CallerFact, StateBatch
from stream.state.scripts import ScriptCall, Scripts
from stream.state.wire import dumps

log = logging.getLogger(__name__)
#: An agent event's dedup mark lives in a hash per processing day for two days.
DEDUP_TTL_S = 2 * 86400 + 3600
#: A leg idle this long is forgotten (its late events then count as orphans). Its event
#: ids are its dedup marks, so this is also the dedup horizon: 24 h plus the up-to-1 h
#: coarseness of the leg index. No wait or handle time is counted longer than this.
LEG_TTL_MS = 25 * 3600 * 1000
#: A queue with no batch and no waiting call this long, or an agent offline this long,
#: is forgotten.
IDLE_MS = 24 * 3600 * 1000
#: Buckets outlive their window by this much: events may be up to 5 min in the future.
BUCKET_TTL_EXTRA_S = 360
#: A queue's journey counts of the last day sit in buckets this long (at most 1/30 of it).
JOURNEY_BUCKET_MS = 30 * 60 * 1000
#: Caller facts every handler took stay in their queue's slot (:relayed) this long after
#: the last moment every Redis server was seen to be the process it had been: should one
#: come back without its last writes (a replica promoted that lagged, an AOF cut by a
#: crash), they are relayed again, and what the callers' slots there lost of them is
#: taken again. Writes missing from up to this long before that moment are mended: a
#: healthy replica lags by milliseconds, AOF everysec loses at most 2 s, and a server that
#: does not answer stops the clock (its facts are kept until it is back).
RELAYED_KEEP_MS = 60_000
#: How a script says that one row of its batch cannot be applied (see apply_queue.lua).
_ROW_FAILED = "CSAPPLY "


class RedisWentBack(CallstreamError):
    """Redis lacks writes it had acknowledged: ``resume`` maps source -> the first offset
    to read again (a failover to a replica that lagged, an AOF cut after a crash)."""

    def __init__(self, resume: dict[str, int]) -> None:
        super().__init__(f"Redis lost acknowledged writes; reading again from {resume}")
        self.resume = resume


@dataclass(frozen=True)
class BucketRange:
    """Buckets ``first`` to ``last`` (inclusive) of one window series."""

    window_s: int
    first: int
    last: int


@dataclass(frozen=True)
class AlertMove:
    """An alert episode's move, from the episode read (``expected``, "" for none) to
    ``now`` (None once it resolved), with the message that says so."""

    queue_id: str
    kind: str
    expected: str
    now: dict[str, Any] | None
    msg_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class QueueRules:
    """The per-queue thresholds the apply script needs, in milliseconds."""

    sla_ms: int
    short_ms: int
    #: the wait at which a waiting call with a caller crosses to a callback offer
    callback_wait_ms: int | None = None


#: Called with the indexes of messages that cannot be applied; returns once they are
#: dead-lettered, so that a crash never loses them.
OnFailed = Callable[[list[tuple[int, str]]], Awaitable[None]]


AgentState = tuple[str, list[str], int]


@dataclass(frozen=True)
class RawAgents:
    """What ``read_agents`` found: states, and staffed time per window (ms)."""

    #: agent_id -> (state, queues, since: ts in ms of the event that began the state)
    states: dict[str, AgentState]
    #: window_s -> agent_id -> state -> ms spent in it within the window (closed states)
    state_ms: dict[int, dict[str, dict[str, int]]]


def _agent_state(value: str) -> AgentState:
    state, queues, since = value.split("|")
    return state, [q for q in queues.split(",") if q], int(since)


class StateStore:
    """Queue and agent state in Redis, shared by every processor instance."""

    def __init__(self, client: Redis, windows: list[tuple[int, int]],
                 keys: KeySpace | None = None, max_queues: int = 2000,
                 max_agents: int = 5000, caller_facts: bool = False,
                 reach: dict[int, int] | None = None) -> None:
        self.client = client
        self.keys = keys or KeySpace()
        self.windows = windows
        #: window_s -> how far back (s) its buckets must be kept, where beyond the window
        self.reach = {str(w): s for w, s in (reach or {}).items()}
        self.max_queues, self.max_agents = max_queues, max_agents
        #: keep what legs with a caller did in each queue's outbox (journeys, callbacks)
        self.caller_facts = caller_facts
        self.scripts = Scripts(client)
        #: shard -> source -> the highest offset this instance applied there.
        self._written: dict[str, dict[str, int]] = {}
        self._admitted_queues: set[str] = set()
        self._admitted_agents: set[str] = set()
        #: when this instance last found Redis without writes it had made (wall ms)
        self.went_back_at_ms: int | None = None
        #: when every Redis server was last seen to be the process it had been (wall ms;
        #: set by the consumer's run id watcher; None: not watched, now is taken)
        self.servers_seen_ms: int | None = None

    @classmethod
    async def connect(cls, url: str, windows: list[tuple[int, int]], keys: KeySpace,
                      **options: Any) -> StateStore:
        """Connect to a Redis server or, when ``url`` names a Cluster node, the Cluster."""
        return cls(await connect_redis(url), windows, keys, **options)

    async def close(self) -> None:
        await self.client.aclose()

    async def admit(self, batch: StateBatch, now_ms: int) -> tuple[set[str], set[str]]:
        """Admit the batch's new queues and agents under their bounds; returns the queue
        and agent ids refused (their messages are the caller's to dead-letter)."""
        new_queues = sorted(batch.queue_ids - self._admitted_queues)
        new_agents = sorted(batch.agent_ids - self._admitted_agents)
        calls = []
        if new_queues:
            calls.append(("admit", self.keys.queue_index, str(self.max_queues), str(now_ms),
                          *new_queues))
        if new_agents:
            calls.append(("admit", self.keys.agent_index, str(self.max_agents), str(now_ms),
                          *new_agents))
        if not calls:
            return set(), set()
        replies = await self.scripts.run(calls)
        refused_queues = set(replies.pop(0)) if new_queues else set()
        refused_agents = set(replies.pop(0)) if new_agents else set()
        self._admitted_queues.update(set(new_queues) - refused_queues)
        self._admitted_agents.update(set(new_agents) - refused_agents)
        return refused_queues, refused_agents

    async def apply(self, batch: StateBatch, rules: dict[str, QueueRules], now_ms: int,
                    on_failed: OnFailed) -> list[str | None]:
        """Apply the batch; returns each message's result (None for a dropped message).

        A message that a script cannot apply is handed to ``on_failed``, dropped, and its
        shard applied again without it. Safe to call again with the same batch after any
        failure: offsets already applied are skipped by the scripts. Raises
        :class:`RedisWentBack` when Redis lost writes this instance had made.
        """
        letters = batch.letters
        behind: dict[str, int] = {}
        pending = [shard for shard in batch.shards() if shard not in letters]
        while pending:
            encoded = batch.encoded()
            calls = [self._apply_call(shard, encoded[shard], rules, now_ms) for shard in pending]
            replies = await self.scripts.run(calls, raise_on_error=False)
            failed: list[tuple[int, str]] = []
            retry = []
            for shard, reply in zip(pending, replies, strict=True):
                if isinstance(reply, ResponseError) and str(reply).startswith(_ROW_FAILED):
                    row, _, why = str(reply)[len(_ROW_FAILED):].partition(" ")
                    failed.append((batch.message_of_row(shard, int(row) - 1), why))
                    retry.append(shard)
                elif isinstance(reply, Exception):
                    raise reply  # not the message's doing: Redis's, retried by the caller
                elif reply.startswith("R"):
                    for source, stored in json.loads(reply[1:]).items():
                        behind[source] = min(behind.get(source, stored), stored)
                else:
                    shard_letters, _, facts = reply.partition("\n")
                    batch.applied(shard, shard_letters)
                    if facts:
                        batch.caller_facts.extend(CallerFact.boxed(shard, json.loads(facts)))
                    written = self._written.setdefault(shard, {})
                    for source, offset in batch.highest_offsets(shard).items():
                        written[source] = max(written.get(source, -1), offset)
            if failed:
                await on_failed(failed)
                batch.drop([index for index, _ in failed])
            pending = [shard for shard in retry if shard in batch.shards()]
        if behind:
            raise RedisWentBack(await self.lost_positions(behind))
        if batch.newest_ts_ms is not None:
            await self.scripts.run([("raise_clock", self.keys.event_clock,
                                  str(batch.newest_ts_ms))])
        return batch.results()

    def _apply_call(self, shard: str, rows: str, rules: dict[str, QueueRules],
                    now_ms: int) -> tuple[str, ...]:
        expect = self._written.get(shard, {})
        if shard == AGENTS:
            config = {"now": now_ms, "dedup_ttl_s": DEDUP_TTL_S, "expect": expect,
                      "windows": self.windows, "bucket_ttl_extra_s": BUCKET_TTL_EXTRA_S}
            return ("apply_agents", self.keys.agents, dumps(config), rows)
        rule = rules[shard]
        config = {
            "now": now_ms, "sla_ms": rule.sla_ms, "short_ms": rule.short_ms,
            "windows": self.windows, "leg_ttl_ms": LEG_TTL_MS,
            "bucket_ttl_extra_s": BUCKET_TTL_EXTRA_S, "expect": expect,
            "facts": self.caller_facts, "reach": self.reach,
            "jw_bucket_ms": JOURNEY_BUCKET_MS,
        }
        if rule.callback_wait_ms is not None:
            config["cb_wait_ms"] = rule.callback_wait_ms
        return ("apply_queue", self.keys.queue(shard), dumps(config), rows)

    async def save_positions(self, topic: str, checkpoint: dict[int, int],
                             dead_lettered: dict[int, int], queue_ids: set[str],
                             now_ms: int) -> None:
        """After a batch applied whole: its last offsets, the last dead-lettered offsets,
        and when its queues were last seen. On one Redis its AOF keeps a prefix of the
        writes, so a checkpoint that survives implies the state before it survived."""
        pipe = self.client.pipeline(transaction=False)
        if checkpoint:
            pipe.hset(self.keys.checkpoint(topic), mapping=checkpoint)  # type: ignore[arg-type]
        if dead_lettered:
            pipe.hset(self.keys.dead_lettered(topic),
                      mapping=dead_lettered)  # type: ignore[arg-type]
        if queue_ids:
            pipe.zadd(self.keys.queue_index, dict.fromkeys(queue_ids, now_ms))
        await pipe.execute()

    # -- a Redis that went back ------------------------------------------------------------

    async def server_ids(self) -> frozenset[str]:
        """The run ids of the Redis server(s): a restart or failover changes them."""
        if isinstance(self.client, aioredis.RedisCluster):
            info = await self.client.info("server", target_nodes=aioredis.RedisCluster.PRIMARIES)
            return frozenset(str(v["run_id"]) for v in info.values())
        info = await self.client.info("server")
        return frozenset({str(info["run_id"])})

    async def lost_positions(self, known: dict[str, int] | None = None) -> dict[str, int]:
        """source -> the first offset to read again, wherever a shard's stored offset is
        behind what this instance applied there. What it applied stays the expectation
        until :meth:`rewound`: a batch past the gap is refused, never applied over it."""
        resume = {source: stored + 1 for source, stored in (known or {}).items()}
        written = [(shard, source, offset) for shard, offsets in self._written.items()
                   for source, offset in offsets.items()]
        pipe = self.client.pipeline(transaction=False)
        for shard, source, _ in written:
            pipe.hget(self._offsets_key(shard), source)
        stored = await pipe.execute()
        for (_, source, offset), value in zip(written, stored, strict=True):
            kept = -1 if value is None else int(value)
            if kept < offset:
                resume[source] = min(resume.get(source, kept + 1), kept + 1)
        self._admitted_queues.clear()
        self._admitted_agents.clear()
        self.went_back_at_ms = int(time.time() * 1000)
        return resume

    def rewound(self) -> None:
        """The consumer reads again from where Redis went back: the offsets it applies
        from now on are the new baseline."""
        self._written.clear()

    def _offsets_key(self, shard: str) -> str:
        return self.keys.below(self.keys.agents if shard == AGENTS else self.keys.queue(shard),
                               "offsets")

    # -- housekeeping --------------------------------------------------------------------

    async def sweep(self, now_ms: int) -> tuple[list[str], list[str]]:
        """Forget idle legs, idle queues and agents offline past the horizon; returns the
        queue and agent ids forgotten."""
        queue_ids = await self.queue_ids()
        config = json.dumps({"now": now_ms, "leg_ttl_ms": LEG_TTL_MS, "idle_ms": IDLE_MS})
        # The relayed facts of queues that take none any more leave on time too.
        replies = await self.scripts.run(
            [("sweep_queue", self.keys.queue(q), config) for q in queue_ids]
            + self._facts_taken(dict.fromkeys(queue_ids, ()))) if queue_ids else []
        idle = [q for q, gone in zip(queue_ids, replies[:len(queue_ids)], strict=True) if gone]
        cutoff = str(now_ms - IDLE_MS)
        if idle:
            await self.scripts.run([("forget", self.keys.queue_index, cutoff, *idle)])
            self._admitted_queues.difference_update(idle)
        agents = await self.scripts.run([("sweep_agents", self.keys.agents, cutoff)])
        self._admitted_agents.difference_update(agents[0])
        return idle, [str(a) for a in agents[0]]

    # -- caller facts: the queues' outboxes towards the callers' keys ----------------------

    async def pending_caller_facts(self, queue_ids: list[str]) -> list[CallerFact]:
        """Facts still in the queues' outboxes (a crash between a batch and their relay)."""
        return await self._boxed_facts(queue_ids, "facts")

    async def relayed_caller_facts(self, queue_ids: list[str]) -> list[CallerFact]:
        """Facts every handler took lately, kept for a relay again (``RELAYED_KEEP_MS``)."""
        return await self._boxed_facts(queue_ids, "relayed")

    async def _boxed_facts(self, queue_ids: list[str], name: str) -> list[CallerFact]:
        if not queue_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for q in queue_ids:
            pipe.hvals(self.keys.queue_key(q, name))
        replies = await pipe.execute()
        facts = []
        for q, boxes in zip(queue_ids, replies, strict=True):
            for raw in boxes:
                entry = json.loads(raw)
                if entry and isinstance(entry[0], str):
                    entry = [entry]  # written before facts were boxed: one fact, its own box
                facts.extend(CallerFact.boxed(q, entry))
        return facts

    async def drop_caller_facts(self, facts: list[CallerFact]) -> None:
        """Every handler took these facts: their boxes leave the outboxes, and are kept
        for a relay again (:meth:`relayed_caller_facts`)."""
        by_queue: dict[str, set[str]] = {}
        for queue_id, _, _, _, _, _, _, box in facts:
            boxes = by_queue.get(queue_id)
            if boxes is None:
                boxes = by_queue[queue_id] = set()
            boxes.add(box)
        await self.scripts.run(self._facts_taken(by_queue))

    def _facts_taken(self, by_queue: Mapping[str, Iterable[str]]) -> list[ScriptCall]:
        """The calls that move these boxes from the queues' outboxes to what is relayed
        again, and prune what was relayed longer ago than anything lost can be."""
        now_ms = int(time.time() * 1000)
        seen_ms = now_ms if self.servers_seen_ms is None else self.servers_seen_ms
        config = {"now": now_ms, "prune_before": seen_ms - RELAYED_KEEP_MS}
        return [("facts_taken", self.keys.queue(q), dumps(config | {"boxes": sorted(boxes)}))
                for q, boxes in by_queue.items()]

    # -- outgoing messages (see publish_once.py) -----------------------------------------

    async def claim_outgoing(self, queue_ids: list[str], channel: str, now_ms: int,
                             instance: str, claim_ms: int, limit: int) -> list[Outgoing]:
        """Claim the due messages of a channel on these queues, in one round trip."""
        if not queue_ids:
            return []
        replies = await self.scripts.run([
            ("claim_out", self.keys.queue(q), channel, str(now_ms), instance, str(claim_ms),
             str(limit)) for q in queue_ids])
        return [Outgoing(q, str(msg_id), str(payload), int(previous) if previous else None)
                for q, claimed in zip(queue_ids, replies, strict=True)
                for msg_id, payload, previous in claimed]

    async def confirm_outgoing(self, channel: str, sent: dict[str, list[str]]) -> None:
        """queue_id -> the msg_ids now on the topic: they leave the outbox."""
        await self.scripts.run([("done_out", self.keys.queue(q), channel, *ids)
                             for q, ids in sent.items()])

    # -- alert episodes (see stream/alerts.py) ------------------------------------------

    async def alert_inputs(self, ranges: Mapping[str, Sequence[BucketRange]], kind: str
                           ) -> dict[str, tuple[list[dict[str, float]], str]]:
        """queue_id -> (the sums of each of its bucket ranges, its open episode or ""),
        in one round trip."""
        if not ranges:
            return {}
        replies = await self.scripts.run([
            ("alert_inputs", self.keys.queue(q), kind,
             json.dumps([[r.window_s, r.first, r.last] for r in wanted]))
            for q, wanted in ranges.items()])
        return {q: (json.loads(sums), str(stored))
                for q, (sums, stored) in zip(ranges, replies, strict=True)}

    async def move_alerts(self, moves: list[AlertMove], channel: str, due_ms: int
                          ) -> list[bool]:
        """Each move and its message, atomically in its queue's slot, where the episode is
        still the one expected; returns which moved."""
        if not moves:
            return []
        replies = await self.scripts.run([
            ("alert_move", self.keys.queue(m.queue_id), m.kind, m.expected,
             json.dumps(m.now) if m.now else "", channel, m.msg_id, json.dumps(m.message),
             str(due_ms)) for m in moves])
        return [bool(r) for r in replies]

    # -- reading -------------------------------------------------------------------------

    async def checkpoints(self, topic: str) -> dict[int, int]:
        """partition -> last offset of the last batch applied whole."""
        return await self._offsets(self.keys.checkpoint(topic))

    async def dead_lettered(self, topic: str) -> dict[int, int]:
        """partition -> last offset copied to the dead-letter topic."""
        return await self._offsets(self.keys.dead_lettered(topic))

    async def _offsets(self, key: str) -> dict[int, int]:
        raw = await self.client.hgetall(key)
        return {int(p): int(o) for p, o in raw.items()}

    async def queue_ids(self) -> list[str]:
        return sorted(str(q) for q in await self.client.zrange(self.keys.queue_index, 0, -1))

    async def event_clock_ms(self) -> int | None:
        raw = await self.client.get(self.keys.event_clock)
        return int(raw) if raw is not None else None

    async def now_ms(self, event_clock: bool) -> int:
        """"now": the wall clock, or with ``clock=event`` the newest applied event time of
        any instance (the wall clock until an event is applied)."""
        if event_clock:
            clock = await self.event_clock_ms()
            if clock is not None:
                return clock
        return int(time.time() * 1000)

    async def read_queues(self, queue_ids: list[str], now_ms: int) -> dict[str, dict[str, Any]]:
        """Live figures and window sums of each queue, in one round trip."""
        if not queue_ids:
            return {}
        config = json.dumps({"now": now_ms, "windows": self.windows,
                             "trend": TREND_WINDOW_SECONDS})
        replies = await self.scripts.run([("read_queue", self.keys.queue(q), config)
                                       for q in queue_ids])
        return {q: json.loads(r) for q, r in zip(queue_ids, replies, strict=True)}

    async def waiting_in_order(self, queue_ids: list[str]) -> dict[str, list[str]]:
        """Each queue's waiting calls in the order they are answered (higher priority, then
        earlier ts, then call_id), in one round trip, as opaque entries (``ranked_call``)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queue_ids:
            pipe.zrange(self.keys.queue_key(q, "ranked"), 0, -1)
        replies = await pipe.execute()
        return {q: [str(m) for m in members]
                for q, members in zip(queue_ids, replies, strict=True)}

    async def agent_states(self) -> dict[str, AgentState]:
        """agent_id -> (state, queues, since: ts in ms of the event that began the state)."""
        raw = await self.client.hgetall(self.keys.agent_states)
        return {str(agent): _agent_state(str(value)) for agent, value in raw.items()}

    async def read_agents(self, now_ms: int) -> RawAgents:
        """Every agent's state and its time (ms) per staffed state per window, read in
        one atomic call: agent_id -> (state, queues, since), and window_s -> agent_id ->
        state -> ms (the state still open not included)."""
        config = json.dumps({"now": now_ms, "windows": self.windows})
        reply = json.loads((await self.scripts.run([("read_agents", self.keys.agents,
                                                  config)]))[0])
        states = {str(agent): _agent_state(str(value))
                  for agent, value in reply["states"].items()}
        windows: dict[int, dict[str, dict[str, int]]] = {}
        for window, sums in reply["windows"].items():
            per_agent = windows.setdefault(int(window), {})
            for field, ms in sums.items():
                agent, _, state = field.rpartition("|")
                per_agent.setdefault(agent, {})[state] = int(ms)
        return RawAgents(states, windows)


_COMPLEMENT = str.maketrans("0123456789", "9876543210")


def ranked_call(member: str) -> tuple[str, int]:
    """(call_id, queued ts in ms) of a ``waiting_in_order`` entry: a ``:ranked`` member
    (its layout: lua/shared/ranked_member.lua)."""
    digits, call_id = member[1:19], member[20:]
    return call_id, int(digits) if member[0] == "1" else -int(digits.translate(_COMPLEMENT))
