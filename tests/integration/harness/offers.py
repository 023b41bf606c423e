"""Callback reservations for 250 callers, many small script calls' worth
(`StateStore.many`): the answers each would get alone, in order, whatever the grouping."""

from __future__ import annotations

import time
import uuid

from stream.state.keys import KeySpace
from stream.state.offers import OfferStore
from stream.state.store import StateStore


def asks() -> tuple[list[tuple[str, str, str, str, str]], list[int], list[str]]:
    """Reservations for 250 callers, two callers' asks among them (one's within a script
    call, the other's across two): (asks, caps, the answers each would get alone, in this
    order)."""
    first = [("4420000001", "o1", "c1", "q", "missed_call"),  # made
             ("4420000001", "o1", "c1", "q", "missed_call"),  # asked again: the same answer
             ("4420000001", "o2", "c1", "q", "ewt_threshold"),  # a second offer for c1
             ("4420000001", "o3", "c3", "q", "missed_call"),  # the caller's second: cap 2
             ("4420000001", "o4", "c4", "q", "missed_call")]  # a third: over the cap
    first_answers = ["ok", "ok", "already_offered", "ok", "caller_cap"]
    second = [("4420000002", f"s{n}", f"e{n}", "r", "missed_call") for n in range(3)]
    second_answers = ["ok", "ok", "caller_cap"]
    out: list[tuple[str, str, str, str, str]] = []
    expected: list[str] = []
    for n in range(242):
        if n % 15 == 0 and first:
            out.append(first.pop(0))
            expected.append(first_answers.pop(0))
        if n in (93, 94, 95):  # at 98, 100 and 102 of the list: two script calls
            out.append(second.pop(0))
            expected.append(second_answers.pop(0))
        out.append((f"44300{n:05d}", f"p{n}", f"d{n}", f"q{n % 7}", "missed_call"))
        expected.append("ok")
    return out, [2] * len(out), expected


async def reserve_all(url: str) -> None:
    store = await StateStore.connect(url, [(300, 10)], KeySpace(f"m{uuid.uuid4().hex[:8]}"))
    try:
        wanted, caps, expected = asks()
        offers = OfferStore(store)
        assert await offers.reserve(wanted, int(time.time() * 1000), caps) == expected
        # again, as after a crash: the same answers (the offers exist, the cap counts them)
        assert await offers.reserve(wanted, int(time.time() * 1000), caps) == expected
    finally:
        await store.close()
