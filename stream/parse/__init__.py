"""Parse: a Kafka message's value into one of the contract's events, or a rejection.

Owns the event models (section 1 of the contract), the ``ts`` forms, caller numbers
(normalised, masked) and the rejection reasons that name what a dead letter broke. Pure:
no Kafka, no storage.
"""

from __future__ import annotations

from stream.parse.events import EVENT_TYPES, Event, Rejection, mask_caller, normalise_caller, parse

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Rejection",
    "mask_caller",
    "normalise_caller",
    "parse",
]
