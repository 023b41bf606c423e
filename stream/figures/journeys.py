"""A queue's caller-journey figures (contract §2) from its stored sums over the last day."""

from __future__ import annotations

from typing import Any, Protocol

from stream.figures.queue import ratio


class JourneySums(Protocol):
    """What the figures need of a queue's journey sums (``state.journeys.QueueJourneys``)."""

    @property
    def missed(self) -> int: ...
    @property
    def offered_with_caller(self) -> int: ...
    @property
    def repeat_calls(self) -> int: ...
    @property
    def recovered(self) -> int: ...
    @property
    def recovery_ms(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def lost_total(self) -> int: ...


def journey_figures(sums: JourneySums, lost_caller_value: float) -> dict[str, Any]:
    """A queue's journey figures over the last day (``/api/queues/{id}`` "journeys")."""
    recovery_ms = ratio(sums.recovery_ms, sums.recovered)
    return {
        "missed": sums.missed,
        "recovered": sums.recovered,
        "lost": sums.lost,
        "repeat_calls": sums.repeat_calls,
        "offered_with_caller": sums.offered_with_caller,
        "repeat_call_ratio": ratio(sums.repeat_calls, sums.offered_with_caller),
        "recovery_seconds": None if recovery_ms is None else recovery_ms / 1000,
        "lost_total": sums.lost_total,
        "lost_value": sums.lost * lost_caller_value if lost_caller_value else None,
    }
