"""Every figure of contract §2 computed from hand-written events, through the real Lua in Redis.

Events go through the same parse -> route -> atomic apply -> read -> figures path as the
processor, without Kafka: each test applies its events through the `Centre` of
`harness.centre`.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from harness import REDIS_URL
from harness.centre import (
    NOW,
    T0,
    WINDOWS,
    Centre,
    Rec,
    abandoned,
    answered,
    ended,
    ev,
    new_store,
    queued,
    transferred,
)
from stream.config import Policy, QueuePolicy
from stream.figures.queue import queue_snapshot
from stream.figures.windows import bucket_windows
from stream.ingest.batching import PreparedBatch, add
from stream.state.keys import KeySpace
from stream.state.store import QueueRules, RedisWentBack, StateStore
from stream.timefmt import rfc3339 as iso


async def test_service_level_abandon_ratio_asa_aht_with_ties(centre: Centre) -> None:
    await centre.apply(
        queued("c1", 0), answered("c1", 20),          # wait exactly sla: in SLA
        queued("c2", 0), answered("c2", 20.001),      # just over: not in SLA
        queued("c3", 0), abandoned("c3", 5),          # exactly 5 s: not short
        queued("c4", 0), abandoned("c4", 4.999),      # short abandon
        queued("c5", 10), answered("c5", 12),
        ended("c1", 80), ended("c5", 32),
    )
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert w["offered"] == 5 and w["answered"] == 3 and w["answered_in_sla"] == 2
    assert w["abandoned"] == 2 and w["short_abandoned"] == 1
    # SL = 2 / (3 + 2 - 1); abandon ratio = (2 - 1) / (3 + 2 - 1)
    assert w["service_level"] == pytest.approx(2 / 4)
    assert w["abandon_ratio"] == pytest.approx(1 / 4)
    assert w["asa_seconds"] == pytest.approx((20 + 20.001 + 2) / 3)
    assert w["aht_seconds"] == pytest.approx((60 + 20) / 2)  # c2 not ended: not in AHT
    assert centre.results == {("call.queued", "applied"): 5, ("call.answered", "applied"): 3,
                              ("call.abandoned", "applied"): 2, ("call.ended", "applied"): 2}


async def test_absent_ratios_while_divisor_is_zero(centre: Centre) -> None:
    await centre.apply(queued("c1", 0), queued("c2", 1), abandoned("c2", 2))  # short only
    figures = await centre.figures("q", NOW)
    w = figures["windows"]["5m"]
    assert w["service_level"] is None and w["abandon_ratio"] is None
    assert w["asa_seconds"] is None and w["aht_seconds"] is None
    assert figures["waiting"] == 1
    assert figures["longest_wait_seconds"] == pytest.approx(100.0)
    assert figures["ewt_seconds"] is None  # no agent staffed


async def test_orphans_count_in_totals_not_in_wait_figures(centre: Centre) -> None:
    results = await centre.apply(
        answered("x1", 10),     # never queued: answered, no wait
        abandoned("x2", 11),    # orphan abandon: never short
        ended("x3", 12),        # changes nothing
        queued("c1", 0), answered("c1", 30),
    )
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert w["answered"] == 2 and w["abandoned"] == 1 and w["short_abandoned"] == 0
    assert w["answered_in_sla"] == 0
    assert w["service_level"] == pytest.approx(0.0)  # 0 / (1 known answered + 0)
    assert w["abandon_ratio"] == pytest.approx(1 / 3)
    assert w["asa_seconds"] == pytest.approx(30.0)
    assert w["offered"] == 1
    assert results[("call.answered", "orphan")] == 1
    assert results[("call.abandoned", "orphan")] == 1
    assert results[("call.ended", "orphan")] == 1


async def test_conflicts_change_nothing(centre: Centre) -> None:
    await centre.apply(queued("c1", 0), queued("c1", 1))  # second queued while waiting
    await centre.apply(answered("c1", 10), abandoned("c1", 11))  # different terminal
    await centre.apply(ended("c1", 50), ended("c1", 60))  # second call.ended
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert (w["offered"], w["answered"], w["abandoned"]) == (1, 1, 0)
    assert w["aht_seconds"] == pytest.approx(40.0)
    assert centre.results[("call.queued", "conflict")] == 1
    assert centre.results[("call.abandoned", "conflict")] == 1
    assert centre.results[("call.ended", "conflict")] == 1


async def test_late_queued_is_offered_only_and_requeue_starts_a_visit(centre: Centre) -> None:
    await centre.apply(answered("c1", 30), queued("c1", 10))  # late start: ts before answer
    figures = await centre.figures("q", NOW)
    w = figures["windows"]["5m"]
    assert w["offered"] == 1 and w["answered"] == 1 and figures["waiting"] == 0
    assert w["asa_seconds"] is None  # the leg is not revised: still no known wait
    await centre.apply(ended("c1", 40), queued("c1", 50))  # back in the queue later
    figures = await centre.figures("q", NOW)
    assert figures["windows"]["5m"]["offered"] == 2 and figures["waiting"] == 1
    await centre.apply(answered("c1", 55))
    assert (await centre.figures("q", NOW))["windows"]["5m"]["asa_seconds"] == pytest.approx(5)


async def test_ended_while_waiting_is_an_abandon_and_negative_waits_are_zero(
        centre: Centre) -> None:
    await centre.apply(queued("c1", 0), ended("c1", 3),    # short abandon via call.ended
                       queued("c2", 0), ended("c2", 30),   # abandon via call.ended
                       queued("c3", 20), answered("c3", 15))  # negative wait -> 0
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert w["abandoned"] == 2 and w["short_abandoned"] == 1
    assert w["answered_in_sla"] == 1 and w["asa_seconds"] == pytest.approx(0.0)


async def test_transfers_answered_and_overflow(centre: Centre) -> None:
    await centre.apply(
        queued("c1", 0, queue="a"), answered("c1", 10, queue="a"),
        transferred("c1", 70, "a", "b"),       # answered leg: handle time ends at transfer
        queued("c2", 0, queue="a"), transferred("c2", 30, "a", "b"),  # overflow
    )
    a = await centre.figures("a", NOW)
    b = await centre.figures("b", NOW)
    wa, wb = a["windows"]["5m"], b["windows"]["5m"]
    assert wa["transferred_out"] == 2 and wa["abandoned"] == 0 and a["waiting"] == 0
    assert wa["aht_seconds"] == pytest.approx(60.0)
    assert wb["offered"] == 2 and b["waiting"] == 2
    assert b["longest_wait_seconds"] == pytest.approx(70.0)  # c2 waits in b since 30 s
    await centre.apply(answered("c2", 40, queue="b"))
    assert (await centre.figures("b", NOW))["windows"]["5m"]["asa_seconds"] == pytest.approx(10)


async def test_to_queue_event_consumed_before_its_transfer(centre: Centre) -> None:
    await centre.apply(queued("c1", 0, queue="a"))
    await centre.apply(answered("c1", 20, queue="b"))  # b hears of the call first
    await centre.apply(transferred("c1", 15, "a", "b"))
    b = await centre.figures("b", NOW)
    wb = b["windows"]["5m"]
    assert wb["answered"] == 1 and wb["offered"] == 1 and b["waiting"] == 0
    assert wb["asa_seconds"] is None  # orphan answer stays without a wait
    assert (await centre.figures("a", NOW))["windows"]["5m"]["transferred_out"] == 1


async def test_callback_accepted_leaves_the_queue_without_abandoning(centre: Centre) -> None:
    await centre.apply(queued("c1", 0), ev("call.callback_accepted", 40, call_id="c1",
                                           queue_id="q"))
    figures = await centre.figures("q", NOW)
    w = figures["windows"]["5m"]
    assert w["callback_accepted"] == 1 and w["abandoned"] == 0 and figures["waiting"] == 0
    assert w["abandon_ratio"] is None


async def test_duplicates_by_event_id_and_by_offset(centre: Centre) -> None:
    event = queued("c1", 0)
    await centre.apply(event)
    again = await centre.apply(event)  # producer duplicate at a new offset
    redelivered = await centre.apply(answered("c1", 5), offset=0)  # offset 0 was applied
    assert again == {("call.queued", "duplicate"): 1}
    assert redelivered == {("call.answered", "duplicate"): 1}
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert w["offered"] == 1 and w["answered"] == 0


async def test_windows_hold_only_their_span(centre: Centre) -> None:
    # now = T0 + 3000 s: 10 min, 30 min and 55 min ago
    now = T0 + 3000_000
    await centre.apply(queued("c1", 3000 - 600), queued("c2", 3000 - 1800),
                       queued("c3", 3000 - 3300), queued("c4", 3000 - 30))
    windows = (await centre.figures("q", now))["windows"]
    assert windows["5m"]["offered"] == 1
    assert windows["15m"]["offered"] == 2
    assert windows["1h"]["offered"] == 4
    assert (await centre.figures("q", now))["totals"]["offered"] == 4


async def test_windows_whose_buckets_differ_in_width_count_exactly() -> None:
    """Buckets of 20, 30 and 120 s (10m, 15m, 1h windows): the queue script counts by
    their common 10 s, then into each window's buckets."""
    windows = [600, 900, 3600]
    store = await StateStore.connect(REDIS_URL, bucket_windows(windows),
                                     KeySpace(f"f{uuid.uuid4().hex[:8]}"))
    try:
        centre = Centre(store, Policy())
        now = T0 + 3000_000
        ago = [300, 305, 315, 700, 2000]  # seconds before now
        await centre.apply(*[queued(f"c{i}", 3000 - a) for i, a in enumerate(ago)])
        await centre.apply(answered("c0", 3000 - 290), answered("c3", 3000 - 680),
                           abandoned("c1", 3000 - 200))
        raw = await store.read_queues(["q"], now)
        figures = queue_snapshot("q", raw["q"], {}, Policy().for_queue("q"), windows, now)
        w = figures["windows"]
        assert [w[k]["offered"] for k in ("10m", "15m", "1h")] == [3, 4, 5]
        assert [w[k]["answered"] for k in ("10m", "15m", "1h")] == [1, 2, 2]
        assert [w[k]["abandoned"] for k in ("10m", "15m", "1h")] == [1, 1, 1]
        assert w["15m"]["asa_seconds"] == pytest.approx(15.0)  # waits 10 s and 20 s
        assert figures["totals"]["offered"] == 5
    finally:
        await store.close()


