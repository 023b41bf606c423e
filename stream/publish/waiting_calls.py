"""Where a call waits now, for a voice menu (``GET /api/calls/{call_id}``, contract §5).

Answered from memory, like the rest of the API: a request never waits on Redis, so its
latency does not follow Redis's (a batch's apply script holds Redis for milliseconds).
With each snapshot the refresher brings this index up to date: every queue whose waiting
list changed since the last refresh (its change counter or length moved) has its list read
again, already in answer order (apply_queue.lua keeps it ranked by priority, then arrival);
queues that did not change cost nothing. A request looks up the queues the call waits in
(call_id -> queues: no scan of every queue) and its place in each. So what it says is at
most one refresh (0.5 s) old, as the contract allows of the API (1 s).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from stream.config import STAFFING_WINDOW_SECONDS
from stream.figures.queue import caller_ewt_seconds, window_figures
from stream.state.store import StateStore, ranked_call

#: Calls taken into the index between two yields to the event loop (about a millisecond).
_SLICE = 2000


@dataclass(frozen=True)
class _Queue:
    """What the index knows of one queue as of the last refresh."""

    #: (change counter, length) of its waiting list when ``places`` was read
    version: tuple[int, int]
    #: call_id -> (position, queued ts in ms)
    places: dict[str, tuple[int, int]]
    agents: dict[str, int]
    #: the sums of its 15 m staffing window, for EWT
    staffing: dict[str, float]


_UNSEEN = _Queue((-1, -1), {}, {}, {})


class WaitingCalls:
    """The index of where calls wait, and the answer to a voice menu's question."""

    def __init__(self, event_clock: bool = False) -> None:
        self._event_clock = event_clock
        self.ready = False
        self._now_ms = 0
        self._queues: dict[str, _Queue] = {}
        self._where: dict[str, set[str]] = {}

    async def refresh(self, store: StateStore, now_ms: int, raw: dict[str, dict[str, Any]],
                      agents: dict[str, dict[str, int]]) -> None:
        """Bring the index up to date with the queues just read (``raw``: each queue's
        ``read_queue`` answer at ``now_ms``; ``agents``: per queue, agents by state).

        A long list is taken in slices that yield to the event loop, so that requests are
        not held up behind a huge queue; a request meanwhile sees the queue's old view.
        """
        changed = [q for q, figures in raw.items()
                   if self._queues.get(q, _UNSEEN).version != _version(figures)]
        in_order = await store.waiting_in_order(changed) if changed else {}
        for queue_id in self._queues.keys() - raw.keys():  # forgotten
            self._reindex(queue_id, self._queues.pop(queue_id).places, {})
        for queue_id, figures in raw.items():
            old = self._queues.get(queue_id, _UNSEEN)
            version, places = old.version, old.places
            if queue_id in in_order:
                version, places = _version(figures), {}
                entries = in_order[queue_id]
                for start in range(0, len(entries), _SLICE):
                    for position, entry in enumerate(entries[start:start + _SLICE], start + 1):
                        call_id, queued_ms = ranked_call(entry)
                        places[call_id] = (position, queued_ms)
                    await asyncio.sleep(0)
            self._queues[queue_id] = _Queue(version, places, agents.get(queue_id, {}),
                                            figures["windows"][str(STAFFING_WINDOW_SECONDS)])
            if places is not old.places:
                self._reindex(queue_id, old.places, places)
        self._now_ms, self.ready = now_ms, True

    def _reindex(self, queue_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        for call_id in old.keys() - new.keys():
            queues = self._where[call_id]
            queues.discard(queue_id)
            if not queues:
                del self._where[call_id]
        for call_id in new.keys() - old.keys():
            self._where.setdefault(call_id, set()).add(queue_id)

    def find(self, call_id: str) -> list[dict[str, Any]]:
        """Each queue where the call waits: queue_id, position (1 is answered next),
        wait_seconds and ewt_seconds (None where the queue's EWT is absent), by queue_id;
        [] when it waits nowhere."""
        now_ms = self._now_ms if self._event_clock else int(time.time() * 1000)
        waiting = []
        for queue_id in sorted(self._where.get(call_id, ())):
            queue = self._queues[queue_id]
            position, queued_ms = queue.places[call_id]
            waiting.append({
                "queue_id": queue_id,
                "position": position,
                "wait_seconds": max(0, now_ms - queued_ms) / 1000,
                "ewt_seconds": caller_ewt_seconds(position, queue.agents,
                                                  window_figures(queue.staffing)),
            })
        return waiting


def _version(figures: dict[str, Any]) -> tuple[int, int]:
    return int(figures["waiting_gen"]), int(figures["waiting"])
