"""Readiness and liveness: what ``/readyz`` and ``/healthz`` answer from.

Readiness: Kafka and Redis each answered within ``PROBE_TIMEOUT_SECONDS``, and the consumer
holds its assignment with a fetch position on every partition. Liveness: the consumer loop
is not wedged, i.e. it has not gone ``stall_seconds`` without progress while messages wait
and both dependencies answer (an outage is a readiness matter: restarting would not help).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: A dependency that takes longer than this to answer counts as unreachable (contract §5).
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_EVERY_SECONDS = 1.0
#: No consumer progress for this long while work waits: the loop is wedged.
STALL_SECONDS = 60.0

Probe = Callable[[], Awaitable[Any]]
_NAMES = {"kafka": "Kafka", "redis": "Redis"}


class Health:
    """Shared state of the dependencies and the consumer loop.

    Written by the start-up code, the dependency probes and the consumer; read by the
    HTTP handlers and the snapshot refresher. ``None`` for a dependency means not tried yet.
    """

    def __init__(self, stall_seconds: float = STALL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._reachable: dict[str, bool | None] = {"kafka": None, "redis": None}
        self._errors: dict[str, str] = {}
        self.assigned = False
        self._progress_at = clock()
        self._waiting = 0

    # --- dependencies ---------------------------------------------------------------------

    def reachable(self, dependency: str, ok: bool, error: BaseException | str | None = None
                  ) -> None:
        """Record the outcome of a contact with ``dependency`` (``"kafka"`` or ``"redis"``)."""
        self._reachable[dependency] = ok
        if ok:
            self._errors.pop(dependency, None)
        elif error is not None:
            self._errors[dependency] = _describe(error)

    @property
    def kafka_ok(self) -> bool:
        return self._reachable["kafka"] is True

    @kafka_ok.setter
    def kafka_ok(self, ok: bool) -> None:
        self.reachable("kafka", ok)

    @property
    def redis_ok(self) -> bool:
        return self._reachable["redis"] is True

    @redis_ok.setter
    def redis_ok(self, ok: bool) -> None:
        self.reachable("redis", ok)

    @property
    def ready(self) -> bool:
        return self.kafka_ok and self.redis_ok and self.assigned

    # --- the consumer loop ----------------------------------------------------------------

    def waiting(self, messages: int) -> None:
        """The consumer knows of ``messages`` not yet applied (fetched, or lag): work waits."""
        self._waiting = max(0, messages)

    def progressed(self, waiting: int = 0) -> None:
        """The consumer loop moved: a batch applied, or a fetch that found nothing new;
        ``waiting`` is what it still knows to be waiting (its lag)."""
        self._progress_at = self._clock()
        self._waiting = max(0, waiting)

    @property
    def stalled_seconds(self) -> float:
        """How long work has waited with no progress (0 when nothing waits)."""
        if self._waiting == 0:
            return 0.0
        return max(0.0, self._clock() - self._progress_at)

    @property
    def live(self) -> bool:
        """False only for a wedged loop: no progress for ``stall_seconds`` while messages
        wait and both dependencies answer."""
        if not (self.kafka_ok and self.redis_ok):
            return True
        return self.stalled_seconds < self.stall_seconds

    # --- what the endpoints say -----------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` body: each check, and for each failed one what to look at."""
        down = {
            name: self._reason(name)
            for name, ok in (("kafka", self.kafka_ok), ("redis", self.redis_ok))
            if not ok
        }
        if not self.assigned:
            down["consumer"] = ("no partitions assigned yet" if not down else
                                f"waiting for {' and '.join(_NAMES[name] for name in down)}")
        return {"ready": self.ready, "kafka": self.kafka_ok, "redis": self.redis_ok,
                "assigned": self.assigned, "down": down}

    def liveness(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        stalled = round(self.stalled_seconds, 1)
        body: dict[str, Any] = {"status": "ok" if self.live else "wedged",
                                "waiting": self._waiting, "stalled_seconds": stalled}
        if not self.live:
            body["reason"] = (f"the consumer loop made no progress for {stalled} s while "
                              f"{self._waiting} messages wait")
        return body

    def _reason(self, name: str) -> str:
        setting = {"kafka": "CALLSTREAM_KAFKA_BOOTSTRAP", "redis": "CALLSTREAM_REDIS_URL"}[name]
        if self._reachable[name] is None:
            return f"not reached yet (check {setting})"
        error = self._errors.get(name)
        return f"unreachable{f' ({error})' if error else ''}; check {setting}"


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, TimeoutError):
        return str(error) or f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
    return f"{type(error).__name__}: {error}"[:200]


async def watch(health: Health, dependency: str, probe: Probe, stop: asyncio.Event,
                every: float = PROBE_EVERY_SECONDS,
                timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Call ``probe`` every ``every`` seconds until ``stop``; a failure or an answer later
    than ``timeout`` marks ``dependency`` unreachable, an answer in time reachable."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(probe(), timeout)
            health.reachable(dependency, True)
        except Exception as exc:  # any failure of a probe is the dependency's
            health.reachable(dependency, False, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
