"""Every Redis key callstream uses. Nothing else builds a key name.

Per-queue keys share one hash tag, ``{q:<queue_id>}``, so a queue's state sits in one
Redis Cluster slot and its batch applies in one atomic script call. The suffixes below a
queue's prefix are named in the Lua scripts beside this file. The root
(``CALLSTREAM_REDIS_PREFIX``) lets several deployments, or a demo, share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        return f"{self.agents}:state"

    @property
    def agent_index(self) -> str:
        """Zset agent_id -> wall time (ms) of admission: bounded by ``CALLSTREAM_MAX_AGENTS``."""
        return f"{self.agents}:index"

    @property
    def optout(self) -> str:
        """Set of normalised caller numbers that never get a callback offer."""
        return f"{self.root}:optout"

    def queue(self, queue_id: str) -> str:
        """The prefix of one queue's keys."""
        return f"{self.root}:{{q:{queue_id}}}"

    def caller(self, caller: str) -> str:
        """The prefix of one caller's keys (a normalised number): the caller's journey sits
        in one slot of its own, whatever queues the caller called (apply_journey.lua)."""
        return f"{self.root}:{{c:{caller}}}"

    def checkpoint(self, topic: str) -> str:
        """Hash partition -> last offset of the last batch Redis applied whole."""
        return f"{self.root}:checkpoint:{topic}"

    def dead_lettered(self, topic: str) -> str:
        """Hash partition -> last offset copied to the dead-letter topic (sent once)."""
        return f"{self.root}:dead-lettered:{topic}"
