"""Caller journeys (contract §2) from scripted events, through the production path: parse,
the queue scripts, the relay of caller facts to the callers' journeys, the queues' sums.

Times are days in the past and applied with the event clock (``clock=event``), so a
test can move "now" past the day a miss has to be recovered in.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest

from harness import REDIS_URL
from harness.journeys import model, repeat_caller_stream
from stream.act.journeys import JourneyHandler, declare_lost
from stream.config import Policy
from stream.figures.journeys import journey_figures
from stream.figures.windows import bucket_windows
from stream.ingest.batching import PreparedBatch, add
from stream.ingest.checkpoint import relay
from stream.state.journeys import JourneyStore
from stream.state.keys import KeySpace
from stream.state.rows import CallerFact
from stream.state.store import RELAYED_KEEP_MS, QueueRules, StateStore
from stream.timefmt import rfc3339 as iso

HOUR = 3600.0
DAY = 24 * HOUR
T0 = (int(time.time()) // 3600 - 24 * 5) * 3600 * 1000  # an hour boundary, five days ago


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset = "t", 0, offset
        self.key, self.value, self.headers = None, value, ()


class Journeys:
    """Applies events as the consumer does and relays their caller facts to journeys."""

    def __init__(self, store: StateStore, policy: Policy) -> None:
        self.store = store
        self.state = JourneyStore(store)
        self.policy = policy
        self.handler = JourneyHandler(self.state, policy)
        self.offset = 0

    async def apply(self, *events: dict[str, Any], relay_facts: bool = True
                    ) -> list[CallerFact]:
        records = []
        for event in events:
            records.append(Rec(self.offset, json.dumps(event).encode()))
            self.offset += 1
        batch = PreparedBatch()
        now_ms = int(time.time() * 1000)
        add(batch, records, now_ms, event_clock=True)  # type: ignore[arg-type]
        rules = {q: QueueRules(20_000, round(self.policy.for_queue(q).short_abandon_seconds
                                             * 1000)) for q in batch.state.queue_ids}
        await self.store.admit(batch.state, now_ms)

        async def no_failure(failed: list[tuple[int, str]]) -> None:
            raise AssertionError(f"not applied: {failed}")

        await self.store.apply(batch.state, rules, now_ms, no_failure)
        if relay_facts:
            await relay(self.store, [self.handler], batch.state.caller_facts, now_ms)
        return batch.state.caller_facts

    async def leftovers(self) -> None:
        """What the janitor does: relay the facts still in the queues' outboxes."""
        facts = await self.store.pending_caller_facts(await self.store.queue_ids())
        await relay(self.store, [self.handler], facts, int(time.time() * 1000))

    async def again(self) -> None:
        """What the consumer does after Redis went back: the facts relayed lately, again."""
        facts = await self.store.relayed_caller_facts(await self.store.queue_ids())
        await self.handler.take_again(facts, int(time.time() * 1000))

    async def keep(self, now_ms: int) -> None:
        """One round of the lost-caller keeper at ``now_ms``."""
        await declare_lost(self.state, await self.store.queue_ids(), now_ms, prune=True)

    async def figures(self, queue_id: str, at: float) -> dict[str, Any]:
        now_ms = T0 + round(at * 1000)
        sums = await self.state.read([queue_id], now_ms)
        return journey_figures(sums[queue_id], self.policy.for_queue(queue_id).lost_caller_value)


@pytest.fixture
async def journeys() -> Any:
    store = await StateStore.connect(REDIS_URL, bucket_windows([300]),
                                     KeySpace(f"j{uuid.uuid4().hex[:8]}"), caller_facts=True)
    yield Journeys(store, Policy.model_validate(
        {"queues": {"sales": {"lost_caller_value": 40}}}))
    await store.close()


_ids = iter(range(10**9))


