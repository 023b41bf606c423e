"""The latest live snapshot, shared by the API, the wallboard stream and MQTT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

Snapshot = dict[str, Any]


class SnapshotHub:
    """Holds the newest snapshot and wakes every waiter when a newer one is published."""

    def __init__(self, live: Callable[[], bool] | None = None) -> None:
        #: the dependencies answer now: a snapshot is shown as ready only while they do,
        #: from the moment they stop, not from the next refresh
        self._live = live
        self._snapshot: Snapshot = {"ts": None, "ready": False, "queues": []}
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot:
        if self._live is not None and self._snapshot.get("ready") and not self._live():
            return self._snapshot | {"ready": False}
        return self._snapshot

    @property
    def version(self) -> int:
        return self._version

    def publish(self, snapshot: Snapshot) -> None:
        """Replace the snapshot; called from the event loop that serves the waiters."""
        self._snapshot = snapshot
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