async def test_agents_per_state_ewt_and_staffing(centre: Centre) -> None:
    agent = "agent.state"
    await centre.apply(
        ev(agent, 0, agent_id="a1", state="available", queues=["q", "r"]),
        ev(agent, 0, agent_id="a2", state="busy", queues=["q"]),
        ev(agent, 0, agent_id="a3", state="away", queues=["q"]),
        ev(agent, 1, agent_id="a3", state="wrapup", queues=["q"]),  # latest wins
        *[e for i in range(6) for e in (queued(f"h{i}", i), answered(f"h{i}", i + 1),
                                         ended(f"h{i}", i + 61))],
        queued("w1", 90), queued("w2", 91), queued("w3", 92),
    )
    figures = await centre.figures("q", NOW)
    assert figures["agents"] == {"available": 1, "busy": 1, "wrapup": 1, "away": 0,
                                 "offline": 0}
    # EWT = (3 waiting + 1 - 1 available) * AHT 60 s / 3 staffed = 60 s
    assert figures["ewt_seconds"] == pytest.approx(60.0)
    # Erlang C: 9 offered in 15 m, AHT 60 s -> A = 0.6 Erlang; 2 agents meet 80/20
    assert figures["agents_required"] == 2
    assert (await centre.figures("r", NOW))["agents"]["available"] == 1


