"""CALLSTREAM_REDIS_URL naming one node of a Redis Cluster: detected, queues over the slots."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from harness import (
    InProcessProcessor,
    call_stream,
    metric_value,
    produce,
    read_topic,
    totals_match,
    unique_settings,
    wait_until,
)
from harness.agents import api_agents_as_recorded, simulated_centre
from harness.journeys import (
    FIVE_S,
    Timeline,
    abandoned,
    all_journeys_match,
    answered,
    cross_queue_stream,
    model,
    queued,
    repeat_caller_stream,
    shown_journeys,
    wanted,
)
from harness.offers import reserve_all
from harness.redis_servers import (
    cluster_replica,
    cut_replication,
    fail_over,
    in_sync,
    redis_cluster,
)
from stream.act.callbacks import offer_id_for
from stream.config import Policy, QueuePolicy
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


# --- a node holding callers' slots fails over without its last writes ----------------------


@dataclass
class Round:
    """One round of calls, a caller at most one call in it: its events, what each caller
    did (for :func:`model`), and its missed calls (call, caller, queue, ts)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    timeline: Timeline = field(default_factory=list)
    misses: list[tuple[str, str, str, int]] = field(default_factory=list)


def rounds_of_calls(queues: list[str], start_ms: int, seed: int) -> list[Round]:
    """Three rounds of calls 40 minutes apart: 60 callers, then 30 more who first call in
    the second (so whether their third-round calls are repeat calls, and whether their
    misses are recovered, rests on what the second round wrote in their journeys)."""
    rng = random.Random(seed)
    rounds = []
    for n, callers in enumerate((range(60), range(90), range(90))):
        calls = Round()
        for i in callers:
            caller, call = f"4930{i:06d}", f"f{n}-{i}"
            queue, t = rng.choice(queues), start_ms + n * 2_400_000 + i * 10_000
            outcome = rng.choice(("answered", "answered", "abandoned", "short"))
            end = t + (2_000 if outcome == "short" else rng.randint(6, 60) * 1000)
            calls.events += [queued(call, queue, t, caller),
                             answered(call, queue, end) if outcome == "answered"
                             else abandoned(call, queue, end)]
            calls.timeline += [(t, "queued", caller, queue), (end, outcome, caller, queue)]
            if outcome == "abandoned":
                assert end - t >= FIVE_S
                calls.misses.append((call, caller, queue, end))
        rounds.append(calls)
    return rounds


def offers_of(rounds: list[Round]) -> tuple[dict[str, str], set[str]]:
    """The missed-call offers the rounds make (offer_id -> queue; the policy caps none)
    and those cancelled: their caller answered later, before anyone worked them."""
    made = {offer_id_for(call): queue for r in rounds for call, _, queue, _ in r.misses}
    answers = [(ts, caller) for r in rounds for ts, what, caller, _ in r.timeline
               if what == "answered"]
    cancelled = {offer_id_for(call) for r in rounds for call, caller, _, ts in r.misses
                 if any(c == caller and at > ts for at, c in answers)}
    return made, cancelled


def offer_counts(made: dict[str, str], cancelled: set[str]) -> dict[str, tuple[int, int]]:
    """queue -> (missed-call offers, cancelled), as the offers' metrics must show them."""
    return {queue: (sum(q == queue for q in made.values()),
                    sum(made[o] == queue for o in cancelled)) for queue in set(made.values())}


async def shown_offer_counts(url: str, queues: list[str]) -> dict[str, tuple[int, int]]:
    return {queue: (round(await metric_value(url, "callstream_callback_offers_total",
                                             queue=queue, kind="missed_call")),
                    round(await metric_value(url, "callstream_callback_results_total",
                                             queue=queue, result="cancelled")))
            for queue in queues}


async def shown_until(shown: Callable[[], Awaitable[Any]], want: Any, timeout: float) -> None:
    """Wait until ``shown()`` is ``want``; then compare, so that a failure shows both."""
    async def same() -> bool:
        return bool(await shown() == want)

    with contextlib.suppress(AssertionError):
        await wait_until(same, timeout=timeout)
    assert await shown() == want


async def test_a_callers_node_promoted_without_its_last_writes_is_mended(
        broker: EmbeddedBroker, cluster: list[int], caplog: pytest.LogCaptureFixture) -> None:
    """A primary holding callers' slots, not the queues', loses its replica's link while
    the processor writes the second round of calls there; it dies, and the replica takes
    its slots over without them. The queues' offsets show nothing lost, and Kafka holds
    nothing more to read: the journeys and callback offers of the third round are exact
    only if the facts the queues kept are taken again."""
    failing, live = cluster[2], cluster[:2]
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{live[0]}/0")
    slots = redis.RedisCluster(host="127.0.0.1", port=live[0])
    queues = [q for q in (f"f{n}" for n in range(40))
              if slots.get_node_from_key(settings.redis_prefix + ":{q:" + q + "}").port
              != failing][:2]
    slots.close()
    rounds = rounds_of_calls(queues, int(time.time() * 1000) - 3 * 3600_000, seed=21)
    policy = Policy(defaults=QueuePolicy(
        callback_hours="00:00-24:00", callback_max_pending=1000, callback_max_per_caller=100,
        callback_wait_seconds=864_000.0))  # missed-call offers only, none refused

    async def caught_up(upto: int) -> None:
        expected = model([e for r in rounds[:upto] for e in r.timeline])
        made, cancelled = offers_of(rounds[:upto])
        await shown_until(lambda: shown_journeys(processor.url, list(expected)),
                          wanted(expected), timeout=30)
        counts = offer_counts(made, cancelled)
        await shown_until(lambda: shown_offer_counts(processor.url, list(counts)), counts,
                          timeout=10)
        sent = await read_topic(broker.bootstrap, settings.topic_offers, len(made))
        assert sorted(json.loads(m.value)["offer_id"] for m in sent) == sorted(made)

    caplog.set_level(logging.WARNING, logger="stream.ingest.consumer")
    with cluster_replica(failing) as replica:
        async with InProcessProcessor(settings, policy) as processor:
            await produce(settings, rounds[0].events)
            await caught_up(1)
            await wait_until(lambda: _in_sync(failing, replica), timeout=10)
            cut_replication(replica)
            await produce(settings, rounds[1].events)
            await caught_up(2)
            # new callers' journeys and offers there, that the replica never got
            assert redis.Redis(port=failing).dbsize() > redis.Redis(port=replica).dbsize()
            fail_over(failing, replica, live)

            async def noticed() -> bool:
                return any("run id changed" in r.getMessage() for r in caplog.records)

            await wait_until(noticed, timeout=20)  # within a second, as calls go on
            await produce(settings, rounds[2].events)
            await caught_up(3)
            _, cancelled = offers_of(rounds)
            cancels = await read_topic(broker.bootstrap, settings.topic_cancels, len(cancelled))
            assert sorted(json.loads(m.value)["offer_id"] for m in cancels) == sorted(cancelled)


async def _in_sync(primary: int, replica: int) -> bool:
    return in_sync(primary, replica)
