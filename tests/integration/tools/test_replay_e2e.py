"""``callstream replay`` end to end: history into tansu, a processor on the event clock, figures.

The expected figures are worked out by hand from the files and the contract's definitions
(§1, §2), with the arithmetic beside each number. With ``clock=event`` the processor's now is
the newest applied event time, so the windows are those of the history, not of today.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import InProcessProcessor, http_json, http_text, produce, unique_settings, wait_until
from stream.timefmt import rfc3339 as iso
from stream.tools.broker import EmbeddedBroker
from stream.tools.replay import replay_file

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "queue_log.sample"
#: The sample's first line, 2026-11-22T09:00:00Z; every time below is "+seconds" from it.
T0 = 1795338000
#: Outcome counts in the order of contract §2; the callback ones stay 0 in both files.
OUTCOMES = ("offered", "answered", "answered_in_sla", "abandoned", "short_abandoned",
            "callback_offered", "callback_accepted", "transferred_out")


def counts(offered: int, answered: int, in_sla: int, abandoned: int, short: int,
           transferred_out: int = 0, offers: int = 0) -> dict[str, int]:
    return dict(zip(OUTCOMES, (offered, answered, in_sla, abandoned, short, offers, 0,
                               transferred_out), strict=True))


def window(calls: dict[str, int], service_level: float | None, abandon_ratio: float | None,
           asa: float | None, aht: float | None) -> dict[str, Any]:
    return calls | {"service_level": service_level, "abandon_ratio": abandon_ratio,
                    "asa_seconds": asa, "aht_seconds": aht}


def agents(available: int = 0, busy: int = 0, wrapup: int = 0, away: int = 0,
           offline: int = 0) -> dict[str, int]:
    return {"available": available, "busy": busy, "wrapup": wrapup, "away": away,
            "offline": offline}


def rounded(value: Any) -> Any:
    """Floats to 3 decimals, recursively: the hand arithmetic is written as fractions."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def shown(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The figures of each queue this file checks, by queue id."""
    return {
        q["queue_id"]: rounded({
            "waiting": q["waiting"],
            "longest_wait_seconds": q["longest_wait_seconds"],
            "agents": q["agents"],
            "windows": q["windows"],
            "totals": q["totals"],
        })
        for q in snapshot["queues"]
    }


async def settle(url: str, done: Callable[[dict[str, Any]], bool],
                 timeout: float = 20) -> dict[str, Any]:
    """The newest ``/api/queues`` once ``done`` holds, or the last one seen at ``timeout``.

    Returning instead of failing lets the assertions that follow show the difference.
    """
    deadline = time.monotonic() + timeout
    while True:
        snapshot: dict[str, Any] = await http_json(url + "/api/queues")
        if done(snapshot) or time.monotonic() > deadline:
            return snapshot
        await asyncio.sleep(0.1)


