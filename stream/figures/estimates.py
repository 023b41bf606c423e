"""Each queue's estimated wait as of the last refresh, shared by whoever decides on it.

The snapshot refresher computes every queue's EWT (``queue_snapshot``) and writes it here;
the callback policy reads it when a call is queued (contract §3 ``ewt_threshold``), so
the decision never reaches into what is published for displays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class WaitEstimates:
    """queue_id -> EWT in seconds, for the queues that have one."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def update(self, queues: Iterable[Mapping[str, Any]]) -> None:
        """Take the EWTs of freshly built queue figures (``queue_id``, ``ewt_seconds``)."""
        self._seconds = {queue["queue_id"]: float(queue["ewt_seconds"]) for queue in queues
                         if queue.get("ewt_seconds") is not None}

    def seconds(self) -> Mapping[str, float]:
        """Every queue's EWT as of the last update; absent where the queue has none."""
        return self._seconds
