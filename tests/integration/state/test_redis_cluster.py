"""CALLSTREAM_REDIS_URL naming one node of a Redis Cluster: detected, queues over the slots."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from harness import (
    InProcessProcessor,
    call_stream,
    produce,
    totals_match,
    unique_settings,
    wait_until,
)
from harness.agents import api_agents_as_recorded, simulated_centre
from harness.journeys import (
    all_journeys_match,
    cross_queue_stream,
    model,
    repeat_caller_stream,
)
from harness.offers import reserve_all
from harness.redis_servers import redis_cluster
from stream.figures.windows import bucket_windows
from stream.state.keys import KeySpace
from stream.state.offers import OfferStore
from stream.state.store import StateStore
from stream.tools.broker import EmbeddedBroker


@pytest.fixture
def cluster() -> Iterator[list[int]]:
    """Three primaries of the test's own, all 16384 slots covered."""
    with redis_cluster(3) as ports:
        yield ports


async def test_figures_are_exact_on_a_cluster(broker: EmbeddedBroker, cluster: list[int]
                                              ) -> None:
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{cluster[1]}/0")
    events, expected = call_stream(600, queues=6)
    await produce(settings, events)
    await produce(settings, events[:300])  # duplicates change nothing on a cluster either
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: totals_match(processor.url, expected), timeout=30)
    holders = {redis.Redis(port=p).dbsize() > 0 for p in cluster}
    assert holders == {True}  # the queues' keys are spread over every primary


async def test_agent_figures_are_exact_on_a_cluster(broker: EmbeddedBroker,
                                                    cluster: list[int]) -> None:
    """Per-agent calls sit in the queues' slots, agent states in their own: no script
    spans two slots, and the figures are the simulator's record."""
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{cluster[0]}/0")
    events, days = simulated_centre((int(time.time() * 1000) - 1900_000) // 1000 * 1000, 1800.0)
    await produce(settings, events)
    await produce(settings, events[:500])  # duplicates
    async with InProcessProcessor(settings) as processor:
        await api_agents_as_recorded(processor.url, days)


async def test_caller_journeys_are_exact_across_nodes(broker: EmbeddedBroker,
                                                      cluster: list[int]) -> None:
    """Callers' journeys and queues' sums sit in slots of their own, over every node; a
    miss on one queue recovered on another (often on another node) counts once."""
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{cluster[2]}/0")
    start = int(time.time() * 1000) - 3 * 3600_000
    events, timeline = repeat_caller_stream(600, seed=5, start_ms=start)
    cross, cross_timeline = cross_queue_stream(40, start)
    expected = model(timeline + cross_timeline)
    assert expected["east"]["recovered"] == 40
    await produce(settings, events + cross)
    await produce(settings, cross[:80])  # duplicates change nothing
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: all_journeys_match(processor.url, expected), timeout=60)
    prefix = settings.redis_prefix
    journeys_on = {bool(redis.Redis(port=p).keys(f"{prefix}:{{c:*")) for p in cluster}
    assert journeys_on == {True}  # callers' journeys on every primary


async def test_many_small_script_calls_answer_in_order_on_a_cluster(cluster: list[int]
                                                                    ) -> None:
    """Callback reservations for 250 callers over the three nodes' slots, taken a slot's
    calls at a time: each answers as alone, in order."""
    await reserve_all(f"redis://127.0.0.1:{cluster[0]}")


async def test_a_thousand_callers_slots_in_one_step_on_a_cluster(cluster: list[int]) -> None:
    """A batch's callers spread over a thousand slots: a script call each, more than a
    node's connection pool holds at once; every one is taken, none refused for want of a
    connection (the pipeline would retry it for ever)."""
    store = await StateStore.connect(f"redis://127.0.0.1:{cluster[0]}/0", bucket_windows([300]),
                                     KeySpace(f"t{uuid.uuid4().hex[:8]}"))
    try:
        callers = [f"4420{n:07d}" for n in range(1000)]
        answers = await OfferStore(store).reserve(
            [(c, f"o-{c}", f"call-{c}", "q", "missed_call") for c in callers],
            int(time.time() * 1000), [2] * len(callers))
    finally:
        await store.close()
    assert answers == ["ok"] * len(callers)
