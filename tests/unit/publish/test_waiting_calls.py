"""The index of where calls wait: re-read only what changed, forget what left."""

from __future__ import annotations

from typing import Any, cast

import pytest

from stream.publish.waiting_calls import WaitingCalls
from stream.state.store import StateStore, ranked_call


def member(call_id: str, ts_ms: int) -> str:
    """A ``:ranked`` member as apply_queue.lua writes it."""
    if ts_ms < 0:
        digits = f"{-ts_ms:018d}".translate(str.maketrans("0123456789", "9876543210"))
        return f"0{digits}|{call_id}"
    return f"1{ts_ms:018d}|{call_id}"


class FakeStore:
    """Each queue's ranked list, and which queues were read."""

    def __init__(self) -> None:
        self.lists: dict[str, list[tuple[str, int]]] = {}
        self.read: list[str] = []

    async def waiting_in_order(self, queue_ids: list[str]) -> dict[str, list[str]]:
        self.read += queue_ids
        return {q: [member(c, ts) for c, ts in self.lists[q]] for q in queue_ids}


def raw(gen: int, waiting: int) -> dict[str, Any]:
    """A queue's read_queue answer, as far as the index looks at it."""
    return {"waiting_gen": gen, "waiting": waiting, "windows": {"900": {}}}


def test_a_member_gives_back_its_call_id_and_time() -> None:
    for call_id, ts in [("a|b", 1_764_643_200_123), ("x", 0), ("old", -1_000_500), ("y", -1)]:
        assert ranked_call(member(call_id, ts)) == (call_id, ts)
    times = [-2_000, -1_999, -1, 0, 1, 10**15]
    assert sorted(member("c", t) for t in times) == [member("c", t) for t in times]


async def test_only_changed_queues_are_read_and_calls_that_left_are_forgotten() -> None:
    store = FakeStore()
    calls = WaitingCalls()
    store.lists = {"a": [("c1", 1000), ("c2", 2000)], "b": [("c2", 500)]}
    await calls.refresh(cast(StateStore, store), 5000, {"a": raw(1, 2), "b": raw(4, 1)}, {})
    assert sorted(store.read) == ["a", "b"]
    assert [(w["queue_id"], w["position"]) for w in calls.find("c2")] == [("a", 2), ("b", 1)]

    store.read.clear()
    store.lists["a"] = [("c2", 2000)]  # c1 answered: a's counter moves, b's does not
    await calls.refresh(cast(StateStore, store), 6000, {"a": raw(2, 1), "b": raw(4, 1)}, {})
    assert store.read == ["a"]
    assert calls.find("c1") == []
    assert [(w["queue_id"], w["position"]) for w in calls.find("c2")] == [("a", 1), ("b", 1)]

    await calls.refresh(cast(StateStore, store), 7000, {"a": raw(2, 1)}, {})  # b forgotten
    assert [w["queue_id"] for w in calls.find("c2")] == ["a"]


async def test_waits_follow_the_clock_setting() -> None:
    store = FakeStore()
    store.lists = {"a": [("c1", 1000)]}
    event_clock = WaitingCalls(event_clock=True)
    await event_clock.refresh(cast(StateStore, store), 4500, {"a": raw(1, 1)}, {})
    assert event_clock.find("c1")[0]["wait_seconds"] == pytest.approx(3.5)
    wall = WaitingCalls()
    await wall.refresh(cast(StateStore, store), 4500, {"a": raw(1, 1)}, {})
    assert wall.find("c1")[0]["wait_seconds"] > 10**9  # wall now − 1970
