"""StateBatch's results: each message gets the letter of its own first row, also when a
message is dropped after some of its rows were applied."""

from __future__ import annotations

import json
import time

from stream.events import Event, parse
from stream.state.batch import StateBatch


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