async def test_rejected_messages_are_counted_once_and_change_nothing(centre: Centre) -> None:
    results = await centre.apply(b"{not json", json.dumps({"type": "call.queued"}).encode(),
                                 queued("c1", 0))
    assert results == {("unknown", "rejected"): 1, ("call.queued", "rejected"): 1,
                       ("call.queued", "applied"): 1}


async def test_per_queue_policy_thresholds() -> None:
    store = await new_store()
    policy = Policy(queues={"sales": QueuePolicy(sla_seconds=30, short_abandon_seconds=10)})
    centre = Centre(store, policy)
    await centre.apply(queued("c1", 0, queue="sales"), answered("c1", 25, queue="sales"),
                       queued("c2", 0, queue="sales"), abandoned("c2", 8, queue="sales"))
    w = (await centre.figures("sales", NOW))["windows"]["5m"]
    assert w["answered_in_sla"] == 1 and w["short_abandoned"] == 1
    await store.close()


# --- hardening (issue 7) ------------------------------------------------------------------


async def test_calls_sent_back_into_their_own_queue_open_new_legs(centre: Centre) -> None:
    back = transferred("c1", 30, "q", "q")
    await centre.apply(
        # answered, then the agent returns the caller to the queue, answered again
        queued("c1", 0), answered("c1", 5), back,
        answered("c1", 40), ended("c1", 70),
        # an overflow back into its own queue while still waiting, then answered
        queued("c2", 0), transferred("c2", 10, "q", "q"), answered("c2", 15), ended("c2", 45),
    )
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert (w["offered"], w["answered"], w["transferred_out"]) == (4, 3, 2)
    assert w["asa_seconds"] == pytest.approx((5 + 10 + 5) / 3)  # c2's new leg waited 5 s
    # handle times: c1 5->30 and 40->70, c2 15->45
    assert w["aht_seconds"] == pytest.approx((25 + 30 + 30) / 3)
    assert (await centre.figures("q", NOW))["waiting"] == 0
    assert centre.results[("call.transferred", "applied")] == 2
    # the same transfer again (a producer's duplicate) changes nothing in either leg
    assert await centre.apply(back) == {("call.transferred", "duplicate"): 1}
    w = (await centre.figures("q", NOW))["windows"]["5m"]
    assert (w["offered"], w["answered"], w["transferred_out"]) == (4, 3, 2)


