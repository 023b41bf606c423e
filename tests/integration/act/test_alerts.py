"""Abandonment spike episodes (contract §4) through the real Lua in Redis, without Kafka.

Scripted histories go through the production parse -> route -> apply path (the `Centre`
of harness.centre), then the alert watch evaluates them second by second, as its timer
would, and the alerts' outbox in Redis says what would be published.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.alerts import SETTINGS, START, call, calls, open_store, spike_history
from harness.centre import Centre
from stream.act.alerts import AlertWatch
from stream.config import Policy
from stream.state.store import StateStore


@pytest.fixture
async def store() -> AsyncIterator[StateStore]:
    opened = await open_store(f"a{uuid.uuid4().hex[:8]}")
    yield opened
    await opened.close()


async def outbox(store: StateStore, queue: str) -> list[dict[str, Any]]:
    """The alert messages decided on a queue, in the order they were decided."""
    raw = await store.client.hgetall(store.keys.queue(queue) + ":out:alerts")
    return sorted((json.loads(v) for v in raw.values()), key=lambda m: (m["ts"], m["status"]))


async def replay(watches: list[AlertWatch], queues: list[str], from_s: float,
                 until_s: float, every_s: float = 5) -> None:
    """Evaluate from ``from_s`` to ``until_s`` (after START) as the timers of these
    instances would, all of them at each step, at once."""
    step = from_s
    while step <= until_s:
        now = START + round(step * 1000)
        await asyncio.gather(*(w.evaluate(queues, now, now) for w in watches))
        step += every_s


async def test_a_spike_after_a_calm_hour_fires_once_and_resolves_once(store: StateStore
                                                                       ) -> None:
    centre = Centre(store, Policy())
    await centre.apply(*spike_history("sales"))
    watch = AlertWatch(SETTINGS, store, Policy(), None)
    await replay([watch], ["sales"], 0, 3900)
    fired = await outbox(store, "sales")
    assert [m["status"] for m in fired] == ["firing"]
    first = fired[0]
    assert set(first) == {"alert_id", "kind", "status", "queue_id", "window",
                          "abandon_ratio", "baseline_ratio", "calls", "ts"}
    assert first["kind"] == "abandonment_spike" and first["queue_id"] == "sales"
    assert first["window"] == "5m" and first["calls"] >= 10
    assert first["abandon_ratio"] >= 0.2
    assert 0 < first["baseline_ratio"] < 0.05  # the calm hour's
    assert watch.snapshot_part("sales")["alerts"] == [first]

    await replay([watch], ["sales"], 3905, 4800)
    messages = await outbox(store, "sales")
    assert [m["status"] for m in messages] == ["firing", "resolved"]
    resolved = messages[1]
    assert resolved["alert_id"] == first["alert_id"]
    assert resolved["abandon_ratio"] < 0.1
    assert watch.snapshot_part("sales") == {"alerts": []}


async def test_a_quiet_queue_and_a_single_abandon_give_no_alert(store: StateStore) -> None:
    centre = Centre(store, Policy())
    await centre.apply(*calls("quiet", 0, 20, 300, abandon_every=25),  # 4 %, two hours
                       *call("idle-1", "idle", 3000, 40, answered=False))
    await replay([AlertWatch(SETTINGS, store, Policy(), None)], ["quiet", "idle"], 0, 6000, 10)
    assert await outbox(store, "quiet") == []
    assert await outbox(store, "idle") == []


async def test_a_spike_over_a_low_baseline_fires_by_the_baseline_only_with_enough_calls(
    store: StateStore,
) -> None:
    # 15 %: under the 20 % threshold, over 3 x a 4 % baseline (2 abandons in 50 calls).
    centre = Centre(store, Policy())
    for queue, count in (("enough", 40), ("few", 9)):
        every = 280 / count
        spike = [e for i in range(count)
                 for e in call(f"{queue}-s{i}", queue, 3600 + i * every,
                               30 if i % 20 in (7, 13, 19) else 10, i % 20 not in (7, 13, 19))]
        await centre.apply(*calls(queue, 0, 60, 50, abandon_every=25), *spike)
    # The same spike with no call in the hour before: no baseline, nothing fires.
    await centre.apply(*[e for i in range(40)
                         for e in call(f"fresh-s{i}", "fresh", 3600 + i * 7,
                                       30 if i % 20 in (7, 13, 19) else 10,
                                       i % 20 not in (7, 13, 19))])
    watch = AlertWatch(SETTINGS, store, Policy(), None)
    await replay([watch], ["enough", "few", "fresh"], 0, 3900)
    fired = await outbox(store, "enough")
    assert [m["status"] for m in fired] == ["firing"]
    assert 0.1 <= fired[0]["abandon_ratio"] < 0.2
    assert fired[0]["baseline_ratio"] == pytest.approx(2 / 50)
    assert await outbox(store, "few") == []
    assert await outbox(store, "fresh") == []


async def test_several_instances_and_restarts_share_one_episode(store: StateStore) -> None:
    centre = Centre(store, Policy())
    await centre.apply(*spike_history("sales"))
    others = [await open_store(store.keys.root) for _ in range(2)]
    try:
        watches = [AlertWatch(SETTINGS, s, Policy(), None) for s in (store, *others)]
        await replay(watches, ["sales"], 0, 3900, every_s=2)
        # The instance that fired stops; one that starts afresh carries on.
        fresh = AlertWatch(SETTINGS, others[1], Policy(), None)
        await replay([watches[1], fresh], ["sales"], 3902, 4800, every_s=2)
    finally:
        for opened in others:
            await opened.close()
    messages = await outbox(store, "sales")
    assert [m["status"] for m in messages] == ["firing", "resolved"]
    assert len({m["alert_id"] for m in messages}) == 1


async def test_the_baseline_buckets_outlive_the_hour(store: StateStore) -> None:
    await Centre(store, Policy()).apply(*call("c1", "q", 3000, 10, answered=True))
    bucket = (START + 3010_000) // 120_000
    ttl = await store.client.ttl(f"{store.keys.queue('q')}:w:3600:{bucket}")
    assert ttl > 3600 + 300


async def test_the_demo_incident_fires_an_alert_that_resolves_after_recovery(
    store: StateStore,
) -> None:
    import argparse
    from datetime import UTC, datetime

    from stream.app.demo import SIMULATION
    from stream.tools import simulate

    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    command = simulate.command_from_args(parser.parse_args(["simulate", *SIMULATION]))
    incident = command.config.incidents[0]
    # The demo starts with its last hour fast-forwarded: the incident comes after it.
    until = int(incident.start_seconds + incident.duration_seconds + 900)
    command = simulate.command_from_args(parser.parse_args(
        ["simulate", *SIMULATION, "--duration", str(until), "--speed", "0"]))
    start = datetime.fromtimestamp(START / 1000, UTC)
    events = list(simulate.generate(command.config, start))
    queues = [q.queue_id for q in command.config.queues]
    centre, watch = Centre(store, Policy()), AlertWatch(SETTINGS, store, Policy(), None)
    decided: list[tuple[float, dict[str, Any]]] = []
    applied = 0
    for step in range(0, until, 5):
        now = START + step * 1000
        due = [e for e in events[applied:]
               if datetime.fromisoformat(e["ts"]).timestamp() * 1000 <= now]
        if due:
            await centre.apply(*due)
            applied += len(due)
        decided += [(step, m) for m in await watch.evaluate(queues, now, now)]
    incident_end = incident.start_seconds + incident.duration_seconds
    fired = [(s, m) for s, m in decided if m["status"] == "firing"]
    assert fired, "the incident fired no alert"
    assert all(incident.start_seconds < s <= incident_end for s, _ in fired), decided
    for _, alert in fired:
        ends = [s for s, m in decided
                if m["alert_id"] == alert["alert_id"] and m["status"] == "resolved"]
        assert len(ends) == 1 and incident_end < ends[0] < incident_end + 600, decided
    assert len(decided) == 2 * len(fired)
