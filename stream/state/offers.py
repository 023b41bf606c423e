"""Callback offers in Redis: the queue's side (offers, outbox, counts) in the queue's slot,
the caller's side (one offer per call, the per-caller cap, missed-call offers open for
cancelling) in the caller's slot. Each step is one atomic script and can be run again:
a decision interrupted by a crash is taken again, to the same end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .store import BUCKET_TTL_EXTRA_S, StateStore

#: The caller's side of an offer outlives the 24 h cap and any retries.
CALLER_TTL_S = 2 * 86400


@dataclass(frozen=True, slots=True)
class Crossing:
    """A waiting call whose wait reached the queue's callback threshold."""

    queue_id: str
    caller: str
    queued_ms: int
    call_id: str
    member: str


class OfferStore:
    """The scripts of callback offers, through the state store's connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.keys = store.keys

    async def crossings(self, queue_ids: list[str], now_ms: int, lease_ms: int,
                        limit: int = 500) -> list[Crossing]:
        """Threshold crossings due now on these queues, leased to this caller."""
        if not queue_ids:
            return []
        replies = await self.store._scripts([
            ("cb_due", self.keys.queue(q), str(now_ms), str(lease_ms), str(limit))
            for q in queue_ids])
        found = []
        for queue_id, members in zip(queue_ids, replies, strict=True):
            for member in members:
                caller, queued, call_id = str(member).split("|", 2)
                found.append(Crossing(queue_id, caller, int(queued), call_id, str(member)))
        return found

    async def position(self, queue_id: str, call_id: str) -> int | None:
        """The call's place among the waiting calls, by arrival (1: the next one)."""
        rank: Any = await self.store.client.zrank(self.keys.queue(queue_id) + ":waiting",
                                                  call_id)
        return None if rank is None else int(rank) + 1

    async def opted_out(self, caller: str) -> bool:
        return bool(await self.store.client.sismember(self.keys.optout, caller))

    async def reserve(self, caller: str, offer_id: str, call_id: str, queue_id: str,
                      kind: str, now_ms: int, cap: int) -> str:
        """The caller's side: "ok", "already_offered" or "caller_cap"."""
        reply = await self.store._scripts([(
            "cb_reserve", self.keys.caller(caller), offer_id, call_id, queue_id, kind,
            str(now_ms), str(cap), str(CALLER_TTL_S))])
        return str(reply[0])

    async def release(self, caller: str, offer_id: str, call_id: str = "") -> None:
        """Give back a reservation (with ``call_id``), or close a missed-call offer for
        cancelling (without)."""
        await self.store._scripts([("cb_release", self.keys.caller(caller), offer_id,
                                    call_id)])

    async def missed_open(self, caller: str) -> dict[str, str]:
        """offer_id -> queue_id: the caller's missed-call offers that may be cancelled."""
        raw = await self.store.client.hgetall(self.keys.caller(caller) + ":cb:missed")
        return {str(k): str(v) for k, v in raw.items()}

    async def emit(self, queue_id: str, now_ms: int, **offer: Any) -> str:
        """The queue's side: "ok", "moot" (no longer waiting) or "max_pending"."""
        args = offer | {"now": now_ms, "windows": self.store.windows,
                        "bucket_ttl_extra_s": BUCKET_TTL_EXTRA_S}
        reply = await self.store._scripts([("cb_emit", self.keys.queue(queue_id),
                                            json.dumps(args))])
        return str(reply[0])

    async def refuse(self, queue_id: str, offer_id: str, reason: str, member: str = ""
                     ) -> None:
        """Count a refusal once per offer (and settle its crossing, if any)."""
        await self.store._scripts([("cb_refuse", self.keys.queue(queue_id), offer_id, reason,
                                    member)])

    async def offer(self, queue_id: str, offer_id: str) -> dict[str, Any] | None:
        raw = await self.store.client.hget(self.keys.queue(queue_id) + ":offers", offer_id)
        return None if raw is None else dict(json.loads(raw))

    async def attempt(self, queue_id: str, **attempt: Any) -> str:
        """"reached", "retry", "unreached", or "" (taken before, or no such open offer)."""
        reply = await self.store._scripts([("cb_attempt", self.keys.queue(queue_id),
                                            json.dumps(attempt))])
        return str(reply[0])

    async def cancel(self, queue_id: str, offer_id: str, msg_id: str, payload: str,
                     now_ms: int) -> bool:
        reply = await self.store._scripts([("cb_cancel", self.keys.queue(queue_id), offer_id,
                                            msg_id, payload, str(now_ms))])
        return bool(reply[0])
