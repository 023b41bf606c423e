"""Contract §1 parsing: every event type, every time format, every rejection reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.parse import events
from stream.parse.events import (
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackAccepted,
    CallbackAttempt,
    CallEnded,
    CallQueued,
    CallTransferred,
    Event,
    Rejection,
    normalise_caller,
    parse,
)
from stream.timefmt import rfc3339

#: 2026-11-22T10:15:30.250Z in Unix epoch milliseconds.
TS_MS = 1_795_342_530_250
TS = "2026-11-22T10:15:30.250Z"
#: The wall clock of most tests: the events below are not in the future.
WALL_NOW_MS = TS_MS

#: The smallest valid event of each type: common fields plus the type's required fields.
MINIMAL: dict[str, dict[str, Any]] = {
    "call.queued": {"call_id": "c-1", "queue_id": "sales"},
    "call.answered": {"call_id": "c-1", "queue_id": "sales", "agent_id": "SIP:1001"},
    "call.abandoned": {"call_id": "c-1", "queue_id": "sales"},
    "call.callback_accepted": {"call_id": "c-1", "queue_id": "sales"},
    "call.callback_attempt": {
        "call_id": "c-1",
        "queue_id": "sales",
        "offer_id": "offer-9",
        "result": "no_answer",
    },
    "call.transferred": {"call_id": "c-1", "queue_id": "sales", "to_queue_id": "support"},
    "call.ended": {"call_id": "c-1", "queue_id": "sales"},
    "agent.state": {"agent_id": "SIP:1001", "state": "available", "queues": ["sales", "vip.1"]},
}
REQUIRED: list[tuple[str, str]] = [
    (event_type, field)
    for event_type, fields in MINIMAL.items()
    for field in ("event_id", "ts", *fields)
]


def message(event_type: str, **fields: Any) -> dict[str, Any]:
    """A valid event of ``event_type``; ``fields`` override or add fields."""
    return {"event_id": "ev-1", "type": event_type, "ts": TS, **MINIMAL[event_type], **fields}


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def parsed(value: dict[str, Any], wall_now_ms: int = WALL_NOW_MS) -> Event:
    result = parse(encode(value), wall_now_ms)
    assert not isinstance(result, Rejection), result
    return result


def rejected(value: dict[str, Any] | bytes | None, wall_now_ms: int = WALL_NOW_MS) -> Rejection:
    raw = value if value is None or isinstance(value, bytes) else encode(value)
    result = parse(raw, wall_now_ms)
    assert isinstance(result, Rejection), result
    return result


# --- one valid event of every type ----------------------------------------------------------


def test_call_queued_with_every_field() -> None:
    event = parsed(message("call.queued", caller="+44 20 7946 0000", priority=3))
    assert isinstance(event, CallQueued)
    assert (event.event_id, event.type) == ("ev-1", "call.queued")
    assert event.ts == TS_MS
    assert (event.call_id, event.queue_id) == ("c-1", "sales")
    assert event.caller == "442079460000"
    assert event.priority == 3
    assert event.schema_ == 1


def test_call_queued_optional_fields_absent() -> None:
    event = parsed(message("call.queued"))
    assert isinstance(event, CallQueued)
    assert event.caller is None
    assert event.priority is None


def test_call_answered() -> None:
    event = parsed(message("call.answered"))
    assert isinstance(event, CallAnswered)
    assert (event.call_id, event.queue_id, event.agent_id) == ("c-1", "sales", "SIP:1001")


def test_call_abandoned() -> None:
    event = parsed(message("call.abandoned", call_id="c-2", queue_id="support"))
    assert isinstance(event, CallAbandoned)
    assert (event.type, event.call_id, event.queue_id) == ("call.abandoned", "c-2", "support")


def test_callback_accepted() -> None:
    event = parsed(message("call.callback_accepted"))
    assert isinstance(event, CallbackAccepted)
    assert (event.type, event.call_id, event.queue_id) == (
        "call.callback_accepted",
        "c-1",
        "sales",
    )


@pytest.mark.parametrize("result", ["answered", "no_answer", "busy", "failed"])
def test_callback_attempt_every_result(result: str) -> None:
    event = parsed(message("call.callback_attempt", result=result))
    assert isinstance(event, CallbackAttempt)
    assert (event.offer_id, event.result) == ("offer-9", result)


def test_call_transferred_with_and_without_agent() -> None:
    event = parsed(message("call.transferred", agent_id="PJSIP:bob"))
    assert isinstance(event, CallTransferred)
    assert (event.queue_id, event.to_queue_id, event.agent_id) == ("sales", "support", "PJSIP:bob")
    bare = parsed(message("call.transferred"))
    assert isinstance(bare, CallTransferred)
    assert bare.agent_id is None


def test_call_ended_with_and_without_agent() -> None:
    event = parsed(message("call.ended", agent_id="SIP:1001"))
    assert isinstance(event, CallEnded)
    assert event.agent_id == "SIP:1001"
    bare = parsed(message("call.ended"))
    assert isinstance(bare, CallEnded)
    assert bare.agent_id is None


@pytest.mark.parametrize("state", ["available", "busy", "wrapup", "away", "offline"])
def test_agent_state_every_state(state: str) -> None:
    event = parsed(message("agent.state", state=state))
    assert isinstance(event, AgentStateChanged)
    assert (event.agent_id, event.state, event.queues) == ("SIP:1001", state, ["sales", "vip.1"])


def test_agent_state_with_no_queues() -> None:
    event = parsed(message("agent.state", queues=[]))
    assert isinstance(event, AgentStateChanged)
    assert event.queues == []


def test_explicit_schema_1_is_accepted() -> None:
    assert parsed(message("call.abandoned", schema=1)).schema_ == 1


def test_unknown_fields_are_ignored() -> None:
    extra = message("call.answered", region="eu", nested={"a": [1, 2]}, queue_name="Sales")
    assert parsed(extra) == parsed(message("call.answered"))


def test_parse_takes_bytes_with_utf8() -> None:
    raw = encode(message("call.queued", call_id="appel-été")).replace(b"\\u00e9", "é".encode())
    assert "é".encode() in raw
    event = parse(raw, WALL_NOW_MS)
    assert isinstance(event, CallQueued)
    assert event.call_id == "appel-été"


# --- ts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        ("2026-11-22T10:15:30.250Z", TS_MS),
        ("2026-11-22T10:15:30Z", TS_MS - 250),
        ("2026-11-22T10:15:30.250+00:00", TS_MS),
        ("2026-11-22T11:15:30.250+01:00", TS_MS),
        ("2026-11-22T05:15:30.250-05:00", TS_MS),
        ("2026-11-22T15:45:30.250+05:30", TS_MS),
        ("2026-11-23T00:15:30.250+14:00", TS_MS),
        ("2026-11-22t10:15:30.250z", TS_MS),
        ("2026-11-22 10:15:30.250Z", TS_MS),
        ("2026-11-22T10:15:30-00:00", TS_MS - 250),
        ("2026-11-22T10:15:30.250000000000Z", TS_MS),  # RFC 3339 allows any fraction length
    ],
)
def test_rfc3339_ts_to_epoch_ms(ts: str, expected_ms: int) -> None:
    assert parsed(message("call.queued", ts=ts)).ts == expected_ms


@pytest.mark.parametrize(
    ("digits", "expected_ms"),
    [
        (1, 100),
        (2, 120),
        (3, 123),
        (4, 123),
        (5, 123),
        (6, 123),
        (7, 123),
        (8, 123),
        (9, 123),
    ],
)
def test_rfc3339_fraction_of_1_to_9_digits(digits: int, expected_ms: int) -> None:
    ts = f"2026-11-22T10:15:30.{'123456789'[:digits]}Z"
    assert parsed(message("call.queued", ts=ts)).ts == TS_MS - 250 + expected_ms


def test_rfc3339_fraction_rounds_to_the_nearest_millisecond() -> None:
    event = parsed(message("call.queued", ts="2026-11-22T11:15:30.999999999+01:00"))
    assert event.ts == TS_MS - 250 + 1000
    event = parsed(message("call.queued", ts="2026-11-22T11:15:30.000400+01:00"))
    assert event.ts == TS_MS - 250


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        (1_795_342_530, TS_MS - 250),
        (1_795_342_530.25, TS_MS),
        (1_795_342_530.001, TS_MS - 249),
        (0, 0),
        (1_700_000_000.5, 1_700_000_000_500),
    ],
)
def test_numeric_ts_is_epoch_seconds(ts: float, expected_ms: int) -> None:
    assert parsed(message("call.queued", ts=ts)).ts == expected_ms


def test_old_events_are_not_refused() -> None:
    assert parsed(message("call.queued", ts="2020-01-01T00:00:00Z")).ts == 1_577_836_800_000


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-22T10:15:30.250",  # no offset
        "2026-11-22T10:15:30",
        "2026-11-22",  # date only
        "10:15:30Z",  # time only
        "garbage",
        "",
        "2026-11-22T10:15:30.Z",  # dot without digits
        "2026-11-22T10:15:30+01",  # offset without minutes
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:15:30.250 Z",
        "now",
        "2026-13-22T10:15:30Z",  # month 13
        "2026-11-22T25:15:30Z",
        "Sun, 22 Nov 2026 10:15:30 GMT",
        True,
        False,
        None,
        [1_795_342_530],
        {"seconds": 1_795_342_530},
    ],
)
def test_bad_ts(ts: Any) -> None:
    rejection = rejected(message("call.answered", ts=ts))
    assert (rejection.reason, rejection.event_type) == ("bad_ts", "call.answered")


def _two(top: int) -> st.SearchStrategy[str]:
    return st.integers(0, top).map(lambda n: f"{n:02d}")


@given(st.tuples(st.integers(0, 9999).map(lambda n: f"{n:04d}"), _two(13), _two(32),
                 st.sampled_from("T "), _two(25), _two(61), _two(61),
                 st.text("0123456789", max_size=7).map(lambda f: f and "." + f),
                 st.sampled_from(["Z", "+", "-"]), _two(25), _two(61)))
def test_usual_ts_form_reads_as_the_general_parser_does(parts: tuple[str, ...]) -> None:
    """The fast path for the usual form of ts takes and refuses exactly what pydantic's
    RFC 3339 parser takes and refuses, to the same millisecond."""
    y, mo, d, sep, h, mi, s, frac, sign, oh, om = parts
    zone = "Z" if sign == "Z" else f"{sign}{oh}:{om}"
    ts = f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}"
    try:
        general: int | str = events._ANY_TS.validate_python(ts)
    except ValueError:
        general = "refused"
    for _ in range(2):  # the second time, the contract's own form is read by its second
        try:
            fast: int | str = events._ts_ms(ts)
        except ValueError:
            fast = "refused"
        assert fast == general


@pytest.mark.parametrize("millis", ["２５０", "٢٥٠", " 25", "+25", "2_5", "25 ", "-25"])
def test_a_second_read_before_does_not_pass_odd_milliseconds(millis: str) -> None:
    assert parsed(message("call.queued", ts="2026-11-22T10:15:30.250Z")).ts == TS_MS
    rejection = rejected(message("call.answered", ts=f"2026-11-22T10:15:30.{millis}Z"))
    assert (rejection.reason, rejection.event_type) == ("bad_ts", "call.answered")


def test_the_seconds_read_before_are_bounded_and_read_again_alike() -> None:
    for n in range(events._SECONDS_KEPT + 10):
        ts = rfc3339(TS_MS - n * 1000)
        assert parsed(message("call.queued", ts=ts)).ts == TS_MS - n * 1000
        assert parsed(message("call.queued", ts=ts)).ts == TS_MS - n * 1000
    assert len(events._SECONDS) <= events._SECONDS_KEPT


@pytest.mark.parametrize(
    "number", [b"1e400", b"-1e400", b"1e308", b"1e20", b"-1e20", b"100000000000000000000"]
)
def test_overflowing_numeric_ts_is_bad_ts(number: bytes) -> None:
    raw = b'{"event_id":"e","type":"call.queued","ts":%s,"call_id":"c","queue_id":"q"}' % number
    rejection = parse(raw, WALL_NOW_MS)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "bad_ts"


def test_numeric_ts_beyond_year_9999_is_bad_ts() -> None:
    rejection = rejected(message("call.queued", ts=1e12))
    assert rejection.reason == "bad_ts"


@pytest.mark.parametrize("ts", ["1795342530", "1795342530.25", "1795342530250"])
def test_string_of_digits_is_bad_ts(ts: str) -> None:
    result = parse(encode(message("call.queued", ts=ts)), WALL_NOW_MS)
    assert isinstance(result, Rejection)
    assert result.reason == "bad_ts"


def test_nan_ts_is_bad_ts() -> None:
    raw = b'{"event_id":"e","type":"call.queued","ts":NaN,"call_id":"c","queue_id":"q"}'
    rejection = rejected(raw)
    assert rejection.reason == "bad_ts"


# --- future_ts --------------------------------------------------------------------------------


def test_ts_exactly_five_minutes_ahead_is_accepted() -> None:
    event = parsed(message("call.queued", ts="2026-11-22T10:20:30.250Z"))
    assert event.ts == WALL_NOW_MS + 300_000


@pytest.mark.parametrize(
    "ts", ["2026-11-22T10:20:30.251Z", "2026-11-22T11:15:30Z", 1_795_342_830.251, 4_102_444_800]
)
def test_ts_more_than_five_minutes_ahead_is_future_ts(ts: Any) -> None:
    rejection = rejected(message("call.ended", ts=ts))
    assert (rejection.reason, rejection.event_type) == ("future_ts", "call.ended")


def test_future_ts_follows_the_wall_clock_argument() -> None:
    ahead = message("call.queued", ts="2026-11-22T11:15:30Z")
    assert rejected(ahead).reason == "future_ts"
    assert parsed(ahead, wall_now_ms=WALL_NOW_MS + 3_600_000).ts == WALL_NOW_MS + 3_600_000 - 250


# --- not JSON, not an object, no type ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"   ", b"{", b"{'type': 'call.queued'}", b"not json", b"\xff\xfe", b'{"a":1}x'],
)
def test_invalid_json(raw: bytes | None) -> None:
    rejection = rejected(raw)
    assert (rejection.reason, rejection.event_type) == ("invalid_json", "unknown")


@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"type": "call.queued"}]', b"42", b"1.5", b'"x"', b"true", b"null"]
)
def test_not_an_object(raw: bytes) -> None:
    rejection = rejected(raw)
    assert (rejection.reason, rejection.event_type) == ("not_an_object", "unknown")


def test_missing_type() -> None:
    value = message("call.queued")
    del value["type"]
    rejection = rejected(value)
    assert (rejection.reason, rejection.event_type) == ("missing_field:type", "unknown")


@pytest.mark.parametrize("kind", ["call.unknown", "Call.Queued", "call_queued", "", 5, None])
def test_unknown_type(kind: Any) -> None:
    rejection = rejected(message("call.queued", type=kind))
    assert (rejection.reason, rejection.event_type) == ("unknown_type", "unknown")


# --- missing fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "field"), REQUIRED)
def test_missing_required_field(event_type: str, field: str) -> None:
    value = message(event_type)
    del value[field]
    rejection = rejected(value)
    assert (rejection.reason, rejection.event_type) == (f"missing_field:{field}", event_type)


# --- bad ids ----------------------------------------------------------------------------------

BAD_QUEUE_IDS = ["", "a/b", "a b", "x" * 65, "q\n", "é", "sales#1", 7, None]


@pytest.mark.parametrize("queue_id", ["a", "x" * 64, "Sales_1.eu:main-2", "0"])
def test_good_queue_ids(queue_id: str) -> None:
    event = parsed(message("call.transferred", queue_id=queue_id, to_queue_id=queue_id))
    assert isinstance(event, CallTransferred)
    assert event.queue_id == event.to_queue_id == queue_id


@pytest.mark.parametrize("queue_id", BAD_QUEUE_IDS)
def test_bad_queue_id(queue_id: Any) -> None:
    rejection = rejected(message("call.abandoned", queue_id=queue_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:queue_id", "call.abandoned")


@pytest.mark.parametrize("queue_id", BAD_QUEUE_IDS)
def test_bad_to_queue_id(queue_id: Any) -> None:
    rejection = rejected(message("call.transferred", to_queue_id=queue_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:to_queue_id", "call.transferred")


@pytest.mark.parametrize("event_type", ["call.answered", "agent.state"])
@pytest.mark.parametrize("agent_id", ["", "SIP/1001", "x" * 65, "bob smith", 1001])
def test_bad_agent_id(event_type: str, agent_id: Any) -> None:
    rejection = rejected(message(event_type, agent_id=agent_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:agent_id", event_type)


def test_bad_optional_agent_id() -> None:
    rejection = rejected(message("call.ended", agent_id="SIP/1001"))
    assert (rejection.reason, rejection.event_type) == ("bad_id:agent_id", "call.ended")


@pytest.mark.parametrize("call_id", ["x" * 128, "1795338010.1", "call id with spaces", "appel-été"])
def test_good_call_ids(call_id: str) -> None:
    event = parsed(message("call.abandoned", call_id=call_id))
    assert isinstance(event, CallAbandoned)
    assert event.call_id == call_id


@pytest.mark.parametrize("call_id", ["", "x" * 129, "bell\x07", "line\nbreak", "tab\t", 42, None])
def test_bad_call_id(call_id: Any) -> None:
    rejection = rejected(message("call.abandoned", call_id=call_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:call_id", "call.abandoned")


def test_event_id_of_128_chars_is_accepted() -> None:
    assert parsed(message("call.queued", event_id="e" * 128)).event_id == "e" * 128


@pytest.mark.parametrize("event_id", ["", "e" * 129, 17, None, ["ev-1"]])
def test_bad_event_id(event_id: Any) -> None:
    rejection = rejected(message("call.queued", event_id=event_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:event_id", "call.queued")


@pytest.mark.parametrize("offer_id", ["", "o" * 129, 3])
def test_bad_offer_id(offer_id: Any) -> None:
    rejection = rejected(message("call.callback_attempt", offer_id=offer_id))
    assert (rejection.reason, rejection.event_type) == ("bad_id:offer_id", "call.callback_attempt")


@pytest.mark.parametrize("queues", [["sales", "a/b"], ["x" * 65], [""], ["ok", "q\n"]])
def test_bad_queue_id_in_queues(queues: list[str]) -> None:
    rejection = rejected(message("agent.state", queues=queues))
    assert (rejection.reason, rejection.event_type) == ("bad_id:queues", "agent.state")


@pytest.mark.parametrize("queues", ["sales", {"sales": 1}, None, [3]])
def test_queues_that_is_not_a_list_of_strings(queues: Any) -> None:
    rejection = rejected(message("agent.state", queues=queues))
    assert (rejection.reason, rejection.event_type) == ("bad_value:queues", "agent.state")


# --- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [0, 10, -1, 2**31 - 1, -(2**31)])
def test_good_priority(priority: int) -> None:
    event = parsed(message("call.queued", priority=priority))
    assert isinstance(event, CallQueued)
    assert event.priority == priority


@pytest.mark.parametrize("priority", [2.5, "3", True, [1], {"p": 1}, 2**31, -(2**31) - 1,
                                      10**15, 10**30])
def test_bad_priority(priority: Any) -> None:
    rejection = rejected(message("call.queued", priority=priority))
    assert (rejection.reason, rejection.event_type) == ("bad_value:priority", "call.queued")


@pytest.mark.parametrize("state", ["ready", "Available", "", "logged_in", 1, None])
def test_bad_agent_state(state: Any) -> None:
    rejection = rejected(message("agent.state", state=state))
    assert (rejection.reason, rejection.event_type) == ("bad_value:state", "agent.state")


@pytest.mark.parametrize("result", ["voicemail", "ANSWERED", "", None, 0])
def test_bad_callback_result(result: Any) -> None:
    rejection = rejected(message("call.callback_attempt", result=result))
    assert (rejection.reason, rejection.event_type) == ("bad_value:result", "call.callback_attempt")


@pytest.mark.parametrize("schema", [2, 0, -1, 99])
def test_unsupported_schema(schema: int) -> None:
    rejection = rejected(message("call.answered", schema=schema))
    assert (rejection.reason, rejection.event_type) == ("unsupported_schema", "call.answered")


@pytest.mark.parametrize("schema", ["1", 1.5, True])
def test_schema_that_is_not_an_int(schema: Any) -> None:
    rejection = rejected(message("call.answered", schema=schema))
    assert (rejection.reason, rejection.event_type) == ("bad_value:schema", "call.answered")


def test_rejection_carries_a_human_detail() -> None:
    rejection = rejected(message("call.queued", queue_id="a/b"))
    assert "queue_id" in rejection.detail


# --- caller -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+44 20 7946 0000", "442079460000"),
        ("(020) 7946-0000", "02079460000"),
        ("+1 (555) 010-9999", "15550109999"),
        ("020.7946.0000", "02079460000"),
        ("02079460000", "02079460000"),
        ("12+34", "1234"),
        ("1" * 20, "1" * 20),
        # not a caller: other characters, other scripts' digits, too long
        ("tel:+33 1 23 45 67 89", None),
        ("1" * 21, None),
        ("5" * 5000, None),
        ("\u0664\u0664\u0662\u0660", None),  # Arabic-Indic digits
        ("\uff14\uff14\uff12\uff10", None),  # fullwidth digits
        ("44\u00a020", None),  # a no-break space is not in the list
        ("anonymous", None),
        ("Withheld", None),
        ("", None),
        ("+", None),
        (None, None),
    ],
)
def test_normalise_caller(caller: str | None, expected: str | None) -> None:
    assert normalise_caller(caller) == expected


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+44 20 7946 0000", "442079460000"),
        ("(020) 7946-0000", "02079460000"),
        ("anonymous", None),
        ("\u0664\u0664\u0662\u0660", None),
        (None, None),
    ],
)
def test_caller_is_normalised_when_parsed(caller: str | None, expected: str | None) -> None:
    event = parsed(message("call.queued", caller=caller))
    assert isinstance(event, CallQueued)
    assert event.caller == expected


@pytest.mark.parametrize("caller", [442079460000, ["+44"], {"number": "+44"}, True])
def test_non_string_caller_is_bad_value(caller: Any) -> None:
    with pytest.raises(ValueError):
        normalise_caller(caller)
    rejection = rejected(message("call.queued", caller=caller))
    assert (rejection.reason, rejection.event_type) == ("bad_value:caller", "call.queued")