def ev(kind: str, at: float, **fields: Any) -> dict[str, Any]:
    """An event ``at`` seconds after T0."""
    return {"event_id": f"e{next(_ids)}", "type": kind, "ts": iso(T0 + round(at * 1000)),
            **fields}


def queued(call: str, at: float, queue: str = "sales", caller: str | None = "+44 20 7946 0001"
           ) -> dict[str, Any]:
    return ev("call.queued", at, call_id=call, queue_id=queue, caller=caller)


def answered(call: str, at: float, queue: str = "sales") -> dict[str, Any]:
    return ev("call.answered", at, call_id=call, queue_id=queue, agent_id="a1")


def abandoned(call: str, at: float, queue: str = "sales") -> dict[str, Any]:
    return ev("call.abandoned", at, call_id=call, queue_id=queue)


def attempt(call: str, at: float, result: str, queue: str = "sales") -> dict[str, Any]:
    return ev("call.callback_attempt", at, call_id=call, queue_id=queue, offer_id="o1",
              result=result)


def states(figures: dict[str, Any]) -> tuple[int, int, int]:
    return figures["missed"], figures["recovered"], figures["lost"]


async def test_abandon_then_callback_reached_is_recovered(journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0), abandoned("c1", 60))
    assert states(await journeys.figures("sales", 120)) == (1, 0, 0)
    await journeys.apply(attempt("c1", 600, "no_answer"))
    assert states(await journeys.figures("sales", 700)) == (1, 0, 0)
    await journeys.apply(attempt("c1", 1800, "answered"))
    figures = await journeys.figures("sales", 1900)
    assert states(figures) == (0, 1, 0)
    assert figures["recovery_seconds"] == pytest.approx(1740)


async def test_a_fact_left_in_an_outbox_by_an_older_version_is_relayed(
        journeys: Journeys) -> None:
    """Outboxes once held one fact per entry, keyed by its token: one left there by a
    crash before an upgrade is still relayed, and then leaves the outbox."""
    await journeys.apply(queued("c1", 0), abandoned("c1", 60))
    outbox = journeys.store.keys.queue("sales") + ":facts"
    await journeys.store.client.delete(outbox)
    token = "Elegacy-answer"
    await journeys.store.client.hset(outbox, token, json.dumps(
        [token, "answered", "c9", T0 + 120_000, "442079460001", 30_000]))
    assert states(await journeys.figures("sales", 130)) == (1, 0, 0)
    await journeys.leftovers()
    assert states(await journeys.figures("sales", 130)) == (0, 1, 0)
    assert await journeys.store.client.hlen(outbox) == 0


async def test_a_journey_stored_as_a_hash_by_an_older_version_goes_on(
        journeys: Journeys) -> None:
    """Journeys were once hashes: one left by an upgrade is read, and written back in
    today's form with its TTL, its miss recovered by the caller's next answered call."""
    await journeys.apply(queued("c1", 0), abandoned("c1", 60))
    key = journeys.store.keys.caller("442079460001") + ":j"
    stored = await journeys.store.client.get(key)
    fields = dict(line.split("\t") for line in stored.split("\n"))
    assert fields["q"] == str(T0) and fields["m:sales"] == str(T0 + 60_000)
    await journeys.store.client.delete(key)
    await journeys.store.client.hset(key, mapping=fields)
    await journeys.apply(queued("c2", HOUR, queue="support"),
                         answered("c2", HOUR + 10, queue="support"))
    sales = await journeys.figures("sales", HOUR + 20)
    assert states(sales) == (0, 1, 0)
    assert sales["recovery_seconds"] == pytest.approx(HOUR + 10 - 60)
    support = await journeys.figures("support", HOUR + 20)
    assert support["repeat_calls"] == 1  # the hash's last queued call counted
    assert await journeys.store.client.type(key) == "string"
    assert 0 < await journeys.store.client.pttl(key) <= (24 + 2) * 3600 * 1000


