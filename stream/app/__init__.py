"""App: the commands that run callstream: ``run`` (the processor's wiring), ``demo``
(everything on one machine) and ``optout`` (the opt-out list)."""

from __future__ import annotations

from stream.app.demo import run_demo
from stream.app.run import run_processor

__all__ = [
    "run_demo",
    "run_processor",
]
