"""Callback offers (contract §3): when a caller's wait crosses the threshold, when the
estimated wait is too long, or after a missed call; exactly once per call, under the
opt-out list, per-caller caps, callback hours and the per-queue pending bound.

It acts on what the state step decided and never reaches back into the consumer:
- wait threshold: the queue script keeps each waiting call's crossing time; a timer
  here hands out the crossings due (``cb_due.lua``), so no event needs to arrive;
- EWT threshold and missed calls: from the caller facts of each batch (a FactHandler);
- retries: from the ``call.callback_attempt`` events of each batch (a batch hook).
Offers and cancels go out through :class:`~stream.act.publish_once.OncePublisher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.act.publish_once import Forward, OncePublisher
from stream.config import CallbackHours, Policy, QueuePolicy, Settings
from stream.figures.estimates import WaitEstimates
from stream.ingest.kafka import make_producer
from stream.parse.events import CallbackAttempt
from stream.state.offers import Crossing, OfferStore
from stream.state.outgoing import Outgoing
from stream.state.rows import CallerFact, StateBatch
from stream.state.store import StateStore
from stream.timefmt import rfc3339

log = logging.getLogger(__name__)
#: How often crossings are looked for: an offer goes out well within 1 s of its crossing.
TICK_SECONDS = 0.2
#: A crossing handed to one instance comes back to any after this, unless settled.
LEASE_MS = 5_000
#: An EWT offer is for a caller joining now, not for a fact relayed long after.
EWT_FRESH_MS = 60_000


def offer_id_for(call_id: str) -> str:
    """One offer per call, ever: its id is the call's, so every instance names it alike."""
    return "cb-" + hashlib.blake2b(call_id.encode(), digest_size=8).hexdigest()


def within_hours(policy: QueuePolicy, moment_ms: int) -> bool:
    """Is ``moment_ms`` inside the queue's callback hours, in the queue's time zone?"""
    local = datetime.fromtimestamp(moment_ms / 1000, ZoneInfo(policy.timezone))
    return CallbackHours.parse(policy.callback_hours).contains(local.time())


