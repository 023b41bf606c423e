"""GET /api/calls/{call_id} (contract §5) through a real processor: the voice menu's view."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from harness import InProcessProcessor, _event, produce, queue_figures, unique_settings, wait_until
from stream.tools.broker import EmbeddedBroker

TOKEN = "ivr-s3cret"


class TokenProcessor(InProcessProcessor):
    """A processor behind ``TOKEN``: its readiness is asked with the token."""

    async def ready(self) -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    self.url + "/readyz", headers={"Authorization": f"Bearer {TOKEN}"}) as reply:
                return reply.status == 200
        except aiohttp.ClientError:
            return False


async def get_call(base_url: str, call_id: str, token: str | None = None
                   ) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(
            f"{base_url}/api/calls/{call_id}", headers=headers) as response:
        body = await response.json() if response.status == 200 else await response.text()
        return response.status, body


def queued(call: str, ts_ms: int, queue: str = "ivr", **extra: Any) -> dict[str, Any]:
    return _event(f"{call}-{queue}-q{ts_ms}", "call.queued", ts_ms, call_id=call, queue_id=queue,
                  **extra)


def terminal(call: str, kind: str, ts_ms: int, queue: str = "ivr", **extra: Any
             ) -> dict[str, Any]:
    return _event(f"{call}-{queue}-{kind}{ts_ms}", f"call.{kind}", ts_ms, call_id=call,
                  queue_id=queue, **extra)


def agent(agent_id: str, state: str, ts_ms: int, *queues: str) -> dict[str, Any]:
    return _event(f"{agent_id}-{state}{ts_ms}", "agent.state", ts_ms, agent_id=agent_id,
                  state=state, queues=list(queues))


async def positions(base_url: str, calls: list[str], queue: str = "ivr"
                    ) -> dict[str, dict[str, Any]]:
    """call_id -> its entry for ``queue``, for the calls found waiting there."""
    found = {}
    for call in calls:
        status, body = await get_call(base_url, call)
        for entry in body["waiting"] if status == 200 else ():
            if entry["queue_id"] == queue:
                found[call] = entry
    return found


async def test_positions_go_by_priority_then_arrival_then_call_id(broker: EmbeddedBroker
                                                                  ) -> None:
    # clock=event: now is the newest event time, so every wait is exact.
    settings = unique_settings(broker.bootstrap, clock="event")
    t0 = int(time.time() * 1000) - 600_000
    waiting = {  # call_id -> (queued at t0 + ms, priority)
        "none-early": (0, None),           # no priority: counts as 0
        "p5-b": (1000, 5),
        "p5-a": (1000, 5),                 # same ts and priority: by call_id
        "minus3": (2000, -3),
        "zero-late": (3000, 0),
        "p5-later": (4000, 5),
        "top": (5000, 2**31 - 1),
        "bottom": (500, -(2**31)),
        "newest": (10_000, -1),
        "ancient-a": (-t0 - 5000, None),      # before 1970 (replays of history)
        "ancient-b": (-t0 - 1_000_500, 0),
    }
    events = [queued(call, t0 + at, **({} if p is None else {"priority": p}))
              for call, (at, p) in waiting.items()]
    events += [queued("gone", t0 + 100, priority=9),
               terminal("gone", "answered", t0 + 9000, agent_id="a1"),
               queued("left", t0 + 200), terminal("left", "abandoned", t0 + 9500)]
    expected = ["top", "p5-a", "p5-b", "p5-later", "ancient-b", "ancient-a", "none-early",
                "zero-late", "newest", "minus3", "bottom"]
    async with InProcessProcessor(settings) as processor:
        await produce(settings, events)
        await wait_until(lambda: _all_found(processor.url, expected))
        found = await positions(processor.url, expected)
        assert {call: found[call]["position"] for call in expected} == {
            call: n for n, call in enumerate(expected, start=1)}
        for call, (at, _) in waiting.items():
            assert found[call]["wait_seconds"] == pytest.approx((10_000 - at) / 1000)
            assert found[call]["ewt_seconds"] is None  # no agent staffed: none for the queue
        for call in ("gone", "left", "never-seen"):
            assert (await get_call(processor.url, call))[0] == 404


async def _all_found(base_url: str, calls: list[str]) -> bool:
    return len(await positions(base_url, calls)) == len(calls)


async def test_a_call_waiting_in_two_queues_is_in_both_and_answered_is_404(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    async with InProcessProcessor(settings) as processor:
        await produce(settings, [queued("ahead", now - 9000, "sales"),
                                 queued("both", now - 5000, "sales"),
                                 queued("both", now - 3000, "support", priority=1),
                                 queued("behind", now - 4000, "support")])

        async def in_both() -> bool:
            status, body = await get_call(processor.url, "both")
            return status == 200 and len(body["waiting"]) == 2

        await wait_until(in_both)
        _, body = await get_call(processor.url, "both")
        assert body["call_id"] == "both"
        assert [(w["queue_id"], w["position"]) for w in body["waiting"]] == [
            ("sales", 2), ("support", 1)]
        waits = [w["wait_seconds"] for w in body["waiting"]]
        elapsed = time.time() * 1000 - now
        assert 5 <= waits[0] <= 5 + elapsed / 1000 and 3 <= waits[1] <= 3 + elapsed / 1000

        await produce(settings, [terminal("both", "answered", now - 1000, "sales",
                                          agent_id="a1")])

        async def only_support() -> bool:
            status, body = await get_call(processor.url, "both")
            return status == 200 and [w["queue_id"] for w in body["waiting"]] == ["support"]

        await wait_until(only_support)
        await produce(settings, [terminal("both", "transferred", now - 500, "support",
                                          to_queue_id="sales")])

        async def moved() -> bool:
            status, body = await get_call(processor.url, "both")
            return status == 200 and [(w["queue_id"], w["position"])
                                      for w in body["waiting"]] == [("sales", 2)]

        await wait_until(moved)  # a new visit: behind the call that was ahead all along
        await produce(settings, [terminal("both", "abandoned", now, "sales")])

        async def gone() -> bool:
            return (await get_call(processor.url, "both"))[0] == 404

        await wait_until(gone)
        assert (await get_call(processor.url, "behind"))[1]["waiting"][0]["position"] == 1


async def test_each_callers_ewt_counts_the_calls_ahead_and_is_absent_with_the_queues(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    events = [
        agent("a1", "busy", now - 600_000, "staffed"),
        agent("a2", "available", now - 600_000, "staffed"),
        # one handled call in the last 15 m: AHT 120 s; nothing abandoned: no patience
        queued("done", now - 300_000, "staffed"),
        terminal("done", "answered", now - 290_000, "staffed", agent_id="a1"),
        terminal("done", "ended", now - 170_000, "staffed"),
        *(queued(f"s{i}", now - 60_000 + i * 1000, "staffed") for i in range(4)),
        agent("a9", "away", now - 600_000, "unstaffed"),
        queued("u0", now - 10_000, "unstaffed"),
    ]
    async with InProcessProcessor(settings) as processor:
        await produce(settings, events)
        calls = [f"s{i}" for i in range(4)]

        async def ready() -> bool:
            figures = await queue_figures(processor.url, "staffed")
            return (figures is not None and figures["ewt_seconds"] is not None
                    and len(await positions(processor.url, calls, "staffed")) == 4
                    and (await get_call(processor.url, "u0"))[0] == 200)

        await wait_until(ready)
        found = await positions(processor.url, calls, "staffed")
        # Two staffed, one of them free: the first caller is taken at once; each next one
        # waits one more AHT / staffed = 60 s. A caller joining now is the fifth.
        assert [found[c]["ewt_seconds"] for c in calls] == pytest.approx([0, 60, 120, 180])
        figures = await queue_figures(processor.url, "staffed")
        assert figures is not None and figures["ewt_seconds"] == pytest.approx(240)
        _, body = await get_call(processor.url, "u0")
        assert body["waiting"] == [{"queue_id": "unstaffed", "position": 1,
                                    "wait_seconds": body["waiting"][0]["wait_seconds"],
                                    "ewt_seconds": None}]
        unstaffed = await queue_figures(processor.url, "unstaffed")
        assert unstaffed is not None and unstaffed["ewt_seconds"] is None


async def test_the_call_api_needs_the_token_when_one_is_set(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, http_token=TOKEN)
    now = int(time.time() * 1000)
    async with TokenProcessor(settings) as processor:
        await produce(settings, [queued("tok/1 x", now - 1000)])  # a call_id with "/" and " "

        async def found() -> bool:
            return (await get_call(processor.url, "tok%2F1%20x", TOKEN))[0] == 200

        await wait_until(found)
        _, body = await get_call(processor.url, "tok%2F1%20x", TOKEN)
        assert body["call_id"] == "tok/1 x" and body["waiting"][0]["position"] == 1
        assert (await get_call(processor.url, "tok%2F1%20x"))[0] == 401
        assert (await get_call(processor.url, "tok%2F1%20x", "wrong"))[0] == 401
        assert (await get_call(processor.url, "nobody", TOKEN))[0] == 404