@pytest.mark.parametrize("end", ["answered", "abandoned", "abandoned short", None])
async def test_a_first_call_is_stored_as_the_general_steps_store_it(
        journeys: Journeys, end: str | None) -> None:
    """A new caller's first call taken in one step (apply_journey.lua's first_call) is
    stored field for field as its queued and its end taken one after the other (the
    second by the general steps, on the journey the first wrote)."""

    def call(call_id: str, caller: str) -> list[dict[str, Any]]:
        ends = {"answered": answered(call_id, 40), "abandoned": abandoned(call_id, 40),
                "abandoned short": abandoned(call_id, 2), None: None}
        return [e for e in (queued(call_id, 0, caller=caller), ends[end]) if e is not None]

    async def stored(caller: str) -> tuple[dict[str, str], list[str]]:
        text = await journeys.store.client.get(journeys.store.keys.caller(caller) + ":j")
        fields = dict(line.split("\t") for line in text.split("\n"))
        marks = sorted(v for k, v in fields.items() if k.startswith("t:"))  # by token
        return {k: v for k, v in fields.items() if not k.startswith("t:")}, marks

    await journeys.apply(*call("c1", "1001"))
    for event in call("c2", "1002"):
        await journeys.apply(event)
    at_once, one_by_one = await stored("1001"), await stored("1002")
    assert at_once == one_by_one
    assert len(at_once[1]) == (2 if end else 1)
    missed = await journeys.state.missed_callers("sales", T0 + 60_000)
    assert missed == ([("1001", T0 + 40_000), ("1002", T0 + 40_000)]
                      if end == "abandoned" else [])


async def test_own_call_answered_on_another_queue_an_hour_later_recovers(
        journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0), abandoned("c1", 30))
    await journeys.apply(queued("c2", HOUR, queue="support"),
                         answered("c2", HOUR + 10, queue="support"))
    sales = await journeys.figures("sales", HOUR + 20)
    assert states(sales) == (0, 1, 0)
    assert sales["recovery_seconds"] == pytest.approx(HOUR + 10 - 30)
    assert states(await journeys.figures("support", HOUR + 20)) == (0, 0, 0)
    assert await journeys.state.missed_callers("sales", T0 + round(HOUR * 1000)) == []


async def test_abandon_twice_never_answered_is_lost_after_a_day(journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0), abandoned("c1", 30))
    await journeys.apply(queued("c2", 2 * HOUR), abandoned("c2", 2 * HOUR + 40))
    figures = await journeys.figures("sales", 3 * HOUR)
    assert figures["repeat_calls"] == 1 and figures["repeat_call_ratio"] == pytest.approx(0.5)
    at_miss = T0 + round((2 * HOUR + 40) * 1000)
    assert await journeys.state.missed_callers("sales", at_miss) == [("442079460001", at_miss)]
    await journeys.keep(T0 + round((DAY + HOUR) * 1000))  # a day after the first miss only
    figures = await journeys.figures("sales", DAY + HOUR)
    assert states(figures) == (1, 0, 0)
    later = DAY + 2 * HOUR + 41  # a day after the last miss
    await journeys.keep(T0 + round(later * 1000))
    await journeys.keep(T0 + round(later * 1000))  # again: counted once
    figures = await journeys.figures("sales", later)
    assert states(figures) == (0, 0, 1)
    assert figures["lost_total"] == 1 and figures["lost_value"] == 40
    # An answer after the day does not revive a lost caller.
    await journeys.apply(queued("c3", later + 10), answered("c3", later + 20))
    assert states(await journeys.figures("sales", later + 30)) == (0, 0, 1)


