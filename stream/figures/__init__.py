"""Figures: the contract's arithmetic on plain values, unit-tested without services.

Queue figures (service level, abandon ratio, ASA, AHT, EWT), agent figures (occupancy),
Erlang C staffing, caller-journey figures, the windows and their buckets, and the EWT each
queue had at the last refresh (``WaitEstimates``, which the callback policy decides on).
"""

from __future__ import annotations

from stream.figures.agents import agent_snapshots
from stream.figures.erlang import agents_required
from stream.figures.estimates import WaitEstimates
from stream.figures.journeys import journey_figures
from stream.figures.queue import agents_by_queue, queue_snapshot, ratio, window_figures
from stream.figures.windows import bucket_windows

__all__ = [
    "WaitEstimates",
    "agent_snapshots",
    "agents_by_queue",
    "agents_required",
    "bucket_windows",
    "journey_figures",
    "queue_snapshot",
    "ratio",
    "window_figures",
]
