"""Act: what callstream decides from the state, and publishes exactly once.

Owns the callback offers and their pure policy (``callbacks``), the abandonment alerts
(``alerts``), the caller journeys' steps and their day's end (``journeys``), the janitor
that sweeps idle state (``janitor``), and the outboxes published once across instances
(``publish_once``). It decides on state and figures, never on what is displayed.
"""

from __future__ import annotations

from stream.act.alerts import AlertWatch
from stream.act.callbacks import Callbacks
from stream.act.janitor import sweep_forever
from stream.act.journeys import JourneyHandler, keep_journeys
from stream.act.publish_once import Forward, OncePublisher

__all__ = [
    "AlertWatch",
    "Callbacks",
    "Forward",
    "JourneyHandler",
    "OncePublisher",
    "keep_journeys",
    "sweep_forever",
]