async def test_offsets_are_kept_per_topic(centre: Centre) -> None:
    """A recreated or renamed topic starts its offsets again: not duplicates."""
    await centre.apply(queued("c1", 0), offset=7, topic="calls-v1")
    results = await centre.apply(queued("c2", 1), offset=7, topic="calls-v2")
    assert results == {("call.queued", "applied"): 1}
    assert (await centre.figures("q", NOW))["windows"]["5m"]["offered"] == 2
    assert await centre.apply(queued("c3", 2), offset=7, topic="calls-v1") == {
        ("call.queued", "duplicate"): 1}


async def test_a_batch_past_a_gap_waits_for_the_gap_to_be_read_again(centre: Centre) -> None:
    """Redis came back without writes this instance made: until the consumer has gone
    back to read them again, a batch past the gap (in flight when the loss was found) is
    refused; applied over the gap, the gap's offsets, once read again, would be skipped
    as applied."""
    calls = [queued(f"c{i}", i) for i in range(20)]
    await centre.apply(*calls[:10])
    lost = [k async for k in centre.store.client.scan_iter(
        match=centre.store.keys.queue("q") + "*")]
    await centre.store.client.delete(*lost)  # an AOF cut, a failover
    assert await centre.store.lost_positions() == {"t:0": 0}
    with pytest.raises(RedisWentBack):
        await centre.apply(*calls[10:])
    centre.store.rewound()  # the consumer reads again from offset 0
    centre.offset = 0
    await centre.apply(*calls)
    assert (await centre.figures("q", NOW))["windows"]["5m"]["offered"] == 20


async def test_events_older_than_a_day_are_stale(centre: Centre) -> None:
    old = T0 - 25 * 3600_000
    stale = {"event_id": "old", "type": "call.queued", "ts": iso(old), "call_id": "c0",
             "queue_id": "q"}
    epoch = {"event_id": "1970", "type": "call.queued", "ts": "1970-01-01T00:00:00Z",
             "call_id": "c1970", "queue_id": "q"}
    results = await centre.apply(stale, epoch, queued("c1", 0))
    assert results == {("call.queued", "stale"): 2, ("call.queued", "applied"): 1}
    figures = await centre.figures("q", NOW)
    assert figures["totals"]["offered"] == 1 and figures["waiting"] == 1
    # replaying history (clock=event), nothing is too old
    assert await centre.apply(stale | {"event_id": "old2", "call_id": "c0b"},
                              event_clock=True) == {("call.queued", "applied"): 1}