def next_opening(policy: QueuePolicy, moment_ms: int) -> int:
    """The first moment (ms) at or after ``moment_ms`` inside the callback hours; daylight
    saving changes are zoneinfo's (an opening at a local time that does not exist that
    day is taken at the instant the zone maps it to)."""
    if within_hours(policy, moment_ms):
        return moment_ms
    hours = CallbackHours.parse(policy.callback_hours)
    zone = ZoneInfo(policy.timezone)
    local = datetime.fromtimestamp(moment_ms / 1000, zone)
    opening = clock_time(hours.start_minute // 60, hours.start_minute % 60)
    for days in range(8):
        candidate = datetime.combine(local.date() + timedelta(days=days), opening, zone)
        at = int(candidate.astimezone(UTC).timestamp() * 1000)
        if at > moment_ms and within_hours(policy, at):
            return at
    raise ValueError(f"callback_hours {policy.callback_hours!r} never open")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What policy says before Redis is asked: offer now, at ``due_ms``, or refuse."""

    due_ms: int | None
    refusal: str | None = None


def first_verdict(kind: str, policy: QueuePolicy, opted_out: bool, now_ms: int) -> Verdict:
    """The checks that need no shared state: the opt-out list and callback hours. A
    missed call outside the hours waits for the next opening; a caller still in the
    queue cannot."""
    if opted_out:
        return Verdict(None, "opted_out")
    if within_hours(policy, now_ms):
        return Verdict(now_ms)
    if kind == "missed_call":
        return Verdict(next_opening(policy, now_ms))
    return Verdict(None, "outside_hours")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A call that may get an offer."""

    kind: str
    queue_id: str
    call_id: str
    caller: str
    wait_ms: int
    #: when it happened (the crossing, the queueing, the abandon): the offer counts then
    at_ms: int
    member: str = ""  # the crossing it settles, for wait_threshold


class Callbacks:
    """Decides, records and publishes callback offers for every queue."""

    def __init__(self, settings: Settings, policy: Policy, store: StateStore,
                 estimates: WaitEstimates, forward: Forward | None = None,
                 producer: AIOKafkaProducer | None = None) -> None:
        self.settings, self.policy, self.store = settings, policy, store
        self.estimates, self.forward = estimates, forward
        self.offers = OfferStore(store)
        self.producer = producer or make_producer(settings)
        self.publishers = [
            OncePublisher(settings, store, self.producer, settings.topic_offers, "offers",
                          settings.instance, self._sent),
            OncePublisher(settings, store, self.producer, settings.topic_cancels, "cancels",
                          settings.instance, self._sent),
        ]

    async def now_ms(self) -> int:
        return await self.store.now_ms(self.settings.event_clock)

    # -- triggers ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Offer to the callers whose wait crossed the threshold, then publish what is due."""
        now = await self.now_ms()
        queue_ids = await self.store.queue_ids()
        crossings = await self.offers.crossings(queue_ids, now, LEASE_MS)
        await self._decide([self._from_crossing(c, now) for c in crossings], now)
        for publisher in self.publishers:
            await publisher.tick(queue_ids, now)

    def _from_crossing(self, crossing: Crossing, now_ms: int) -> Candidate:
        threshold_ms = round(self.policy.for_queue(crossing.queue_id).callback_wait_seconds
                             * 1000)
        return Candidate("wait_threshold", crossing.queue_id, crossing.call_id,
                         crossing.caller, now_ms - crossing.queued_ms,
                         crossing.queued_ms + threshold_ms, crossing.member)

    async def take(self, facts: list[CallerFact], now_ms: int) -> None:
        """Caller facts of a batch (FactHandler): EWT offers at queueing, missed-call
        offers at an abandon, cancels when a missed caller is answered."""
        now = await self.now_ms()
        candidates: list[Candidate] = []
        answered: list[str] = []
        ewts = self.estimates.seconds()
        for fact in facts:
            policy = self.policy.for_queue(fact.queue_id)
            if fact.what == "queued" and now - fact.ts_ms < EWT_FRESH_MS:
                ewt = ewts.get(fact.queue_id)
                if ewt is not None and ewt > policy.callback_ewt_seconds:
                    candidates.append(Candidate("ewt_threshold", fact.queue_id, fact.call_id,
                                                fact.caller, 0, fact.ts_ms))
            elif (fact.what == "abandoned" and fact.wait_ms is not None
                  and fact.wait_ms >= policy.short_abandon_seconds * 1000):
                candidates.append(Candidate("missed_call", fact.queue_id, fact.call_id,
                                            fact.caller, fact.wait_ms, fact.ts_ms))
            elif fact.what == "answered":
                answered.append(fact.caller)
        await self._decide(candidates, now)
        await self._cancel_missed(sorted(set(answered)), now)

    async def take_again(self, facts: list[CallerFact], now_ms: int) -> None:
        """Facts taken before, again, after Redis may have lost what taking them wrote in
        the callers' slots (FactHandler): each offer made for their calls gets its
        caller's side back (one offer per call, the cap, the day's missed callers, a
        missed-call offer open for cancelling), and a missed-call offer whose caller
        these facts answer after the miss is cancelled. Nothing is decided anew: the
        estimates, the hours and the bounds are no longer what they were then."""
        now = await self.now_ms()
        calls = sorted({(f.queue_id, f.call_id) for f in facts})
        found = await self.offers.offers([(q, offer_id_for(c)) for q, c in calls])
        made = [(q, c, offer) for (q, c), offer in zip(calls, found, strict=True)
                if offer is not None]
        if not made:
            return
        await self.offers.note_missed(
            sorted({o["caller"] for _, _, o in made if o["kind"] == "missed_call"}), now)
        await self.offers.reserve(
            [(o["caller"], offer_id_for(c), c, q, o["kind"]) for q, c, o in made], now,
            [self.policy.for_queue(q).callback_max_per_caller for q, _, _ in made])
        missed_at = {(f.queue_id, f.call_id): f.ts_ms for f in facts if f.what == "abandoned"}
        answered: dict[str, int] = {}  # caller -> the last answer these facts hold
        for f in facts:
            if f.what == "answered":
                answered[f.caller] = max(answered.get(f.caller, f.ts_ms), f.ts_ms)
        done: list[tuple[str, str, str]] = []  # missed-call offers no answer cancels now
        for q, c, o in made:
            if o["kind"] != "missed_call":
                continue
            missed, answer = missed_at.get((q, c)), answered.get(o["caller"])
            cancel = o["open"] and missed is not None and answer is not None and answer >= missed
            if cancel:
                await self._cancel(q, offer_id_for(c), c, now)
            if cancel or not o["open"]:
                done.append((o["caller"], offer_id_for(c), ""))
        await self.offers.release(done)

    async def after_apply(self, batch: StateBatch, now_ms: int) -> None:
        """The telephony side's reports of callback attempts (a batch hook): retries,
        reached, unreached. Run on every delivery of a batch: each attempt counts once."""
        for event in batch.events:
            if type(event) is CallbackAttempt:  # for every event: cheaper than isinstance
                await self._attempted(event, await self.now_ms())

    # -- deciding ----------------------------------------------------------------------------

    async def _decide(self, candidates: list[Candidate], now_ms: int) -> None:
        """Opt-out and hours, then the callers' side, then the queues' side (which makes
        each offer and its outbox message in one step): each step one round trip for all
        the candidates, in order, so one caller's candidates are taken in turn; steps that
        do not wait for each other's answers share a round trip."""
        if not candidates:
            return
        opted_out = await self.offers.opted_out(sorted({c.caller for c in candidates}))
        refusals: list[tuple[str, str, str, str]] = []
        passed: list[tuple[Candidate, int]] = []
        verdicts: dict[tuple[str, str, bool], Verdict] = {}  # the same for a queue's kind
        for c in candidates:
            asked = (c.kind, c.queue_id, c.caller in opted_out)
            verdict = verdicts.get(asked)
            if verdict is None:
                verdict = verdicts[asked] = first_verdict(
                    c.kind, self.policy.for_queue(c.queue_id), asked[2], now_ms)
            if verdict.refusal is not None:
                refusals.append((c.queue_id, offer_id_for(c.call_id), verdict.refusal, c.member))
            else:
                assert verdict.due_ms is not None
                passed.append((c, verdict.due_ms))
        _, reserved = await asyncio.gather(
            # before any offer is made, so the day's set holds every caller with one
            self.offers.note_missed(
                sorted({c.caller for c, _ in passed if c.kind == "missed_call"}), now_ms),
            self.offers.reserve(
                [(c.caller, offer_id_for(c.call_id), c.call_id, c.queue_id, c.kind)
                 for c, _ in passed], now_ms,
                [self.policy.for_queue(c.queue_id).callback_max_per_caller
                 for c, _ in passed]))
        chosen: list[tuple[Candidate, int]] = []
        for (c, due), answer in zip(passed, reserved, strict=True):
            if answer == "ok":
                chosen.append((c, due))
            else:
                refusals.append((c.queue_id, offer_id_for(c.call_id), answer, c.member))
        live = [(c.queue_id, c.call_id) for c, _ in chosen if c.kind != "missed_call"]
        _, positions = await asyncio.gather(self.offers.refuse(refusals),
                                            self.offers.positions(live))
        places = dict(zip(live, positions, strict=True))
        ewts = self.estimates.seconds()
        offers = [(c.queue_id, self._offer(c, due, places.get((c.queue_id, c.call_id)), ewts))
                  for c, due in chosen]
        made = await self.offers.emit(offers)
        await self.offers.release([(c.caller, offer_id_for(c.call_id), c.call_id)
                                   for (c, _), answer in zip(chosen, made, strict=True)
                                   if answer != "ok"])

    def _offer(self, c: Candidate, due_ms: int, position: int | None,
               ewts: Mapping[str, float]) -> dict[str, Any]:
        """The queue's side of an offer, with the message of contract §3."""
        offer_id = offer_id_for(c.call_id)
        live = c.kind != "missed_call"
        payload = {
            "offer_id": offer_id, "kind": c.kind, "call_id": c.call_id,
            "queue_id": c.queue_id, "caller": c.caller,
            "wait_seconds": round(c.wait_ms / 1000, 3),
            "position": position if live else None,
            "ewt_seconds": ewts.get(c.queue_id) if live else None,
            "attempt": 1, "ts": rfc3339(due_ms),
        }
        return {"offer_id": offer_id, "msg_id": f"{offer_id}:1", "kind": c.kind,
                "call_id": c.call_id, "caller": c.caller, "member": c.member,
                "need_waiting": live,
                "max_pending": self.policy.for_queue(c.queue_id).callback_max_pending,
                "payload": json.dumps(payload), "due": due_ms, "at": c.at_ms}

    async def _cancel_missed(self, callers: list[str], now_ms: int) -> None:
        """The callers answered now lose their missed-call offers that were not worked."""
        for caller, offers in (await self.offers.missed_open(callers, now_ms)).items():
            for offer_id, queue_id in offers.items():
                offer = await self.offers.offer(queue_id, offer_id)
                await self._cancel(queue_id, offer_id, offer["call_id"] if offer else "",
                                   now_ms)
            await self.offers.release([(caller, offer_id, "") for offer_id in offers])

    async def _cancel(self, queue_id: str, offer_id: str, call_id: str, now_ms: int) -> None:
        """Close a missed-call offer as cancelled: its caller was answered."""
        payload = {"offer_id": offer_id, "queue_id": queue_id, "call_id": call_id,
                   "reason": "answered", "ts": rfc3339(now_ms)}
        await self.offers.cancel(queue_id, offer_id, f"{offer_id}:cancel", json.dumps(payload),
                                 now_ms)

    async def _attempted(self, event: CallbackAttempt, now_ms: int) -> None:
        offer = await self.offers.offer(event.queue_id, event.offer_id)
        if offer is None or not offer["open"]:
            return
        policy = self.policy.for_queue(event.queue_id)
        retry_due = next_opening(policy, now_ms + round(policy.callback_retry_minutes * 60_000))
        attempt = int(offer["attempt"]) + 1
        payload = json.loads(offer["payload"]) | {"attempt": attempt, "ts": rfc3339(retry_due)}
        outcome = await self.offers.attempt(
            event.queue_id, offer_id=event.offer_id, token=event.event_id,
            result=event.result, max_attempts=policy.callback_max_attempts,
            retry_msg_id=f"{event.offer_id}:{attempt}", retry_payload=json.dumps(payload),
            retry_due=retry_due)
        if outcome and offer["kind"] == "missed_call":  # worked: no cancel any more
            await self.offers.release([(offer["caller"], event.offer_id, "")])

    # -- publishing --------------------------------------------------------------------------

    def _sent(self, message: Outgoing) -> None:
        if self.forward is not None:
            self.forward(message.queue_id, json.loads(message.payload))

    async def run(self, stop: asyncio.Event) -> None:
        """The timer: crossings and publishing, every ``TICK_SECONDS``, until ``stop``."""
        await self.producer.start()
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except (RedisError, KafkaError, OSError) as exc:
                    log.debug("callback offers: %s; trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        finally:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(self.producer.stop(), 3)
