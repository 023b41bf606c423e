"""Per-agent figures (contract §2 "Per agent") from scripted events, through the real Lua.

Events go through the production parse -> route -> atomic apply -> read path of
`harness.centre.Centre`; the figures come from the same function the snapshot uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from harness import (
    InProcessProcessor,
    ProcessorProcess,
    http_json,
    http_status,
    http_text,
    metric_value,
    produce,
    read_topic,
    unique_settings,
    wait_until,
)
from harness.agents import api_agents_as_recorded, assert_as_recorded, simulated_centre
from harness.centre import T0, WINDOWS, Centre, ev, new_store, queued
from stream.config import Policy
from stream.figures.agents import agent_snapshots
from stream.state.store import StateStore
from stream.timefmt import rfc3339 as iso
from stream.tools.broker import EmbeddedBroker


async def agent_figures(store: StateStore, now_ms: int) -> dict[str, dict[str, Any]]:
    """agent_id -> its snapshot, read as the refresher reads it."""
    queue_ids = await store.queue_ids()
    raw = await store.read_queues(queue_ids, now_ms)
    agents = await store.read_agents(now_ms)
    listed = agent_snapshots(agents.states, agents.state_ms,
                             {q: raw[q]["windows"] for q in queue_ids}, store.windows,
                             WINDOWS, now_ms, iso)
    return {a["agent_id"]: a for a in listed}


def state(agent: str, at: float, name: str, queues: list[str] | None = None) -> dict[str, Any]:
    return ev("agent.state", at, agent_id=agent, state=name,
              queues=["q", "r"] if queues is None else queues)


def answered(call: str, at: float, agent: str, queue: str = "q") -> dict[str, Any]:
    return ev("call.answered", at, call_id=call, queue_id=queue, agent_id=agent)


def ended(call: str, at: float, queue: str = "q", **extra: Any) -> dict[str, Any]:
    return ev("call.ended", at, call_id=call, queue_id=queue, **extra)


def agent_day() -> list[dict[str, Any]]:
    """a1: available, two calls (one on each queue) with wrapup after each, then away;
    a2 available from 300 s; a3 only ever away."""
    return [
        state("a1", 0, "available"),
        queued("c1", 10), answered("c1", 20, "a1"), state("a1", 20, "busy"),
        ended("c1", 80, agent_id="a1"), state("a1", 80, "wrapup"),     # handle 60 s
        state("a1", 100, "available"),
        queued("c2", 110, queue="r"), answered("c2", 120, "a1", queue="r"),
        state("a1", 120, "busy"),
        # the handle time is the answering agent's, whichever agent the transfer names
        ev("call.transferred", 200, call_id="c2", queue_id="r", to_queue_id="q",
           agent_id="a2"),                                              # handle 80 s
        state("a1", 200, "wrapup"), state("a1", 230, "away"),
        state("a2", 300, "available"), state("a3", 50, "away", ["q"]),
    ]


def expected_day(now_s: float) -> dict[str, Any]:
    """What agent_day() gives at T0 + now_s (390 or 400): a1 per window, a2, a3."""
    # 5m: buckets of 10 s, so the window starts at the bucket holding now - 300 s
    start_5m = (now_s - 300) // 10 * 10
    wrapup_5m = max(0, 100 - max(80, start_5m)) + 30
    return {
        "5m": {"answered": 1, "aht_seconds": 80.0,
               "occupancy": (80 + wrapup_5m) / (20 + 80 + wrapup_5m)},
        "15m": {"answered": 2, "aht_seconds": 70.0, "occupancy": (140 + 50) / (40 + 140 + 50)},
        "1h": {"answered": 2, "aht_seconds": 70.0, "occupancy": (140 + 50) / (40 + 140 + 50)},
    }


def window_figures(agent: dict[str, Any]) -> dict[str, Any]:
    return {w: {k: pytest.approx(v) if isinstance(v, float) else v
                for k, v in figures.items() if k in ("answered", "aht_seconds", "occupancy")}
            for w, figures in agent["windows"].items()}


@pytest.mark.parametrize("now_s", [400, 390])
async def test_an_agent_day_exact_in_every_window(centre: Centre, now_s: int) -> None:
    await centre.apply(*agent_day())
    agents = await agent_figures(centre.store, T0 + now_s * 1000)
    a1, a2, a3 = agents["a1"], agents["a2"], agents["a3"]
    assert (a1["state"], a1["state_seconds"]) == ("away", pytest.approx(now_s - 230))
    assert a1["since"] == iso(T0 + 230_000) and a1["queues"] == ["q", "r"]
    assert window_figures(a1) == {w: {k: pytest.approx(v) for k, v in f.items()}
                                  for w, f in expected_day(now_s).items()}
    # the 5m window at 390 s starts at 90 s: half of the wrapup 80-100 s is in it
    assert a1["windows"]["5m"]["state_seconds"] == {
        "available": pytest.approx(20), "busy": pytest.approx(80),
        "wrapup": pytest.approx(40 if now_s == 390 else 30)}
    # a2's open state is closed at now: available all along, occupancy 0
    assert a2["state_seconds"] == pytest.approx(now_s - 300)
    assert a2["windows"]["5m"] == {"answered": 0, "aht_seconds": None, "occupancy": 0.0,
                                   "state_seconds": {"available": pytest.approx(now_s - 300),
                                                     "busy": 0, "wrapup": 0}}
    assert a3["windows"]["1h"]["occupancy"] is None  # never staffed: absent
    assert a3["queues"] == ["q"]


async def test_duplicates_and_redeliveries_change_nothing(centre: Centre) -> None:
    events = agent_day()
    await centre.apply(*events)
    before = await agent_figures(centre.store, T0 + 400_000)
    assert set(await centre.apply(*events)) == {  # producer duplicates at new offsets
        ("agent.state", "duplicate"), ("call.queued", "duplicate"),
        ("call.answered", "duplicate"), ("call.ended", "duplicate"),
        ("call.transferred", "duplicate")}
    await centre.apply(*agent_day(), offset=0)  # redelivered offsets, new ids: skipped
    assert await agent_figures(centre.store, T0 + 400_000) == before


async def test_batches_split_anyhow_give_the_same_figures() -> None:
    """Agent rows go to their own slot, after the queues' rows in a batch: however the
    events fall into batches, and in whatever order the calls come (each leg's own
    events in their order, as Kafka keeps them per queue), the figures are the same."""
    events = agent_day()
    states = [e for e in events if e["type"] == "agent.state"]
    calls = [e for e in events if e["type"] != "agent.state"]
    c1 = [e for e in calls if e["call_id"] == "c1"]
    c2 = [e for e in calls if e["call_id"] == "c2"]
    orders = [[events], [[e] for e in events], [calls, states], [states, calls],
              [c2 + states[:3], c1 + states[3:]], [c2, states, c1]]
    seen = []
    for batches in orders:
        store = await new_store()
        centre = Centre(store, Policy())
        for batch in batches:
            await centre.apply(*batch)
        seen.append(await agent_figures(store, T0 + 400_000))
        await store.close()
    assert all(figures == seen[0] for figures in seen)


async def test_a_late_state_event_never_makes_time_overlap_or_go_negative(
        centre: Centre) -> None:
    await centre.apply(state("a1", 100, "available"), state("a1", 200, "busy"))
    await centre.apply(state("a1", 150, "wrapup"))  # applied after busy, ts before it
    a1 = (await agent_figures(centre.store, T0 + 300_000))["a1"]
    assert a1["state"] == "wrapup" and a1["since"] == iso(T0 + 200_000)
    assert a1["windows"]["1h"]["state_seconds"] == {
        "available": pytest.approx(100), "busy": 0, "wrapup": pytest.approx(100)}


async def test_a_state_begun_long_ago_costs_bounded_time(centre: Centre) -> None:
    epoch = {"event_id": "old-state", "type": "agent.state", "ts": iso(T0 - 20 * 3600_000),
             "agent_id": "a1", "state": "available", "queues": ["q"]}
    await centre.apply(epoch)
    await centre.apply(state("a1", 0, "busy"))
    a1 = (await agent_figures(centre.store, T0 + 60_000))["a1"]
    # the 1h window (2 min buckets) at T0 + 60 s starts at T0 - 1 h
    assert a1["windows"]["1h"]["state_seconds"]["available"] == pytest.approx(3600)
    assert a1["windows"]["1h"]["occupancy"] == pytest.approx(60 / 3660)
    assert a1["windows"]["5m"]["occupancy"] == pytest.approx(60 / 300)  # from T0 - 240 s


async def test_the_agent_cap_holds_against_6000_agent_ids(broker: EmbeddedBroker) -> None:
    """One producer names 6,000 agents: 5,000 (the default cap) are tracked, the rest
    dead-lettered, and no more agents than that reach the API or the metric labels."""
    settings = unique_settings(broker.bootstrap)
    now_ms = int(time.time() * 1000) - 60_000
    flood = [{"event_id": f"s{i}", "type": "agent.state", "ts": iso(now_ms),
              "agent_id": f"agent-{i}", "state": "available", "queues": ["q"]}
             for i in range(6000)]
    await produce(settings, flood)
    async with InProcessProcessor(settings) as processor:
        async def rejected() -> bool:
            return await metric_value(processor.url, "callstream_events_total",
                                      result="rejected") == 1000

        async def shown() -> bool:
            return len((await http_json(processor.url + "/api/agents"))["agents"]) == 5000

        await wait_until(rejected, timeout=60)
        await wait_until(shown, timeout=10)
        body = await http_json(processor.url + "/api/agents")
        tracked = body["agents"][0]["agent_id"]
        await produce(settings, [{"event_id": "again", "type": "agent.state",
                                  "ts": iso(now_ms + 1000), "agent_id": tracked,
                                  "state": "busy", "queues": ["q"]}])

        async def goes_on() -> bool:
            agent = await http_json(f"{processor.url}/api/agents/{tracked}")
            return bool(agent["state"] == "busy")

        await wait_until(goes_on, timeout=20)
        metrics = await http_text(processor.url + "/metrics")
        assert len({line.split('agent="')[1].split('"')[0] for line in metrics.splitlines()
                    if line.startswith("callstream_agent_state{")}) == 5000
        assert await http_status(processor.url + "/api/agents/agent-none") == 404
    dead = await read_topic(broker.bootstrap, settings.topic_dlq, 1000)
    assert len(dead) == 1000
    assert {dict(m.headers)["callstream-error"] for m in dead} == {b"too_many_agents"}


async def test_a_simulated_hour_matches_the_simulators_record(centre: Centre) -> None:
    now_ms = int(time.time() * 1000)
    events, days = simulated_centre((now_ms - 3550_000) // 1000 * 1000, 3500.0)
    for first in range(0, len(events), 400):
        await centre.apply(*events[first:first + 400])
    assert assert_as_recorded(await agent_figures(centre.store, now_ms), days,
                              now_ms) > 150  # the hour was a busy one


async def test_duplicates_and_kill_9_through_kafka_change_nothing(
        broker: EmbeddedBroker) -> None:
    """Half an hour of the simulated centre, all of it produced twice, through a
    processor killed with SIGKILL mid-stream: the API's figures are the record's."""
    now_ms = int(time.time() * 1000)
    events, days = simulated_centre((now_ms - 1900_000) // 1000 * 1000, 1800.0)
    settings = unique_settings(broker.bootstrap, kafka_batch_max=150)
    processor = await ProcessorProcess(settings).start()
    producing = asyncio.create_task(produce(settings, events + events))
    await asyncio.sleep(0.5)
    processor.kill()
    await producing
    restarted = await ProcessorProcess(settings).start()
    try:
        await api_agents_as_recorded(restarted.url, days)
        one = await http_json(restarted.url + "/api/agents/agent-3")
        assert one["agent_id"] == "agent-3" and one["queues"] == ["sales", "support"]
    finally:
        assert restarted.terminate() == 0