async def event_results(url: str) -> Counter[str]:
    """``callstream_events_total`` summed by result: one result per consumed message."""
    results: Counter[str] = Counter()
    for line in (await http_text(url + "/metrics")).splitlines():
        if line.startswith("callstream_events_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            results[result] += int(float(value))
    return results


# -- the Asterisk sample ------------------------------------------------------------------
#
# What docs/queue_log.md makes of tests/data/queue_log.sample (times in +s from T0):
#
#   sales    c1  queued +10, answered +18 (SIP:1001), wait 8   in SLA; ended +130: handle 112
#            c2  queued +20, answered +50 (PJSIP:bob), wait 30 not in SLA; ended +200: handle 150
#            c4  queued +60, abandoned +63, wait 3: short
#            c5  queued +70, abandoned +100, wait 30
#            c7  queued +140, answered +145 (SIP:1001), wait 5 in SLA; TRANSFER +260 is a
#                call.ended (queue_log names no target queue): handle 115; transferred_out 0
#            c10 queued +310, EXITWITHTIMEOUT +370: call.ended while waiting = abandoned, wait 60
#   support  c3  queued +30, answered +42, wait 12 in SLA; ended +300: handle 258
#            c6  queued +90, answered +125 (Agent:1004), wait 35; ended +400: handle 275
#            c8  queued +150, abandoned +153, wait 3: short
#            c9  queued +160, abandoned +190, wait 30
#            c7  queued +261 (the transferred call's new leg), answered +268, wait 7 in SLA;
#                ended +330: handle 62
#            c11 queued +320, EXITWITHKEY +380 (no --callback-keys): abandoned, wait 60
#            c12 queued +420, EXITEMPTY +450: call.ended while waiting = abandoned, wait 30
#   The "yesterday" ENTERQUEUE (bad epoch) is skipped: it is no call.
#
# The newest event is PJSIP:bob's REMOVEMEMBER at +510, so now = T0 + 510. The 5m window
# (now − 300, now] = (+210, +510], in 10 s buckets (W/30): it starts at the bucket of +210,
# and no event of the sample is within a bucket of that edge. 15m and 1h hold everything.
# Every abandon that is not short gets a missed-call offer (contract §3; the default
# callback hours hold the sample's times), counted as callback_offered at the abandon.

SAMPLE_NOW = iso((T0 + 510) * 1000)

SALES_ALL = window(
    # offered c1 c2 c4 c5 c7 c10; answered c1 c2 c7, in SLA c1 (8) c7 (5);
    # abandoned c4 (short) c5 c10; offers to c5 c10
    counts(offered=6, answered=3, in_sla=2, abandoned=3, short=1, offers=2),
    service_level=2 / (3 + 3 - 1),  # in_sla / (answered + abandoned - short) = 0.4
    abandon_ratio=(3 - 1) / (3 + 3 - 1),  # 0.4
    asa=(8 + 30 + 5) / 3,  # 14.333
    aht=(112 + 150 + 115) / 3,  # 125.667
)
SUPPORT_ALL = window(
    # offered c3 c6 c8 c9 c7 c11 c12; answered c3 c6 c7, in SLA c3 (12) c7 (7);
    # abandoned c8 (short) c9 c11 c12; offers to c9 c11 c12
    counts(offered=7, answered=3, in_sla=2, abandoned=4, short=1, offers=3),
    service_level=2 / (3 + 4 - 1),  # 0.333
    abandon_ratio=(4 - 1) / (3 + 4 - 1),  # 0.5
    asa=(12 + 35 + 7) / 3,  # 18.0
    aht=(258 + 62 + 275) / 3,  # 198.333: c3 +300, c7 +330, c6 +400
)
SAMPLE_FIGURES = {
    "sales": {
        "waiting": 0,  # c10 was the last to wait; it left at +370
        "longest_wait_seconds": 0.0,
        # SIP:1001 available (UNPAUSE +480) in sales and support; PJSIP:bob offline with no
        # queue (REMOVEMEMBER sales +510, after support +431): counted nowhere.
        "agents": agents(available=1),
        "windows": rounded({
            # (+210, +510]: c10 queued +310 and abandoned +370 (wait 60, not short);
            # the only leg ended in it is c7 (+260, handle 115); nothing answered in it.
            "5m": window(counts(offered=1, answered=0, in_sla=0, abandoned=1, short=0,
                                offers=1),
                         service_level=0 / (0 + 1 - 0), abandon_ratio=(1 - 0) / (0 + 1 - 0),
                         asa=None, aht=115.0),
            "15m": SALES_ALL,
            "1h": SALES_ALL,
        }),
        "totals": counts(offered=6, answered=3, in_sla=2, abandoned=3, short=1, offers=2),
    },
    "support": {
        "waiting": 0,  # c12 left at +450
        "longest_wait_seconds": 0.0,
        # SIP:1001 available; Local:1003_agents available (UNPAUSE +500); Agent:1004
        # offline (AGENTLOGOFF +430) and still listed in support (from its CONNECT there).
        "agents": agents(available=2, offline=1),
        "windows": rounded({
            # (+210, +510]: queued c7 +261, c11 +320, c12 +420; answered c7 (wait 7, in SLA);
            # abandoned c11 (60) c12 (30); ended c3 +300, c7 +330, c6 +400.
            "5m": window(counts(offered=3, answered=1, in_sla=1, abandoned=2, short=0,
                                offers=2),
                         service_level=1 / (1 + 2 - 0), abandon_ratio=(2 - 0) / (1 + 2 - 0),
                         asa=7.0, aht=(258 + 62 + 275) / 3),
            "15m": SUPPORT_ALL,
            "1h": SUPPORT_ALL,
        }),
        "totals": counts(offered=7, answered=3, in_sla=2, abandoned=4, short=1, offers=3),
    },
}


async def test_queue_log_sample_gives_the_contract_figures(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    async with InProcessProcessor(settings) as processor:
        report = await replay_file(SAMPLE, settings, err=io.StringIO())

        def done(snapshot: dict[str, Any]) -> bool:
            return snapshot["ts"] == SAMPLE_NOW and shown(snapshot) == SAMPLE_FIGURES

        snapshot = await settle(processor.url, done)
        results = await event_results(processor.url)

    # The replay's own account: 57 lines, 61 events (29 agent.state: one per change of an
    # agent's state or queues), 3 known events with no contract twin, 3 lines unusable.
    assert report.format == "queue_log"
    assert report.lines == 57
    assert report.produced == Counter({"agent.state": 29, "call.queued": 13, "call.ended": 8,
                                       "call.answered": 6, "call.abandoned": 5})
    assert report.not_mapped == Counter({"QUEUESTART": 1, "DID": 1, "RINGNOANSWER": 1})
    assert report.skipped == Counter({"too few fields": 1, "bad epoch": 1,
                                      "unknown event FOOBAR": 1})
    summary = report.summary(settings.topic_events)
    assert f"produced 61 events to {settings.topic_events}: agent.state 29, call.abandoned 5, " \
           "call.answered 6, call.ended 8, call.queued 13" in summary
    assert "skipped 3 lines: " in summary
    assert "not mapped (no contract event): " in summary

    assert snapshot["ts"] == SAMPLE_NOW  # clock=event: now is the newest event, +510
    assert snapshot["ready"] is True
    assert [q["queue_id"] for q in snapshot["queues"]] == ["sales", "support"]
    assert shown(snapshot) == SAMPLE_FIGURES
    # Every event had its queued start in the file: no orphan, no conflict, none rejected.
    assert results == Counter({"applied": 61})


# -- JSON lines ---------------------------------------------------------------------------
#
# A handful of calls on "billing", two of them transferred to "retention" (which queue_log
# cannot express), one orphan answer, all on 2026-11-21 from B (times in +s from B).

B = 1795251600  # 2026-11-21T09:00:00Z


def _event(event_id: str, kind: str, at: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "ts": iso((B + at) * 1000), **fields}


def _call(call: str, kind: str, at: int, queue: str = "billing", **fields: Any
          ) -> dict[str, Any]:
    return _event(f"{call}-{kind.split('.')[1]}", kind, at, call_id=call, queue_id=queue,
                  **fields)


def _agent(agent: str, state: str, at: int, *queues: str) -> dict[str, Any]:
    return _event(f"{agent}-{state}-{at}", "agent.state", at, agent_id=agent, state=state,
                  queues=list(queues))


JSONL_EVENTS = [
    _agent("a1", "available", 1, "billing"),
    _agent("a2", "available", 2, "billing", "retention"),
    _agent("a3", "away", 3, "billing"),
    _call("j1", "call.queued", 10, caller="+441632960001"),
    _call("j1", "call.answered", 14, agent_id="a1"),  # wait 4: in SLA
    _call("j2", "call.queued", 20),
    _call("j2", "call.answered", 45, agent_id="a2"),  # wait 25: not in SLA
    _call("j3", "call.queued", 30),
    _call("j3", "call.abandoned", 32),  # wait 2: short
    _call("j4", "call.queued", 40),
    _call("j4", "call.abandoned", 60),  # wait 20: not short
    _call("j5", "call.queued", 50),
    # An overflow: j5 leaves billing still waiting (transferred_out, not abandoned) and
    # waits in retention from +62.
    _call("j5", "call.transferred", 62, to_queue_id="retention"),
    _call("j1", "call.ended", 94, agent_id="a1"),  # handle 94 - 14 = 80
    # After its answer: the billing leg's handle time ends here (105 - 45 = 60); j2 waits
    # in retention from +105.
    _call("j2", "call.transferred", 105, to_queue_id="retention", agent_id="a2"),
    _agent("a2", "wrapup", 175, "billing", "retention"),
    # retention's own call. The transferred legs get no later events there: they come from
    # billing's partition, and only one partition's order is guaranteed.
    _call("r1", "call.queued", 200, queue="retention"),
    _call("r1", "call.answered", 210, queue="retention", agent_id="a2"),  # wait 10
    _call("r1", "call.ended", 250, queue="retention"),  # handle 40
    _call("j6", "call.queued", 400),  # still waiting at the end
    _call("j7", "call.queued", 450),
    _call("j7", "call.answered", 460, agent_id="a1"),  # wait 10: in SLA
    # Answered with no call.queued seen: counted as answered, but it has no wait.
    _call("j8", "call.answered", 470, agent_id="a3"),
    _call("j7", "call.ended", 520, agent_id="a1"),  # handle 60
    _call("j8", "call.ended", 560, agent_id="a3"),  # handle 90
    _agent("a3", "busy", 600, "billing"),  # the newest event: now = B + 600
]
JSONL_NOW = iso((B + 600) * 1000)

# now = B + 600: the 5m window is (+300, +600], the 15m and 1h windows hold everything.
BILLING_ALL = window(
    # offered j1..j7; answered j1 (4) j2 (25) j7 (10) and the orphan j8, in SLA j1 j7;
    # abandoned j3 (short) j4; transferred out j5 (+62, waiting) and j2 (+105, answered)
    counts(offered=7, answered=4, in_sla=2, abandoned=2, short=1, transferred_out=2),
    # Wait-based figures leave the orphan out: 3 answered with a wait.
    service_level=2 / (3 + 2 - 1),  # 0.5
    abandon_ratio=(2 - 1) / (4 + 2 - 1),  # the orphan counts here: 0.2
    asa=(4 + 25 + 10) / 3,  # 13.0
    aht=(80 + 60 + 60 + 90) / 4,  # j1, j2 (to its transfer), j7, j8: 72.5
)
RETENTION_ALL = window(
    # offered: transfers in j5 (+62) and j2 (+105), and r1; answered r1 (10)
    counts(offered=3, answered=1, in_sla=1, abandoned=0, short=0),
    service_level=1 / (1 + 0 - 0),
    abandon_ratio=0 / (1 + 0 - 0),
    asa=10.0,
    aht=40.0,
)
JSONL_FIGURES = {
    "billing": {
        "waiting": 1,  # j6
        "longest_wait_seconds": 600.0 - 400,
        "agents": agents(available=1, busy=1, wrapup=1),  # a1, a3 (+600), a2 (+175)
        "windows": rounded({
            # (+300, +600]: queued j6 j7; answered j7 (10, in SLA) and j8 (orphan);
            # ended j7 (60) and j8 (90).
            "5m": window(counts(offered=2, answered=2, in_sla=1, abandoned=0, short=0),
                         service_level=1 / (1 + 0 - 0),  # j8 has no wait: not in the divisor
                         abandon_ratio=0 / (2 + 0 - 0),
                         asa=10.0, aht=(60 + 90) / 2),
            "15m": BILLING_ALL,
            "1h": BILLING_ALL,
        }),
        "totals": counts(offered=7, answered=4, in_sla=2, abandoned=2, short=1,
                         transferred_out=2),
    },
    "retention": {
        "waiting": 2,  # j5 since +62, j2 since +105
        "longest_wait_seconds": 600.0 - 62,
        "agents": agents(wrapup=1),  # a2
        "windows": rounded({
            # Nothing happened in retention after +250: no divisor, so ratios and means
            # are absent, not 0.
            "5m": window(counts(offered=0, answered=0, in_sla=0, abandoned=0, short=0),
                         service_level=None, abandon_ratio=None, asa=None, aht=None),
            "15m": RETENTION_ALL,
            "1h": RETENTION_ALL,
        }),
        "totals": counts(offered=3, answered=1, in_sla=1, abandoned=0, short=0),
    },
}


def write_jsonl(path: Path) -> Path:
    lines = [json.dumps(event) for event in JSONL_EVENTS]
    lines.insert(5, "not json: a line the replay reports and skips")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_jsonl_replay_gives_the_figures_and_a_second_replay_changes_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    path = write_jsonl(tmp_path / "history.jsonl")
    async with InProcessProcessor(settings) as processor:
        report = await replay_file(path, settings, fmt="jsonl", err=io.StringIO())
        first = await settle(processor.url,
                             lambda s: s["ts"] == JSONL_NOW and shown(s) == JSONL_FIGURES)
        assert first["ts"] == JSONL_NOW
        assert shown(first) == JSONL_FIGURES

        async def each_counted_once() -> bool:
            return await event_results(processor.url) == Counter({"applied": 25, "orphan": 1})

        # the figures may show a moment before the consumer has counted their batch
        await wait_until(each_counted_once, timeout=10)

        # The same file again: the same event ids, each already applied once.
        await replay_file(path, settings, fmt="jsonl", err=io.StringIO())
        deadline = time.monotonic() + 20
        while (results := await event_results(processor.url))["duplicate"] < 26:
            assert time.monotonic() < deadline, f"second replay not consumed: {results}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.2)  # past a snapshot refresh after the last duplicate
        second = await http_json(processor.url + "/api/queues")

    # 27 lines: 26 events passed through as they are, one line that is no JSON object.
    assert (report.format, report.lines, report.events) == ("jsonl", 27, 26)
    assert report.produced == Counter({"call.queued": 8, "agent.state": 5, "call.answered": 5,
                                       "call.ended": 4, "call.abandoned": 2,
                                       "call.transferred": 2})
    assert report.skipped == Counter({"not a JSON object": 1})
    summary = report.summary(settings.topic_events)
    assert f"produced 26 events to {settings.topic_events}: " in summary
    assert "skipped 1 lines: not a JSON object 1" in summary

    assert results == Counter({"applied": 25, "orphan": 1, "duplicate": 26})
    assert second["ts"] == JSONL_NOW
    assert shown(second) == shown(first) == JSONL_FIGURES



def billing_agents(snapshot: dict[str, Any]) -> dict[str, int] | None:
    for queue in snapshot["queues"]:
        if queue["queue_id"] == "billing":
            return dict(queue["agents"])
    return None


async def test_a_shifted_replay_of_applied_history_applies_nothing_again(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """``--shift-to-now`` keeps the event ids, and the same id is the same event (§1).

    The replay's help promises it: "events the processor already applied are not applied
    again". The history is from 2026-11-21; the shift moves it to today.
    """
    settings = unique_settings(broker.bootstrap, clock="event")
    path = write_jsonl(tmp_path / "history.jsonl")
    async with InProcessProcessor(settings) as processor:
        await replay_file(path, settings, fmt="jsonl", err=io.StringIO())
        first = await settle(processor.url,
                             lambda s: s["ts"] == JSONL_NOW and shown(s) == JSONL_FIGURES)
        assert shown(first) == JSONL_FIGURES
        # Later news: a1 logs off.
        await produce(settings, [_agent("a1", "offline", 610, "billing")])
        logged_off = agents(busy=1, wrapup=1, offline=1)
        before = await settle(processor.url, lambda s: billing_agents(s) == logged_off)
        assert billing_agents(before) == logged_off

        await replay_file(path, settings, fmt="jsonl", shift_to_now=True, err=io.StringIO())
        deadline = time.monotonic() + 20
        while (results := await event_results(processor.url)).total() < 2 * 26 + 1:
            assert time.monotonic() < deadline, f"shifted replay not consumed: {results}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.2)  # past a snapshot refresh
        after = await http_json(processor.url + "/api/queues")

    # The old "a1 available" (+1, shifted) must not bring a1 back.
    assert billing_agents(after) == logged_off
    assert results == Counter({"applied": 26, "orphan": 1, "duplicate": 26})
    assert {q["queue_id"]: q["totals"] for q in after["queues"]} == {
        queue: figures["totals"] for queue, figures in JSONL_FIGURES.items()
    }
