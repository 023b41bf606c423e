"""CALLSTREAM_KAFKA_START: where a group with no committed offsets begins."""

from __future__ import annotations

import asyncio

from harness import (
    InProcessProcessor,
    call_stream,
    produce,
    totals_match,
    unique_settings,
    wait_until,
)
from stream.tools.broker import EmbeddedBroker


async def test_latest_skips_history_and_nothing_produced_after_ready(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, kafka_start="latest")
    old, _ = call_stream(50, queues=1, seed=1)
    await produce(settings, old)  # in several batches: tansu misreports their end
    async with InProcessProcessor(settings) as processor:
        # /readyz said 200: a message produced from now on is never skipped.
        new, expected = call_stream(40, queues=1, seed=2)
        await produce(settings, new)
        await wait_until(lambda: totals_match(processor.url, expected), timeout=20)
        await asyncio.sleep(1)
        assert await totals_match(processor.url, expected)  # and none of the history


async def test_window_start_reads_what_the_longest_window_holds(broker: EmbeddedBroker
                                                                ) -> None:
    settings = unique_settings(broker.bootstrap, kafka_start="window")
    recent, expected = call_stream(60, queues=2, seed=3)  # Kafka timestamps: just now
    await produce(settings, recent)
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: totals_match(processor.url, expected), timeout=20)
