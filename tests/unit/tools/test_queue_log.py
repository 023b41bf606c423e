"""The Asterisk queue_log mapping: every event kind, agent memory, skips, ids and names."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from stream.config import is_valid_id
from stream.tools.queue_log import Event, QueueLogMapper, Skip, format_ts, normalise_id

SAMPLE = Path(__file__).parent.parent.parent / "data" / "queue_log.sample"


def call(kind: str, call_id: str, queue_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "queue_id": queue_id, **extra}


def agent(agent_id: str, state: str, *queues: str) -> dict[str, Any]:
    return {"type": "agent.state", "agent_id": agent_id, "state": state, "queues": list(queues)}


ALICE, BOB, CAROL, DAVE = "SIP:1001", "PJSIP:bob", "Local:1003_agents", "Agent:1004"
C1, C2, C3, C4, C5, C6 = (
    f"179533{n}" for n in ("8010.1", "8020.2", "8030.3", "8060.4", "8070.5", "8090.6")
)
C7, C8, C9, C10, C11, C12 = (
    f"179533{n}" for n in ("8140.7", "8150.8", "8160.9", "8310.10", "8320.11", "8420.12")
)

#: (line number, the event without event_id and ts), in the order produced.
EXPECTED: list[tuple[int, dict[str, Any]]] = [
    (2, agent(ALICE, "available", "sales")),
    (3, agent(ALICE, "available", "sales", "support")),
    (4, agent(BOB, "available", "sales")),
    (5, agent(CAROL, "available", "support")),
    (6, agent(DAVE, "available")),
    (7, agent(BOB, "away", "sales")),
    (9, call("call.queued", C1, "sales", caller="+33612345678")),
    (10, agent(BOB, "available", "sales")),
    (11, call("call.answered", C1, "sales", agent_id=ALICE)),
    (11, agent(ALICE, "busy", "sales", "support")),
    (12, call("call.queued", C2, "sales", caller="0612345679")),
    (13, call("call.queued", C3, "support", caller="+442079460958")),
    (15, call("call.answered", C3, "support", agent_id=CAROL)),
    (15, agent(CAROL, "busy", "support")),
    (16, call("call.answered", C2, "sales", agent_id=BOB)),
    (16, agent(BOB, "busy", "sales")),
    (17, call("call.queued", C4, "sales")),
    (18, call("call.abandoned", C4, "sales")),
    (19, call("call.queued", C5, "sales", caller="+4915112345678")),
    (20, call("call.queued", C6, "support", caller="0298765432")),
    (21, call("call.abandoned", C5, "sales")),
    (23, call("call.answered", C6, "support", agent_id=DAVE)),
    (23, agent(DAVE, "busy", "support")),
    (24, call("call.ended", C1, "sales", agent_id=ALICE)),
    (24, agent(ALICE, "available", "sales", "support")),
    (25, agent(ALICE, "away", "sales", "support")),
    (26, agent(ALICE, "available", "sales", "support")),
    (27, call("call.queued", C7, "sales", caller="0611111111")),
    (28, call("call.answered", C7, "sales", agent_id=ALICE)),
    (28, agent(ALICE, "busy", "sales", "support")),
    (29, call("call.queued", C8, "support", caller="0622222222")),
    (30, call("call.abandoned", C8, "support")),
    (31, call("call.queued", C9, "support", caller="0622222222")),
    (33, call("call.abandoned", C9, "support")),
    (34, call("call.ended", C2, "sales", agent_id=BOB)),
    (34, agent(BOB, "available", "sales")),
    (36, agent(BOB, "available", "sales", "support")),
    (37, call("call.ended", C7, "sales", agent_id=ALICE)),
    (37, agent(ALICE, "available", "sales", "support")),
    (38, call("call.queued", C7, "support", caller="0611111111")),
    (39, call("call.answered", C7, "support", agent_id=BOB)),
    (39, agent(BOB, "busy", "sales", "support")),
    (40, agent(ALICE, "away", "sales", "support")),
    (42, call("call.ended", C3, "support", agent_id=CAROL)),
    (42, agent(CAROL, "available", "support")),
    (43, call("call.queued", C10, "sales", caller="0633333333")),
    (44, call("call.queued", C11, "support", caller="0644444444")),
    (45, call("call.ended", C7, "support", agent_id=BOB)),
    (45, agent(BOB, "available", "sales", "support")),
    (46, call("call.ended", C10, "sales")),
    (47, call("call.abandoned", C11, "support")),
    (48, call("call.ended", C6, "support", agent_id=DAVE)),
    (48, agent(DAVE, "available", "support")),
    (49, call("call.queued", C12, "support", caller="0655555555")),
    (50, agent(CAROL, "away", "support")),
    (51, agent(DAVE, "offline", "support")),
    (52, agent(BOB, "available", "sales")),
    (53, call("call.ended", C12, "support")),
    (54, agent(ALICE, "available", "sales", "support")),
    (56, agent(CAROL, "available", "support")),
    (57, agent(BOB, "offline")),
]

SKIPS = {
    1: Skip("QUEUESTART", informational=True),
    8: Skip("DID", informational=True),
    14: Skip("RINGNOANSWER", informational=True),
    22: Skip("too few fields"),
    32: Skip("bad epoch"),
    35: Skip("unknown event FOOBAR"),
}


def map_file(path: Path, mapper: QueueLogMapper | None = None) -> dict[int, list[Event] | Skip]:
    mapper = mapper or QueueLogMapper()
    lines = path.read_text().splitlines()
    return {lineno: mapper.map_line(line) for lineno, line in enumerate(lines, 1)}


def test_sample_maps_to_the_exact_contract_events() -> None:
    lines = SAMPLE.read_text().splitlines()
    mapped = map_file(SAMPLE)
    produced = [
        (lineno, event)
        for lineno, events in mapped.items()
        if isinstance(events, list)
        for event in events
    ]
    assert [
        (n, {k: v for k, v in e.items() if k not in ("event_id", "ts")}) for n, e in produced
    ] == EXPECTED
    for lineno, event in produced:
        line = lines[lineno - 1]
        assert event["ts"] == format_ts(float(line.split("|")[0]))
        digest = hashlib.sha256(line.encode()).hexdigest()[:24]
        assert event["event_id"] == f"ql:{digest}:{event['type']}"


def test_sample_skips_with_reasons() -> None:
    mapped = map_file(SAMPLE)
    assert {n: r for n, r in mapped.items() if isinstance(r, Skip)} == SKIPS
    # Lines that change no agent's state or queues map to nothing, silently.
    assert [n for n, r in mapped.items() if r == []] == [41, 55]


def test_sample_events_keep_the_contract_rules() -> None:
    events = [e for r in map_file(SAMPLE).values() if isinstance(r, list) for e in r]
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert all(1 <= len(i) <= 128 for i in ids)
    for event in events:
        assert event["ts"].endswith("Z") and len(event["ts"]) == 24
        for name in ("queue_id", "agent_id"):
            if name in event:
                assert is_valid_id(event[name])
        assert all(is_valid_id(q) for q in event.get("queues", []))


def test_ids_are_the_same_on_every_replay_and_in_a_longer_file(tmp_path: Path) -> None:
    first = map_file(SAMPLE)
    again = map_file(SAMPLE)
    assert first == again
    grown = tmp_path / "queue_log"
    grown.write_text("1795337990|NONE|NONE|NONE|QUEUESTART|\n" + SAMPLE.read_text())
    shifted = map_file(grown)
    assert [shifted[n + 1] for n in first] == list(first.values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SIP/1001", "SIP:1001"),
        ("PJSIP/alice", "PJSIP:alice"),
        ("Local/1001@agents", "Local:1001_agents"),
        ("Agent/1004", "Agent:1004"),
        ("Customer Care (EN)", "Customer_Care__EN_"),
        ("sales-1.fr", "sales-1.fr"),
    ],
)
def test_asterisk_names_fit_the_id_rule(raw: str, expected: str) -> None:
    assert normalise_id(raw) == expected


def test_a_long_name_is_cut_and_stays_unique() -> None:
    a, b = normalise_id("Local/" + "x" * 80 + "@a"), normalise_id("Local/" + "x" * 80 + "@b")
    assert len(a) == len(b) == 64 and a != b and is_valid_id(a)


def test_ts_keeps_milliseconds() -> None:
    assert format_ts(1795338010.25) == "2026-11-22T09:00:10.250Z"
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+33 6 12 34 56 78", "+33612345678"),
        ("(02) 9876-5432", "0298765432"),
        ("0612.34.56.78", "0612345678"),
        ("anonymous", None),
        ("Alice <1001>", None),
        ("", None),
    ],
)
def test_caller_is_kept_only_when_it_is_a_number(caller: str, expected: str | None) -> None:
    events = QueueLogMapper().map_line(f"1795338010|c1|sales|NONE|ENTERQUEUE||{caller}|1")
    assert isinstance(events, list)
    assert events[0].get("caller") == expected


def test_exit_with_key_is_a_callback_only_for_the_named_keys() -> None:
    line = "1795338380|c11|support|NONE|EXITWITHKEY|{key}|1|1|60"
    default = QueueLogMapper().map_line(line.format(key="1"))
    assert isinstance(default, list) and default[0]["type"] == "call.abandoned"
    mapper = QueueLogMapper(callback_keys={"1", "#"})
    for key, kind in (
        ("1", "call.callback_accepted"),
        ("#", "call.callback_accepted"),
        ("2", "call.abandoned"),
    ):
        events = mapper.map_line(line.format(key=key))
        assert isinstance(events, list) and events[0]["type"] == kind


@pytest.mark.parametrize("name", ["TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"])
def test_every_transfer_closes_the_answered_leg(name: str) -> None:
    mapper = QueueLogMapper()
    mapper.map_line("1795338145|c5|sales|SIP/1001|CONNECT|5|x|1")
    events = mapper.map_line(f"1795338260|c5|sales|SIP/1001|{name}|2000|from-internal|5|115|1")
    assert isinstance(events, list)
    assert [(e["type"], e.get("agent_id"), e.get("state")) for e in events] == [
        ("call.ended", "SIP:1001", None),
        ("agent.state", "SIP:1001", "available"),
    ]


def test_an_agent_paused_during_a_call_is_away_after_it() -> None:
    mapper = QueueLogMapper()
    mapper.map_line("1|c1|sales|SIP/1001|CONNECT|5|x|1")
    assert mapper.map_line("2|NONE|sales|SIP/1001|PAUSE|lunch") == []  # still busy
    events = mapper.map_line("3|c1|sales|SIP/1001|COMPLETEAGENT|5|60|1")
    assert isinstance(events, list) and events[-1]["state"] == "away"


def test_old_style_agent_events() -> None:
    mapper = QueueLogMapper()
    states = []
    for line in (
        "1|NONE|NONE|Agent/1004|AGENTCALLBACKLOGIN|1004@agents",
        "2|NONE|NONE|Agent/1004|PAUSEALL|",
        "3|NONE|NONE|Agent/1004|UNPAUSEALL|",
        "4|NONE|NONE|Agent/1004|AGENTCALLBACKLOGOFF|1004@agents|300|Autologoff",
    ):
        events = mapper.map_line(line)
        assert isinstance(events, list)
        states += [e["state"] for e in events]
    assert states == ["available", "away", "available", "offline"]


def test_a_login_after_a_logoff_clears_the_pause() -> None:
    mapper = QueueLogMapper()
    for line in (
        "1|NONE|support|SIP/1001|ADDMEMBER|",
        "2|NONE|support|SIP/1001|PAUSE|x",
        "3|NONE|NONE|SIP/1001|AGENTLOGOFF|",
        "4|NONE|support|SIP/1001|ADDMEMBER|",
    ):
        events = mapper.map_line(line)
    assert isinstance(events, list) and events[0]["state"] == "away"
    events = mapper.map_line("5|NONE|NONE|SIP/1001|AGENTLOGIN|")
    assert isinstance(events, list) and events[0]["state"] == "available"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "too few fields"),
        ("1795338010|c1|sales|NONE", "too few fields"),
        ("nan|c1|sales|NONE|ENTERQUEUE||0612345678|1", "bad epoch"),
        ("1e400|c1|sales|NONE|ENTERQUEUE||0612345678|1", "bad epoch"),
        ("2026-11-22 09:00:10|c1|sales|NONE|ENTERQUEUE||0612345678|1", "bad epoch"),
        ("1795338010|c1|sales|NONE||x", "unknown event (empty)"),
        ("1795338010|c1|sales|NONE|enterqueue||0612345678|1", "unknown event enterqueue"),
        ("1795338010|NONE|sales|NONE|ENTERQUEUE||0612345678|1", "no call id"),
        ("1795338010|c1|NONE|NONE|ABANDON|1|1|3", "no queue"),
        ("1795338010|c1|sales|NONE|CONNECT|8|x|1", "no agent"),
        ("1795338010|NONE|NONE|SIP/1001|ADDMEMBER|", "no queue"),
        ("1795338010|NONE|sales|NONE|PAUSE|x", "no agent"),
    ],
)
def test_unusable_lines_are_skipped_with_a_reason(line: str, reason: str) -> None:
    assert QueueLogMapper().map_line(line) == Skip(reason)


def test_a_completion_without_agent_still_ends_the_call() -> None:
    events = QueueLogMapper().map_line("1795338130|c1|sales|NONE|COMPLETECALLER|8|112|1")
    assert isinstance(events, list)
    assert [{k: v for k, v in e.items() if k not in ("event_id", "ts")} for e in events] == [
        call("call.ended", "c1", "sales")
    ]