async def test_a_caller_is_in_one_state_per_queue(journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0), abandoned("c1", 30))
    await journeys.apply(queued("c2", 600), answered("c2", 630))
    assert states(await journeys.figures("sales", 700)) == (0, 1, 0)
    # Missed again: no longer counted as recovered.
    await journeys.apply(queued("c3", 900), abandoned("c3", 960))
    figures = await journeys.figures("sales", 1000)
    assert states(figures) == (1, 0, 0) and figures["recovery_seconds"] is None
    await journeys.leftovers()  # a relay again changes nothing
    assert states(await journeys.figures("sales", 1000)) == (1, 0, 0)
    await journeys.apply(queued("c4", 3000, queue="support"),
                         answered("c4", 3060, queue="support"))
    figures = await journeys.figures("sales", 3100)
    assert states(figures) == (0, 1, 0) and figures["recovery_seconds"] == 2100
    # Lost, then missed again within the day: missed, and still lost once in the total.
    await journeys.apply(queued("c5", 4000), abandoned("c5", 4100))
    await journeys.keep(T0 + round((DAY + 4100) * 1000))
    assert states(await journeys.figures("sales", DAY + 4100)) == (0, 0, 1)
    await journeys.apply(queued("c6", DAY + 5000), abandoned("c6", DAY + 5100))
    figures = await journeys.figures("sales", DAY + 5200)
    assert states(figures) == (1, 0, 0) and figures["lost_total"] == 1


async def test_short_abandon_is_not_missed(journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0), abandoned("c1", 4.999))
    assert states(await journeys.figures("sales", 10)) == (0, 0, 0)
    await journeys.apply(queued("c2", 20), abandoned("c2", 25))  # exactly 5 s: not short
    assert states(await journeys.figures("sales", 30)) == (1, 0, 0)


async def test_orphan_abandon_is_a_miss_but_has_no_caller(journeys: Journeys) -> None:
    # An abandon never queued has no caller on record: it takes no part in journeys.
    await journeys.apply(abandoned("x1", 10))
    assert states(await journeys.figures("sales", 20)) == (0, 0, 0)


async def test_calls_with_no_caller_take_no_part(journeys: Journeys) -> None:
    await journeys.apply(queued("c1", 0, caller="anonymous"), abandoned("c1", 30),
                         queued("c2", 60, caller=None), answered("c2", 70))
    figures = await journeys.figures("sales", 100)
    assert states(figures) == (0, 0, 0) and figures["offered_with_caller"] == 0
    assert figures["repeat_call_ratio"] is None and figures["recovery_seconds"] is None


async def test_repeat_call_ratio_on_known_repeats(journeys: Journeys) -> None:
    # Callers 1..10 call once; callers 1..4 call again within the day (4 on another
    # queue), caller 5 again after more than a day: 4 repeats of 15 calls with a caller.
    events = [queued(f"a{i}", i, caller=f"0049301234{i:02d}") for i in range(1, 11)]
    events += [queued(f"b{i}", HOUR + i, caller=f"0049301234{i:02d}") for i in range(1, 4)]
    events.append(queued("b4", 2 * HOUR, queue="support", caller="004930123404"))
    events.append(queued("b5", DAY + 100, caller="004930123405"))
    await journeys.apply(*events)
    # b5 is no repeat (its caller's last call is more than a day before); the window's
    # old edge is rounded down to a 30 min bucket, so the first calls are still in it.
    sales = await journeys.figures("sales", DAY + 200)
    assert sales["repeat_calls"] == 3 and sales["offered_with_caller"] == 14
    before = await journeys.figures("sales", 3 * HOUR)
    assert before["repeat_calls"] == 3 and before["offered_with_caller"] == 13
    assert before["repeat_call_ratio"] == pytest.approx(3 / 13)
    support = await journeys.figures("support", 3 * HOUR)
    assert support["repeat_calls"] == 1 and support["repeat_call_ratio"] == 1.0


