"""Where a call waits now, for a voice menu (``GET /api/calls/{call_id}``, contract §5).

A request must not ask every queue where a call is: the snapshot refresher keeps an index
here, call_id -> the queues it waits in, from each queue's waiting list, and re-reads only
the lists that changed since its last refresh (their change counter or length moved). A
request then asks Redis about the queues the index names only, one O(log n) script call
each (the position is a rank in the queue's priority order), all in one round trip; a call
the index names that Redis no longer holds is left out. So a call that started waiting
less than one refresh ago (0.5 s) may not be found yet, as the API may lag by up to 1 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from .config import STAFFING_WINDOW_SECONDS
from .errors import ServiceUnavailable
from .figures import caller_ewt_seconds, window_figures
from .state.store import StateStore


@dataclass(frozen=True)
class _Queue:
    """What the index knows of one queue as of the last refresh."""

    #: (change counter, length) of its waiting list when ``calls`` was read
    version: tuple[int, int]
    calls: frozenset[str]
    agents: dict[str, int]
    #: the sums of its 15 m staffing window, for EWT
    staffing: dict[str, float]


_UNSEEN = _Queue((-1, -1), frozenset(), {}, {})


class WaitingCalls:
    """The index of where calls wait, and the answer to a voice menu's question."""

    def __init__(self, event_clock: bool = False) -> None:
        self._event_clock = event_clock
        self._store: StateStore | None = None
        self._now_ms = 0
        self._queues: dict[str, _Queue] = {}
        self._where: dict[str, set[str]] = {}

    @property
    def ready(self) -> bool:
        """True once the index has been built."""
        return self._store is not None

    async def refresh(self, store: StateStore, now_ms: int, raw: dict[str, dict[str, Any]],
                      agents: dict[str, dict[str, int]]) -> None:
        """Bring the index up to date with the queues just read (``raw``: each queue's
        ``read_queue`` answer at ``now_ms``; ``agents``: per queue, agents by state)."""
        changed = [q for q, figures in raw.items()
                   if q not in self._queues or self._queues[q].version != _version(figures)]
        calls = await store.waiting_calls(changed) if changed else {}
        for queue_id in self._queues.keys() - raw.keys():  # forgotten
            self._reindex(queue_id, self._queues.pop(queue_id).calls, frozenset())
        for queue_id, figures in raw.items():
            old = self._queues.get(queue_id, _UNSEEN)
            version, waiting = ((_version(figures), frozenset(calls[queue_id]))
                                if queue_id in calls else (old.version, old.calls))
            self._reindex(queue_id, old.calls, waiting)
            self._queues[queue_id] = _Queue(version, waiting, agents.get(queue_id, {}),
                                            figures["windows"][str(STAFFING_WINDOW_SECONDS)])
        self._store, self._now_ms = store, now_ms

    def _reindex(self, queue_id: str, old: frozenset[str], new: frozenset[str]) -> None:
        for call_id in old - new:
            queues = self._where[call_id]
            queues.discard(queue_id)
            if not queues:
                del self._where[call_id]
        for call_id in new - old:
            self._where.setdefault(call_id, set()).add(queue_id)

    async def find(self, call_id: str) -> list[dict[str, Any]]:
        """Each queue where the call waits now: queue_id, position (1 is answered next),
        wait_seconds and ewt_seconds (None where the queue's EWT is absent); [] when it
        waits nowhere. Raises :class:`ServiceUnavailable` when Redis does not answer."""
        queue_ids = sorted(self._where.get(call_id, ()))
        if not queue_ids or self._store is None:
            return []
        try:
            found = await self._store.call_positions(call_id, queue_ids)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"Redis did not answer ({exc}): check CALLSTREAM_REDIS_URL"
                                     ) from exc
        now_ms = self._now_ms if self._event_clock else int(time.time() * 1000)
        waiting = []
        for queue_id, (position, queued_ms) in found.items():
            queue = self._queues[queue_id]
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
