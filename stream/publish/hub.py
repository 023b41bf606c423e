"""The latest snapshot, shared by the API, the wallboard stream and MQTT; and the one rule
of when it is shown as not ready.

A snapshot is shown ready only while the dependencies answer (from the moment they stop,
not from the next refresh) and, for a display that asks, while it is fresh: a refresher
that is stuck must not leave old figures looking live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

Snapshot = dict[str, Any]
#: How often the dependencies' state is looked at, to wake the push channels at once.
LIVENESS_CHECK_SECONDS = 0.25


class SnapshotHub:
    """Holds the newest snapshot and wakes every waiter when a newer one is published, or
    when the dependencies stop answering."""

    def __init__(self, live: Callable[[], bool] | None = None) -> None:
        self._live = live
        self._snapshot: Snapshot = {"ts": None, "ready": False, "queues": []}
        self._published_at = time.monotonic()
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot:
        """The newest snapshot, not ready while the dependencies do not answer."""
        return self.shown()

    def shown(self, max_age_seconds: float | None = None) -> Snapshot:
        """The newest snapshot as a display may show it: not ready while the dependencies
        do not answer or, given ``max_age_seconds``, once it is older than that."""
        snapshot = self._snapshot
        if snapshot.get("ready") and (
                (self._live is not None and not self._live())
                or (max_age_seconds is not None
                    and time.monotonic() - self._published_at > max_age_seconds)):
            return snapshot | {"ready": False}
        return snapshot

    @property
    def version(self) -> int:
        return self._version

    def publish(self, snapshot: Snapshot) -> None:
        """Replace the snapshot; called from the event loop that serves the waiters."""
        self._snapshot = snapshot
        self._published_at = time.monotonic()
        self._wake()

    def publish_not_ready(self) -> None:
        """The refresh failed: the figures stand, but not as live."""
        self.publish(self._snapshot | {"ready": False})

    def _wake(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_newer(self, version: int, timeout: float) -> int:
        """Return once the version passes ``version`` or ``timeout`` seconds pass."""
        if self._version > version:
            return self._version
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        return self._version

    async def watch_liveness(self, stop: asyncio.Event) -> None:
        """Wake the waiters the moment the dependencies stop answering (a Redis that hangs
        holds the refresher up, so no new snapshot would say so), until ``stop``."""
        was_live = True
        while not stop.is_set():
            live = self._live is None or self._live()
            if was_live and not live:
                self._wake()
            was_live = live
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LIVENESS_CHECK_SECONDS)