async def test_duplicates_disorder_and_relays_again_change_nothing(journeys: Journeys) -> None:
    events = [queued("c1", 0), abandoned("c1", 30),
              queued("c2", 100, queue="support"), answered("c2", 400, queue="support"),
              queued("d1", 0, caller="5551234"), abandoned("d1", 60)]
    # An answer applied before the miss it recovers (another partition, say).
    await journeys.apply(events[2], events[3])
    await journeys.apply(events[0], events[1], events[4], events[5])
    expected = await journeys.figures("sales", 500)
    assert states(expected) == (1, 1, 0)
    assert expected["recovery_seconds"] == pytest.approx(370)
    # The same events again (a producer's duplicates), then relays of the same facts
    # again (a crash after the journeys took them, before the outbox was emptied).
    facts = await journeys.apply(*events, relay_facts=False)
    assert facts == []  # duplicates make no facts
    await journeys.apply(queued("c9", 450, caller="5550000"), relay_facts=False)
    await journeys.leftovers()
    await journeys.leftovers()
    figures = await journeys.figures("sales", 500)
    assert states(figures) == states(expected)
    assert figures["offered_with_caller"] == expected["offered_with_caller"] + 1


async def test_facts_taken_again_mend_a_lost_journey_and_count_nothing_twice(
        journeys: Journeys) -> None:
    """The server holding a caller's keys came back without its last writes (a replica
    promoted that lagged), its queue's on another: the facts the queue kept since every
    handler took them are taken again. What survived counts once; what was lost is
    decided again, and the caller's next calls find the journey as it was."""
    await journeys.apply(queued("c1", 0), answered("c1", 20))
    await journeys.apply(queued("c2", 100), abandoned("c2", 130))  # a repeat call, missed
    figures = await journeys.figures("sales", 200)
    assert figures["repeat_calls"] == 1 and states(figures) == (1, 0, 0)
    client = journeys.store.client
    await client.delete(*await client.keys(journeys.store.keys.caller("442079460001") + "*"))
    await journeys.again()
    await journeys.again()
    await journeys.apply(queued("c3", 300), answered("c3", 320))
    figures = await journeys.figures("sales", 400)
    assert figures["repeat_calls"] == 2 and states(figures) == (0, 1, 0)
    assert figures["recovery_seconds"] == pytest.approx(190)


async def test_relayed_facts_leave_once_no_loss_can_want_them(journeys: Journeys) -> None:
    """Kept since taken for a relay again, until the servers were seen unchanged for
    RELAYED_KEEP_MS; then they leave, with the marks of their repeat calls, also from a
    queue that takes no more facts (the janitor's sweep)."""
    await journeys.apply(queued("c1", 0), answered("c1", 20))
    await journeys.apply(queued("c2", 100))  # a repeat call: marked
    client, keys = journeys.store.client, journeys.store.keys
    assert await client.hlen(keys.queue_key("sales", "facts")) == 0
    assert await client.hlen(keys.queue_key("sales", "relayed")) == 2
    assert await client.scard(keys.queue_key("sales", "journey_marks")) == 1
    journeys.store.servers_seen_ms = int(time.time() * 1000) + RELAYED_KEEP_MS + 1
    await journeys.store.sweep(int(time.time() * 1000))
    assert await client.exists(keys.queue_key("sales", "relayed"),
                               keys.queue_key("sales", "relayed_index"),
                               keys.queue_key("sales", "journey_marks")) == 0
    assert (await journeys.figures("sales", 200))["repeat_calls"] == 1


async def test_an_older_miss_relayed_late_leaves_the_later_recovery(journeys: Journeys
                                                                    ) -> None:
    """A crash kept a caller's older facts in the outbox while newer ones went on: the
    later miss was recovered by a later answer first. The older miss, relayed late, is
    not the caller's state on the queue; the answer that came first after the later miss,
    relayed late too, dates its recovery."""
    await journeys.apply(queued("c1", 0), abandoned("c1", 30), queued("c2", 240),
                         answered("c2", 260), relay_facts=False)
    await journeys.apply(queued("c3", 480), abandoned("c3", 500))
    await journeys.apply(queued("c4", 720), answered("c4", 740), relay_facts=False)
    await journeys.apply(queued("c5", 960), answered("c5", 1000))
    figures = await journeys.figures("sales", 1100)
    assert states(figures) == (0, 1, 0) and figures["recovery_seconds"] == 500
    await journeys.leftovers()
    figures = await journeys.figures("sales", 1100)
    assert states(figures) == (0, 1, 0) and figures["recovery_seconds"] == 240


