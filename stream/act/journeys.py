"""Caller journeys (contract §2): repeat calls, missed callers, recovery, the lost ones.

The queue scripts say what each leg with a caller did (caller facts); this module turns
them into steps of the caller's journey (:class:`JourneyHandler`, registered on the
checkpoint's relay and the janitor), declares lost the misses a day old that no answer
recovered (:func:`keep_journeys`), and turns a queue's stored sums into its figures.
Calls with no caller, and legs transferred in (a transfer carries no caller), take no
part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from stream.config import Policy
from stream.state.journeys import JourneyOp, JourneyStore
from stream.state.rows import CallerFact

log = logging.getLogger(__name__)
#: How often misses a day old are looked for; with the snapshot's 0.5 s, "lost" shows
#: within about 1.5 s of the day's end.
KEEP_SECONDS = 1.0
#: Past-the-day buckets, resolutions and marks are dropped every this many rounds.
PRUNE_EVERY = 60
_OPS = {"queued": "Q", "answered": "A", "reached": "A", "abandoned": "B"}


class JourneyHandler:
    """Takes caller facts into the callers' journeys (a :class:`FactHandler`)."""

    def __init__(self, state: JourneyStore, policy: Policy) -> None:
        self.state = state
        self.policy = policy

    async def take(self, facts: list[CallerFact], now_ms: int) -> None:
        short_ms = {q: round(self.policy.for_queue(q).short_abandon_seconds * 1000)
                    for q in {f.queue_id for f in facts}}
        new = tuple.__new__  # a named tuple's own constructor takes twice as long
        # An abandon sooner than the queue's threshold is no miss (an orphan's, with no
        # wait, never short).
        ops = [new(JourneyOp, (f.caller, "S" if f.what == "abandoned"
                               and f.wait_ms is not None and f.wait_ms < short_ms[f.queue_id]
                               else _OPS[f.what], f.token, f.queue_id, f.ts_ms, f.box))
               for f in facts if f.what in _OPS]
        await self.state.take(ops, now_ms)

    #: A fact taken again answers the decisions its caller's journey kept under its mark,
    #: and is decided only where the journey lost the mark.
    take_again = take


async def declare_lost(state: JourneyStore, queue_ids: list[str], now_ms: int,
                       prune: bool = False) -> None:
    """Hand each miss a day old at ``now_ms`` to its caller's journey, which declares it
    lost unless an answer recovered it; ``prune`` also drops what is past the day."""
    sums = await state.read(queue_ids, now_ms, prune=prune, sums=False)
    await state.take([JourneyOp(caller, "X", "", q, ts) for q, s in sums.items()
                      for caller, ts in s.due], now_ms)


async def keep_journeys(state: JourneyStore, queue_ids: Callable[[], Awaitable[list[str]]],
                        clock: Callable[[], Awaitable[int]], stop: asyncio.Event,
                        every: float = KEEP_SECONDS) -> None:
    """:func:`declare_lost` every ``every`` seconds until ``stop`` is set."""
    rounds = 0
    while not stop.is_set():
        try:
            await declare_lost(state, await queue_ids(), await clock(),
                               prune=rounds % PRUNE_EVERY == 0)
            rounds += 1
        except (RedisError, OSError):
            pass  # the consumer and the refresher report Redis outages
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
