"""A message claimed from a queue's outbox (see stream/publish_once.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish, claimed by this instance."""

    queue_id: str
    msg_id: str
    payload: str
    #: when another instance claimed it before and never confirmed it (ms), or None
    taken_over_from_ms: int | None
