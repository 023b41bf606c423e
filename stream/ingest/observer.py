"""What the consumer reports of its work, to whoever counts it (the Prometheus metrics).

The consumer knows no metrics library: it hands its counts to an observer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class PipelineObserver(Protocol):
    """Told of every batch's results, its events' delay and each partition's lag."""

    def counted(self, results: Mapping[tuple[str, str], int]) -> None:
        """(event type, result) -> messages of a batch: one result per consumed message."""

    def delayed(self, now_ms: float, event_ts_ms: Sequence[int]) -> None:
        """The applied events' times, against the moment they were applied."""

    def behind(self, partition: int, messages: int) -> None:
        """An assigned partition's lag after a fetch."""

    def released(self, partition: int) -> None:
        """A partition revoked: its lag is no longer this instance's to report."""
