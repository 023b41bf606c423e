"""Housekeeping that no event triggers: legs that never ended, idle queues, agents gone.

Any number of instances may sweep at once: each step is an atomic script that checks its
condition again, so a sweep never forgets what a batch has just touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from stream.ingest.checkpoint import FactHandler, relay
from stream.state.store import StateStore

log = logging.getLogger(__name__)
SWEEP_SECONDS = 60.0
#: Caller facts left in an outbox are relayed this often (they are there only after a
#: crash, or beside a batch in flight: relaying those twice is harmless).
RELAY_SECONDS = 5.0


async def sweep_forever(store: StateStore, stop: asyncio.Event,
                        handlers: Sequence[FactHandler] = (),
                        every: float = SWEEP_SECONDS) -> None:
    """Until ``stop`` is set: relay the caller facts a crash (or a Redis that went back)
    left in the queues' outboxes every few seconds, and sweep every ``every`` seconds."""
    last_sweep = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RELAY_SECONDS)
        if stop.is_set():
            return
        try:
            now_ms = int(time.time() * 1000)
            if handlers:
                leftover = await store.pending_caller_facts(await store.queue_ids())
                await relay(store, handlers, leftover, now_ms)
            if time.monotonic() - last_sweep < every:
                continue
            last_sweep = time.monotonic()
            queues, agents = await store.sweep(now_ms)
        except (RedisError, OSError):
            continue  # the consumer and the refresher report Redis outages
        if queues or agents:
            log.info("forgot %d idle queue(s) and %d agent(s) offline for 24 h",
                     len(queues), len(agents))
