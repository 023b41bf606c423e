"""Callback offers in Redis: the queue's side (offers, outbox, counts) in the queue's slot,
the caller's side (one offer per call, the per-caller cap, missed-call offers open for
cancelling) in the caller's slot. Each step is one atomic script and can be run again:
a decision interrupted by a crash is taken again, to the same end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stream.state.optout import OptOutList
from stream.state.store import BUCKET_TTL_EXTRA_S, StateStore

#: The caller's side of an offer outlives the 24 h cap and any retries.
CALLER_TTL_S = 2 * 86400
#: A day's set of missed callers is looked in today and tomorrow.
MISSED_SET_TTL_S = 2 * 86400 + 3600


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
        replies = await self.store.scripts.run([
            ("cb_due", self.keys.queue(q), str(now_ms), str(lease_ms), str(limit))
            for q in queue_ids])
        found = []
        for queue_id, members in zip(queue_ids, replies, strict=True):
            for member in members:
                caller, queued, call_id = str(member).split("|", 2)
                found.append(Crossing(queue_id, caller, int(queued), call_id, str(member)))
        return found

    async def positions(self, calls: list[tuple[str, str]]) -> list[int | None]:
        """Each (queue, call)'s place among the waiting calls, by arrival (1: the next)."""
        if not calls:
            return []
        pipe = self.store.client.pipeline(transaction=False)
        for queue_id, call_id in calls:
            pipe.zrank(self.keys.queue_key(queue_id, "waiting"), call_id)
        ranks: list[Any] = await pipe.execute()
        return [None if rank is None else int(rank) + 1 for rank in ranks]

    async def opted_out(self, callers: list[str]) -> set[str]:
        """The callers of these who are on the opt-out list."""
        return await OptOutList(self.store.client, self.keys).which(callers)

    async def reserve(self, asks: list[tuple[str, str, str, str, str]], now_ms: int,
                      caps: list[int]) -> list[str]:
        """The callers' side of (caller, offer_id, call_id, queue_id, kind), in order:
        each "ok", "already_offered" or "caller_cap"."""
        replies = await self.store.scripts.many("cb_reserve", [
            (self.keys.caller(caller), offer_id, call_id, queue_id, kind, str(now_ms),
             str(cap), str(CALLER_TTL_S))
            for (caller, offer_id, call_id, queue_id, kind), cap in zip(asks, caps,
                                                                         strict=True)])
        return [str(reply) for reply in replies]

    async def release(self, releases: list[tuple[str, str, str]]) -> None:
        """(caller, offer_id, call_id): give back a reservation (with a call_id), or close
        a missed-call offer for cancelling (call_id "")."""
        await self.store.scripts.many("cb_release", [(self.keys.caller(caller), offer_id, call_id)
                                             for caller, offer_id, call_id in releases])

    async def note_missed(self, callers: list[str], now_ms: int) -> None:
        """Note callers about to get a missed-call offer (before the offer is made, so the
        day's set is always a superset of the callers with one)."""
        if callers:
            key = self.keys.missed_callers(now_ms // 86_400_000)
            pipe = self.store.client.pipeline(transaction=False)
            pipe.sadd(key, *callers)
            pipe.expire(key, MISSED_SET_TTL_S)
            await pipe.execute()

    async def missed_open(self, callers: list[str], now_ms: int) -> dict[str, dict[str, str]]:
        """caller -> {offer_id: queue_id}: their missed-call offers that may be cancelled
        (callers with none are left out). Two set look-ups sift the callers first: most
        answered callers were never missed."""
        if not callers:
            return {}
        today = now_ms // 86_400_000
        pipe = self.store.client.pipeline(transaction=False)
        for day in (today, today - 1):
            pipe.smismember(self.keys.missed_callers(day), callers)
        flags: list[Any] = await pipe.execute()
        noted = [c for c, a, b in zip(callers, flags[0], flags[1], strict=True) if a or b]
        if not noted:
            return {}
        pipe = self.store.client.pipeline(transaction=False)
        for caller in noted:
            pipe.hgetall(self.keys.caller_key(caller, "caller_missed"))
        replies: list[Any] = await pipe.execute()
        return {caller: {str(k): str(v) for k, v in found.items()}
                for caller, found in zip(noted, replies, strict=True) if found}

    async def emit(self, offers: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """The queues' side of each (queue_id, offer): "ok", "moot" (no longer waiting)
        or "max_pending"."""
        extra = {"windows": self.store.windows, "bucket_ttl_extra_s": BUCKET_TTL_EXTRA_S}
        replies = await self.store.scripts.many("cb_emit", [
            (self.keys.queue(queue_id), json.dumps(offer | extra))
            for queue_id, offer in offers])
        return [str(reply) for reply in replies]

    async def refuse(self, refusals: list[tuple[str, str, str, str]]) -> None:
        """(queue_id, offer_id, reason, member): count each refusal once per offer (and
        settle its crossing, if any)."""
        await self.store.scripts.many("cb_refuse", [
            (self.keys.queue(queue_id), offer_id, reason, member)
            for queue_id, offer_id, reason, member in refusals])

    async def offer(self, queue_id: str, offer_id: str) -> dict[str, Any] | None:
        raw = await self.store.client.hget(self.keys.queue_key(queue_id, "offers"), offer_id)
        return _offer(raw)

    async def offers(self, wanted: list[tuple[str, str]]) -> list[dict[str, Any] | None]:
        """The queue's side of each (queue_id, offer_id) (see cb_emit.lua), None where no
        such offer was made, in one round trip."""
        if not wanted:
            return []
        pipe = self.store.client.pipeline(transaction=False)
        for queue_id, offer_id in wanted:
            pipe.hget(self.keys.queue_key(queue_id, "offers"), offer_id)
        replies: list[Any] = await pipe.execute()
        return [_offer(raw) for raw in replies]

    async def attempt(self, queue_id: str, **attempt: Any) -> str:
        """"reached", "retry", "unreached", or "" (taken before, or no such open offer)."""
        reply = await self.store.scripts.run([("cb_attempt", self.keys.queue(queue_id),
                                            json.dumps(attempt))])
        return str(reply[0])

    async def cancel(self, queue_id: str, offer_id: str, msg_id: str, payload: str,
                     now_ms: int) -> bool:
        reply = await self.store.scripts.run([("cb_cancel", self.keys.queue(queue_id), offer_id,
                                            msg_id, payload, str(now_ms))])
        return bool(reply[0])


def _offer(raw: str | bytes | None) -> dict[str, Any] | None:
    return None if raw is None else dict(json.loads(raw))