async def test_a_relay_cut_between_journey_and_queue_counts_once(journeys: Journeys) -> None:
    """The journeys took a fact but the queue never heard (a crash in between): the
    fact's next relay answers the same decisions, and the queue records them once."""
    facts = await journeys.apply(queued("c1", 0), abandoned("c1", 30), relay_facts=False)
    answer = await journeys.apply(queued("c2", 100, queue="support"),
                                  answered("c2", 200, queue="support"), relay_facts=False)
    # Only the callers' half of the relay, for everything, as if the queues' half died.
    ops_store = journeys.state
    real = ops_store.store.scripts.run

    async def callers_only(calls: Any, raise_on_error: bool = True) -> list[Any]:
        if calls and calls[0][0] == "journey_queue":
            raise ConnectionError("cut")
        return await real(calls, raise_on_error)

    ops_store.store.scripts.run = callers_only  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await journeys.handler.take(answer + facts, 0)
    ops_store.store.scripts.run = real  # type: ignore[method-assign]
    await journeys.leftovers()
    await journeys.leftovers()
    figures = await journeys.figures("sales", 300)
    assert states(figures) == (0, 1, 0) and figures["recovery_seconds"] == pytest.approx(170)
    assert figures["offered_with_caller"] == 1 and figures["repeat_calls"] == 0
    support = await journeys.figures("support", 300)
    assert support["offered_with_caller"] == 1 and support["repeat_calls"] == 1


# --- A simulated day against the simulator's own record --------------------------------


def reference(events: list[dict[str, Any]], now_ms: int) -> dict[str, dict[str, Any]]:
    """What each caller did, read from the simulator's events (legs with a caller only:
    a transfer in carries none), and the journey figures of contract §2 at ``now_ms``."""
    bucket = 30 * 60_000
    oldest, newest = (now_ms - round(DAY * 1000)) // bucket, now_ms // bucket

    def in_window(ts: int) -> bool:
        return oldest <= ts // bucket <= newest

    day_ms = round(DAY * 1000)
    waiting: dict[tuple[str, str], tuple[str | None, int]] = {}
    last_call: dict[str, int] = {}
    misses: dict[tuple[str, str], int] = {}
    resolved: dict[tuple[str, str], tuple[int, int]] = {}  # -> (recovered at, recovery ms)
    figures: dict[str, dict[str, int]] = {}

    def of(queue: str) -> dict[str, int]:
        return figures.setdefault(queue, dict.fromkeys(
            ("offered_with_caller", "repeat_calls", "missed", "recovered", "recovery_ms",
             "lost"), 0))

    def ms(event: dict[str, Any]) -> int:
        from datetime import datetime
        return round(datetime.fromisoformat(event["ts"]).timestamp() * 1000)

    for event in events:
        kind, ts = event["type"], ms(event)
        if not kind.startswith("call."):
            continue
        leg = (event["call_id"], event["queue_id"])
        if kind == "call.queued":
            caller = event["caller"].lstrip("+")
            waiting[leg] = (caller, ts)
            if in_window(ts):
                of(leg[1])["offered_with_caller"] += 1
                of(leg[1])["repeat_calls"] += (caller in last_call
                                               and ts - last_call[caller] <= day_ms)
            last_call[caller] = ts
        elif kind == "call.transferred":
            waiting.pop(leg, None)
            waiting[(event["call_id"], event["to_queue_id"])] = (None, ts)
        elif kind in ("call.answered", "call.abandoned", "call.ended",
                      "call.callback_accepted") and leg in waiting:
            caller, queued_at = waiting.pop(leg)
            if caller is None:
                continue
            if kind == "call.answered":
                for (c, q), m in list(misses.items()):
                    if c == caller and m <= ts and ts - m < day_ms:
                        del misses[(c, q)]
                        resolved[(c, q)] = (ts, ts - m)
            elif kind != "call.callback_accepted" and ts - queued_at >= 5000:
                key = (caller, leg[1])
                # Missed again within a day of a recovery: one state per caller and queue.
                if key not in misses and key in resolved and resolved[key][0] > ts - day_ms:
                    del resolved[key]
                misses[key] = ts
    for (_, q), (at, recovery) in resolved.items():
        if in_window(at):
            of(q)["recovered"] += 1
            of(q)["recovery_ms"] += recovery
    for (_, q), m in misses.items():
        if m + day_ms <= now_ms:
            of(q)["lost"] += in_window(m + day_ms)
        else:
            of(q)["missed"] += 1
    return figures


