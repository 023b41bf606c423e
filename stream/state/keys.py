"""Every Redis key callstream uses. Nothing else builds a key name.

Per-queue keys share one hash tag, ``{q:<queue_id>}``, so a queue's state sits in one
Redis Cluster slot and its batch applies in one atomic script call; so do a caller's
(``{c:<number>}``) and the agents' (``{agents}``). The keys below such a prefix are the
``SUFFIXES``: the Lua scripts name them as ``K.<name>`` (their loader writes the table in
front of each script, ``state/scripts.py``), Python through :class:`KeySpace`; each
script's header says what the key holds. The root (``CALLSTREAM_REDIS_PREFIX``) lets
several deployments, or a demo, share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

#: name -> suffix of the keys below a queue's (q), a caller's (c) or the agents' (a) prefix.
SUFFIXES: dict[str, str] = {
    "offsets": ":offsets",  # q, a: hash source -> last applied offset
    "legs": ":legs",  # q: hash call_id -> the leg (apply_queue.lua)
    "legs_index": ":legidx",  # q: zset call_id -> last touch, for forgetting idle legs
    "waiting": ":waiting",  # q: zset call_id -> queued ts (ms)
    "ranked": ":ranked",  # q: zset ranked member -> -priority: the answer order
    "waiting_gen": ":wgen",  # q: counter raised whenever the waiting list changes
    "window": ":w:",  # q, a: + "<window_s>:<bucket>": hash of a bucket's sums
    "totals": ":totals",  # q: hash outcome -> count (monotonic)
    "seen": ":seen",  # q: wall time (ms) of the queue's last batch
    "seen_day": ":seen:",  # a: + "<day>": hash event_id -> 1 (dedup marks)
    "trend_waiting": ":trend:waiting",  # q: the waiting list's length, bucket by bucket
    "facts": ":facts",  # q: hash box -> caller facts not yet taken by every handler
    "relayed": ":relayed",  # q: hash box -> caller facts every handler took, kept a while
    "relayed_index": ":relayidx",  # q: zset box -> when every handler had taken it
    "callback_wait": ":cbwait",  # q: zset of waiting calls -> when they cross the threshold
    "offers": ":offers",  # q: hash offer_id -> the offer (cb_emit.lua)
    "offers_open": ":offers:open",  # q: set of open offer_ids
    "cb": ":cb",  # q: hash of the queue's offer counts (offered, results, refusals)
    "callback_refused": ":cbrefused",  # q: hash offer_id -> why it was refused
    "alerts": ":alerts",  # q: hash kind -> the open episode
    "out": ":out:",  # q: + channel: hash msg_id -> message to publish (claim_out.lua)
    "due": ":due:",  # q: + channel: zset msg_id -> when it may go out
    "claim": ":claim:",  # q: + channel: hash msg_id -> who claimed it, until when
    "out_offers": ":out:offers",
    "due_offers": ":due:offers",
    "claim_offers": ":claim:offers",
    "out_cancels": ":out:cancels",
    "due_cancels": ":due:cancels",
    "missed": ":missed",  # q: zset caller -> the last miss not yet recovered or lost
    "journey_done": ":jdone",  # q: zset caller -> the last miss resolved
    "journey_resolved": ":jres",  # q: hash caller -> that resolution
    "journey_marks": ":jmark",  # q: set of the facts' tokens counted, kept with their box
    "journey_window": ":jw",  # q: hash "<bucket>:<figure>" -> count
    "journey_total": ":jtotal",  # q: hash lost -> callers lost since the start
    "journey": ":j",  # c: the caller's journey (apply_journey.lua)
    "caller_offers": ":cb:offers",  # c: zset offer_id -> when made (the 24 h cap)
    "caller_calls": ":cb:calls",  # c: hash call_id -> the call's one offer
    "caller_missed": ":cb:missed",  # c: hash offer_id -> queue: missed-call offers open
    "state": ":state",  # a: hash agent_id -> "state|queues|since_ms"
    "index": ":index",  # a: zset agent_id -> admission time (CALLSTREAM_MAX_AGENTS)
}


@dataclass(frozen=True)
class KeySpace:
    """The key names under one root."""

    root: str = "cs"

    @property
    def queue_index(self) -> str:
        """Zset queue id -> wall time (ms) of its last batch: the queues tracked, so a
        queue's series exist from its first event; bounded by ``CALLSTREAM_MAX_QUEUES``."""
        return f"{self.root}:queue-index"

    @property
    def event_clock(self) -> str:
        """Newest applied event time (ms): the ``clock=event`` now of all instances."""
        return f"{self.root}:clock"

    @property
    def agents(self) -> str:
        """Prefix of the agent keys: one slot; per-queue counts are derived on read."""
        return f"{self.root}:{{agents}}"

    @property
    def agent_states(self) -> str:
        """Hash agent_id -> "state|queue,queue|since_ms" (written by apply_agents.lua)."""
        return self.agents + SUFFIXES["state"]

    @property
    def agent_index(self) -> str:
        """Zset agent_id -> wall time (ms) of admission: bounded by ``CALLSTREAM_MAX_AGENTS``."""
        return self.agents + SUFFIXES["index"]

    @property
    def optout(self) -> str:
        """Set of normalised caller numbers that never get a callback offer."""
        return f"{self.root}:optout"

    def queue(self, queue_id: str) -> str:
        """The prefix of one queue's keys."""
        return f"{self.root}:{{q:{queue_id}}}"

    @staticmethod
    def below(prefix: str, name: str) -> str:
        """The key ``name`` (one of ``SUFFIXES``) below a queue's, caller's or the agents'
        prefix."""
        return prefix + SUFFIXES[name]

    def queue_key(self, queue_id: str, name: str) -> str:
        """One of a queue's keys (``name`` in ``SUFFIXES``)."""
        return self.queue(queue_id) + SUFFIXES[name]

    def caller_key(self, number: str, name: str) -> str:
        """One of a caller's keys (``name`` in ``SUFFIXES``)."""
        return self.caller(number) + SUFFIXES[name]

    def missed_callers(self, day: int) -> str:
        """Set of the callers given a missed-call offer on a day (UTC day number): a
        superset of those whose offer may still be cancelled, kept two days."""
        return f"{self.root}:cb:missed-callers:{day}"

    def caller(self, number: str) -> str:
        """The prefix of one caller's keys (callback policy, journeys): one slot each."""
        return f"{self.root}:{{c:{number}}}"

    def checkpoint(self, topic: str) -> str:
        """Hash partition -> last offset of the last batch Redis applied whole."""
        return f"{self.root}:checkpoint:{topic}"

    def dead_lettered(self, topic: str) -> str:
        """Hash partition -> last offset copied to the dead-letter topic (sent once)."""
        return f"{self.root}:dead-lettered:{topic}"
