"""A dependency that went away: one log line when it goes, one when it is back, and the
backoff between retries in between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time


class Outage:
    """Tracks one dependency (Redis, Kafka, the MQTT broker) across failed attempts."""

    def __init__(self, name: str, setting: str, log: logging.Logger,
                 first_delay: float = 0.05, max_delay: float = 2.0) -> None:
        self.name, self.setting, self.log = name, setting, log
        self.first_delay, self.max_delay = first_delay, max_delay
        self.since: float | None = None
        self._delay = first_delay

    def failed(self, exc: BaseException) -> None:
        """An attempt failed; logged only when this starts an outage."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.error("%s unreachable (%s: %s); retrying, check %s", self.name,
                           type(exc).__name__, exc, self.setting)

    async def backoff(self, stop: asyncio.Event | None = None) -> None:
        """Wait before the next attempt (less if ``stop`` is set meanwhile), twice as long
        each time, up to ``max_delay``."""
        if stop is None:
            await asyncio.sleep(self._delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._delay)
        self._delay = min(self._delay * 2, self.max_delay)

    def recovered(self) -> bool:
        """An attempt succeeded; True (and logged) when it ends an outage."""
        self._delay = self.first_delay
        if self.since is None:
            return False
        self.log.warning("%s reachable again after %.1f s", self.name,
                         time.monotonic() - self.since)
        self.since = None
        return True