async def test_a_simulated_day_with_repeat_callers_matches_the_simulators_record(
        journeys: Journeys) -> None:
    from datetime import UTC, datetime

    from stream.tools.simulate import AgentConfig, QueueConfig, SimulationConfig, generate

    config = SimulationConfig(
        queues=(QueueConfig("sales", 1 / 50, 150), QueueConfig("support", 1 / 70, 200)),
        agents=tuple(AgentConfig(f"ag{i}", ("sales", "support")) for i in range(6)),
        seed=11, duration_seconds=DAY, patience_seconds=120, repeat_fraction=0.6,
        repeat_delay_seconds=1200, transfer_fraction=0.05, overflow_fraction=0.1,
        overflow_after_seconds=90, callback_fraction=0.05, callback_after_seconds=100)
    start = datetime.fromtimestamp(T0 / 1000, UTC)
    events = list(generate(config, start))
    for i in range(0, len(events), 1500):
        await journeys.apply(*events[i:i + 1500])
    for at in (DAY, DAY + 6 * HOUR, 2 * DAY + HOUR):  # the day, and after: lost
        now_ms = T0 + round(at * 1000)
        await journeys.keep(now_ms)
        expected = reference(events, now_ms)
        assert sum(f["lost"] + f["missed"] + f["recovered"] for f in expected.values()) > 100
        for queue, want in expected.items():
            shown = await journeys.figures(queue, at)
            got = {k: shown[k] for k in ("offered_with_caller", "repeat_calls", "missed",
                                         "recovered", "lost")}
            assert got == {k: want[k] for k in got}, (queue, at)
            if want["recovered"]:
                mean = want["recovery_ms"] / want["recovered"] / 1000
                assert shown["recovery_seconds"] == pytest.approx(mean)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_facts_relayed_late_and_out_of_order_change_nothing(journeys: Journeys,
                                                                  seed: int) -> None:
    """Some batches' facts stay in the outboxes (a crash before their relay) and reach
    the journeys later, after newer ones, as the janitor relays them: same figures."""
    events, timeline = repeat_caller_stream(2400, seed=8, start_ms=T0 + round(DAY * 1000))
    expected = model(timeline)
    rng = random.Random(seed)
    for i in range(0, len(events), 200):
        await journeys.apply(*events[i:i + 200], relay_facts=rng.random() > 0.3)
        if rng.random() < 0.2:
            await journeys.leftovers()
    await journeys.leftovers()
    at = DAY + 6 * HOUR
    for queue, want in expected.items():
        shown = await journeys.figures(queue, at)
        assert {k: shown[k] for k in ("offered_with_caller", "repeat_calls", "recovered",
                                      "missed")} == {k: want[k] for k in (
            "offered_with_caller", "repeat_calls", "recovered", "missed")}
        assert shown["recovery_seconds"] == pytest.approx(
            want["recovery_ms"] / want["recovered"] / 1000)
