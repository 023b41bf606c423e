"""StateBatch's results: each message gets the letter of its own first row, also when a
message is dropped after some of its rows were applied."""

from __future__ import annotations

import json
import time

from stream.parse.events import Event, parse
from stream.state.rows import StateBatch


def _event(event_id: str, kind: str, **fields: object) -> Event:
    now = int(time.time() * 1000)
    raw = {"event_id": event_id, "type": kind, "ts": now / 1000, **fields}
    event = parse(json.dumps(raw).encode(), now)
    assert not hasattr(event, "reason"), event
    return event  # type: ignore[return-value]


def _batch() -> StateBatch:
    batch = StateBatch()
    events = [
        _event("q1", "call.queued", call_id="c1", queue_id="sales"),
        _event("t1", "call.transferred", call_id="c1", queue_id="sales",
               to_queue_id="support"),
        _event("q2", "call.queued", call_id="c2", queue_id="sales"),
        _event("q3", "call.queued", call_id="c3", queue_id="support"),
    ]
    for offset, event in enumerate(events):
        batch.add("events", 0, offset, event)
    return batch


def test_each_message_takes_the_letter_of_its_first_row() -> None:
    batch = _batch()
    batch.applied("sales", "adc")       # q1, t1, q2
    batch.applied("support", "ao")      # t1's leg in, q3
    assert batch.results() == ["applied", "duplicate", "conflict", "orphan"]


def test_a_message_dropped_after_its_first_row_applied_shifts_no_other_result() -> None:
    batch = _batch()
    batch.applied("sales", "adc")       # applied with t1's row in it
    batch.drop([1])                     # then t1's row in support failed
    assert batch.message_of_row("support", 0) == 3
    batch.applied("support", "o")       # applied again without it: q3 only
    assert batch.results() == ["applied", None, "conflict", "orphan"]
    assert json.loads(batch.encoded()["sales"])[1][2] == "Eq2"


def test_rows_are_the_json_lists_the_scripts_take_whatever_the_ids() -> None:
    """Rows are written as JSON text directly: every string a producer chose is escaped,
    and each row reads back as the list the scripts expect."""
    odd = 'a"b\\c\u00e9\u2028\U0001f600'
    events = [
        _event("q" + odd, "call.queued", call_id="c" + odd, queue_id="sales",
               caller="+44 20 7946 0000", priority=-7),
        _event("a" + odd, "call.answered", call_id="c" + odd, queue_id="sales",
               agent_id="ag.1"),
        _event("e" + odd, "call.ended", call_id="c" + odd, queue_id="sales"),
        _event("k", "call.callback_attempt", call_id="c2", queue_id="sales", offer_id="o1",
               result="answered"),
        _event("t", "call.transferred", call_id="c3", queue_id="sales",
               to_queue_id="support"),
        _event("s" + odd, "agent.state", agent_id="ag.1", state="busy",
               queues=["sales", "support"]),
    ]
    batch = StateBatch()
    for offset, event in enumerate(events):
        batch.add("events", 3, offset, event)
    ts = [e.ts for e in events]
    assert json.loads(batch.encoded()["sales"]) == [
        ["events:3", 0, "Eq" + odd, "Q", "c" + odd, ts[0], "442079460000", -7, None],
        ["events:3", 1, "Ea" + odd, "A", "c" + odd, ts[1], None, None, "ag.1"],
        ["events:3", 2, "Ee" + odd, "E", "c" + odd, ts[2], None, None, None],
        ["events:3", 3, "Ek", "K", "c2", ts[3], None, None, None, "answered"],
        ["events:3", 4, "Et", "T", "c3", ts[4], None, None, None],
    ]
    assert json.loads(batch.encoded()["support"]) == [
        ["events:3", 4, "It", "I", "c3", ts[4], None, None, None]]
    assert json.loads(batch.encoded()[""]) == [
        ["events:3", 5, "s" + odd, "ag.1", ts[5], f"busy|sales,support|{ts[5]}"]]
    batch.drop([4])
    assert batch.highest_offsets("sales") == {"events:3": 3}
    assert "support" not in batch.encoded()
