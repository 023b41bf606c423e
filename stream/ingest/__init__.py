"""Ingest: Kafka in, batches applied, positions committed.

Owns the Kafka client options (``kafka``), parsing and routing a batch of records
(``batching``), the dead letters and the order of a batch's steps up to Kafka's commit
(``checkpoint``), and the consumer loop with its rebalances (``consumer``). It hands the
caller facts on to its hooks and reports its counts to an observer: it knows neither what
acts on them nor how they are shown.
"""

from __future__ import annotations

from stream.ingest.batching import PreparedBatch
from stream.ingest.checkpoint import BatchHook, Checkpoint, FactHandler
from stream.ingest.consumer import Consumer
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.ingest.observer import PipelineObserver

__all__ = [
    "BatchHook",
    "Checkpoint",
    "Consumer",
    "FactHandler",
    "PipelineObserver",
    "PreparedBatch",
    "all_topics",
    "ensure_topics",
    "make_producer",
]