async def test_a_row_the_script_cannot_take_fails_alone_and_writes_nothing() -> None:
    store = await new_store()
    try:
        # A leg record no script wrote (a bug, or a hand edit): applying to it must fail
        # that one message, and the rest of the batch must still apply.
        await store.client.hset(store.keys.queue("q") + ":legs", "broken", "??")
        batch = PreparedBatch()
        now_ms = int(time.time() * 1000)
        records = [Rec("t", 0, i, None, json.dumps(e).encode()) for i, e in enumerate(
            [queued("c1", 0), answered("broken", 1), queued("c2", 2), answered("c1", 3)])]
        add(batch, records, now_ms, event_clock=False)
        await store.admit(batch.state, now_ms)
        failed: list[tuple[int, str]] = []

        async def on_failed(rows: list[tuple[int, str]]) -> None:
            failed.extend(rows)

        results = await store.apply(batch.state, {"q": QueueRules(20_000, 5_000)}, now_ms,
                                    on_failed)
        assert [index for index, _ in failed] == [1]
        assert results == ["applied", None, "applied", "applied"]
        raw = (await store.read_queues(["q"], NOW))["q"]
        assert raw["totals"] == {"offered": 2, "answered": 1, "answered_in_sla": 1}
        assert await store.client.hget(store.keys.queue("q") + ":legs", "broken") == "??"
    finally:
        await store.close()


async def test_forgotten_legs_idle_queues_and_offline_agents() -> None:
    store = await new_store()
    centre = Centre(store, Policy())
    try:
        await centre.apply(queued("lost", 0, queue="idle"), queued("c1", 0, queue="busy"),
                           ev("agent.state", 0, agent_id="gone", state="offline", queues=[]),
                           ev("agent.state", 0, agent_id="here", state="available",
                              queues=["busy"]))
        now = int(time.time() * 1000)
        assert await store.sweep(now) == ([], [])
        # a day later the agent offline since T0 (an hour ago) is forgotten; the waiting
        # calls that never ended are still there, and keep their queues
        assert await store.sweep(now + 23 * 3600_000 + 60_000) == ([], ["gone"])
        assert (await store.read_queues(["idle"], NOW))["idle"]["waiting"] == 1
        # past the leg memory (25 h) they stop waiting, and the idle queues are forgotten
        forgotten = await store.sweep(now + 25 * 3600_000 + 60_000)
        assert forgotten == (["busy", "idle"], [])
        assert await store.queue_ids() == []
        assert list(await store.agent_states()) == ["here"]
    finally:
        await store.close()


async def test_the_bounds_on_queues_and_agents_hold() -> None:
    store = StateStore((await new_store()).client, bucket_windows(WINDOWS),
                       KeySpace(f"f{uuid.uuid4().hex[:8]}"), max_queues=3, max_agents=2)
    try:
        batch = PreparedBatch()
        now_ms = int(time.time() * 1000)
        events = [queued(f"c{i}", i, queue=f"q{i}") for i in range(5)] + [
            ev("agent.state", 0, agent_id=f"a{i}", state="available", queues=["q0"])
            for i in range(4)]
        add(batch, [Rec("t", 0, i, None, json.dumps(e).encode())
                    for i, e in enumerate(events)], now_ms, event_clock=False)
        assert await store.admit(batch.state, now_ms) == ({"q3", "q4"}, {"a2", "a3"})
        # a second instance sees the same bounds
        other = StateStore(store.client, bucket_windows(WINDOWS), store.keys, max_queues=3,
                           max_agents=2)
        assert await other.admit(batch.state, now_ms) == ({"q3", "q4"}, {"a2", "a3"})
    finally:
        await store.close()


async def test_trends_of_the_last_hour(centre: Centre) -> None:
    """Service level per bucket of the 1 h window, and calls waiting per minute."""
    await centre.apply(queued("t1", 0), answered("t1", 5),      # in SLA, first bucket
                       queued("t2", 130), answered("t2", 160),  # over SLA, two buckets on
                       queued("t3", 200))                       # still waiting
    figures = await centre.figures("q", NOW + 200_000)
    trend = dict((t, v) for t, v in figures["trend"]["service_level"])
    first = (T0 // 1000) // 120 * 120
    assert trend[first] == 1.0 and trend[first + 120] == 0.0  # 2 min buckets, 30 of them
    assert len(figures["trend"]["service_level"]) in (30, 31)
    assert list(trend.values()).count(None) == len(trend) - 2
    assert figures["trend"]["waiting"] == [((NOW + 200_000) // 60_000 * 60, 1)]
