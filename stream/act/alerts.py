"""Abandonment spike alerts (contract §4): the rule, and the timer that applies it.

The rule is pure (``is_spike``, ``decide``). The episode lives in Redis, in its queue's
slot: every second each instance reads, for all queues in one round trip, the sums of the
alert window and of the baseline hour together with the episode open there, decides, and
asks the store to move the episode only if it is still the one it read (a compare and set
that also writes the message into the queue's ``alerts`` outbox in the same atomic step).
So however many instances evaluate, each episode fires once and resolves once, and the
:class:`~stream.act.publish_once.OncePublisher` sends each message exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.act.publish_once import Forward, OncePublisher
from stream.config import Policy, QueuePolicy, Settings, format_duration, parse_duration
from stream.figures.queue import window_figures
from stream.ingest.kafka import make_producer
from stream.state.outgoing import Outgoing
from stream.state.store import AlertMove, BucketRange, StateStore
from stream.timefmt import rfc3339 as iso
from stream.vocabulary import ALERT_KINDS

log = logging.getLogger(__name__)
KIND = ALERT_KINDS[0]  # the one kind decided so far
#: The alerts' outbox channel (see publish_once.py).
CHANNEL = "alerts"
#: The baseline is the queue's abandon ratio over this long before the alert window.
BASELINE_SECONDS = 3600
#: How often each instance evaluates every queue: an episode resolves without events.
EVALUATE_SECONDS = 1.0
#: Ratios of call counts differ by far more than this; it absorbs float rounding only
#: (3.0 * 0.1 is 0.30000000000000004).
_EPSILON = 1e-9


@dataclass(frozen=True)
class Reading:
    """A queue's alert window and baseline, as the rule reads them."""

    lost: int  # abandoned - short_abandoned
    calls: int  # answered + abandoned - short_abandoned
    baseline: float | None  # abandon ratio of the hour before the window; None: no calls

    @property
    def ratio(self) -> float | None:
        return self.lost / self.calls if self.calls > 0 else None


def _reaches(ratio: float, threshold: float) -> bool:
    return ratio >= threshold - _EPSILON


def is_spike(reading: Reading, policy: QueuePolicy) -> bool:
    """Contract §4: enough calls, and the ratio reaches ``alert_abandon_ratio``, or
    ``alert_baseline_factor`` x a baseline above 0 while at least ``alert_resolve_ratio``."""
    ratio = reading.ratio
    if ratio is None or reading.calls < policy.alert_min_calls:
        return False
    if _reaches(ratio, policy.alert_abandon_ratio):
        return True
    baseline = reading.baseline
    return (baseline is not None and baseline > 0
            and _reaches(ratio, policy.alert_resolve_ratio)
            and _reaches(ratio, policy.alert_baseline_factor * baseline))


def decide(firing: bool, reading: Reading, policy: QueuePolicy
           ) -> Literal["fire", "resolve"] | None:
    """What an episode does now: fire, resolve, or nothing.

    It resolves once the ratio is below ``alert_resolve_ratio`` (or the window holds no
    call) and one more abandon would not fire it again: where the rule's two thresholds
    meet (the baseline branch fires at ``alert_resolve_ratio``), a single call can
    neither resolve an episode nor open the next one.
    """
    if not firing:
        return "fire" if is_spike(reading, policy) else None
    ratio = reading.ratio
    if ratio is not None and _reaches(ratio, policy.alert_resolve_ratio):
        return None
    one_more = Reading(reading.lost + 1, reading.calls + 1, reading.baseline)
    return None if is_spike(one_more, policy) else "resolve"


def needs_baseline(firing: bool, window: Reading, policy: QueuePolicy) -> bool:
    """Whether the baseline can change what ``decide`` does with this window: the
    baseline branch fires more the lower the baseline, so the two extremes tell (no
    baseline, and the smallest positive one: thresholds are met within ``_EPSILON``, so
    any baseline below it may count)."""
    lowest = Reading(window.lost, window.calls, sys.float_info.min)
    return decide(firing, window, policy) != decide(firing, lowest, policy)


def alert_windows(policy: Policy) -> list[int]:
    """The series alerts read, whatever ``CALLSTREAM_WINDOWS`` holds: each alert window
    and the baseline hour."""
    every = [policy.defaults, *policy.queues.values()]
    return sorted({parse_duration(p.alert_window) for p in every} | {BASELINE_SECONDS})


def baseline_reach(policy: Policy) -> dict[int, int]:
    """How far back the baseline series' buckets must reach: the hour before the longest
    alert window (they would otherwise expire an hour after their time)."""
    longest = max(parse_duration(p.alert_window)
                  for p in [policy.defaults, *policy.queues.values()])
    return {BASELINE_SECONDS: BASELINE_SECONDS + longest}


def bucket_ranges(now_ms: int, window_s: int, buckets: dict[int, int]
                  ) -> tuple[BucketRange, BucketRange]:
    """The buckets of the alert window and of its baseline, edges rounded down (§2).

    The window is (now - W, now], as every window; the baseline is the whole buckets of
    the hour that ends at the bucket boundary at or before now - W, so that no abandon of
    the window itself can raise it.
    """
    w_ms = buckets[window_s] * 1000
    b_ms = buckets[BASELINE_SECONDS] * 1000
    edge = now_ms - window_s * 1000
    window = BucketRange(window_s, edge // w_ms, now_ms // w_ms)
    last = edge // b_ms - 1
    return window, BucketRange(BASELINE_SECONDS, last - BASELINE_SECONDS * 1000 // b_ms + 1, last)


def reading(window_sums: dict[str, float], baseline_sums: dict[str, float] | None = None
            ) -> Reading:
    """The rule's input from bucket sums (the arithmetic of figures.py); no baseline
    sums: no baseline."""
    window = window_figures(window_sums)
    baseline = None if baseline_sums is None else window_figures(baseline_sums)["abandon_ratio"]
    return Reading(window["abandoned"] - window["short_abandoned"],
                   window["answered"] + window["abandoned"] - window["short_abandoned"],
                   baseline)


def message(queue_id: str, alert_id: str, status: str, window_s: int, seen: Reading,
            now_ms: int) -> dict[str, Any]:
    """The §4 JSON of one alert message."""
    return {"alert_id": alert_id, "kind": KIND, "status": status, "queue_id": queue_id,
            "window": format_duration(window_s), "abandon_ratio": seen.ratio,
            "baseline_ratio": seen.baseline, "calls": seen.calls, "ts": iso(now_ms)}


def _publisher(settings: Settings, store: StateStore, producer: AIOKafkaProducer,
               forward: Forward | None) -> OncePublisher:
    """Publishes the alerts' outbox on ``CALLSTREAM_TOPIC_ALERTS``; each alert sent is
    handed on to ``forward`` (the MQTT twin), where there is one."""

    def sent(message: Outgoing) -> None:
        if forward is not None:
            forward(message.queue_id, json.loads(message.payload))

    return OncePublisher(settings, store, producer, settings.topic_alerts, CHANNEL,
                         settings.instance, on_sent=sent)


class AlertWatch:
    """Evaluates every queue on a timer, keeps the alerts in force for the snapshot, and
    publishes what it (or an instance that stopped) decided."""

    def __init__(self, settings: Settings, store: StateStore, policy: Policy,
                 publisher: OncePublisher | None) -> None:
        self.settings, self.store, self.policy = settings, store, policy
        self.publisher = publisher
        #: queue_id -> the alerts in force there, as of the last evaluation
        self.firing: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    async def start(cls, settings: Settings, store: StateStore, policy: Policy,
                    forward: Forward | None) -> AlertWatch:
        """A watch that publishes with a producer of its own (started now: Kafka must
        answer), stopped when ``run`` ends."""
        producer = make_producer(settings)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return cls(settings, store, policy, _publisher(settings, store, producer, forward))

    def snapshot_part(self, queue_id: str) -> dict[str, Any]:
        """The queue's alerts in force, for ``/api/queues``, the wallboard and metrics."""
        return {"alerts": self.firing.get(queue_id, [])}

    async def evaluate(self, queue_ids: list[str], now_ms: int, wall_ms: int
                       ) -> list[dict[str, Any]]:
        """Decide for every queue; returns the messages this instance put in outboxes.

        The windows and episodes of all queues come in one round trip; the baselines
        (twice the buckets) only for the queues where one can matter or a message will
        say it, in a second.
        """
        buckets = dict(self.store.windows)
        ranges = {q: bucket_ranges(now_ms, self._window(q), buckets) for q in queue_ids}
        inputs = await self.store.alert_inputs({q: r[:1] for q, r in ranges.items()}, KIND)
        firing = {q: [json.loads(stored)] for q, (_, stored) in inputs.items() if stored}
        is_open = {q: bool(stored) for q, (_, stored) in inputs.items()}
        windows = {q: reading(sums[0]) for q, (sums, _) in inputs.items()}
        deciding = [q for q, window in windows.items()
                     if decide(is_open[q], window, self.policy.for_queue(q))
                     or needs_baseline(is_open[q], window, self.policy.for_queue(q))]
        baselines = await self.store.alert_inputs({q: ranges[q][1:] for q in deciding}, KIND)
        moves = []
        for q in deciding:
            seen = reading(inputs[q][0][0], baselines[q][0][0])
            verdict = decide(is_open[q], seen, self.policy.for_queue(q))
            if verdict is not None:
                moves.append(self._move(q, inputs[q][1], verdict, seen, now_ms))
        decided = []
        for move, done in zip(moves, await self.store.move_alerts(moves, CHANNEL, wall_ms),
                              strict=True):
            if done:  # else another instance moved it first: the next evaluation reads it
                decided.append(move.message)
                firing[move.queue_id] = [move.now] if move.now else []
                log.info("alert %s %s on queue %s", move.message["alert_id"],
                         move.message["status"], move.queue_id)
        self.firing = firing
        return decided

    def _move(self, queue_id: str, stored: str, verdict: str, seen: Reading, now_ms: int
              ) -> AlertMove:
        """The episode's move from ``stored`` and the message that says so."""
        alert_id = json.loads(stored)["alert_id"] if stored else uuid.uuid4().hex
        status = "firing" if verdict == "fire" else "resolved"
        sent = message(queue_id, alert_id, status, self._window(queue_id), seen, now_ms)
        return AlertMove(queue_id, KIND, stored, sent if verdict == "fire" else None,
                         f"{alert_id}:{status}", sent)

    def _window(self, queue_id: str) -> int:
        return parse_duration(self.policy.for_queue(queue_id).alert_window)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and publish every second until ``stop`` is set; Redis trouble only
        delays (the consumer and the refresher report it)."""
        try:
            while not stop.is_set():
                try:
                    queue_ids = await self.store.queue_ids()
                    now_ms = await self.store.now_ms(self.settings.event_clock)
                    await self.evaluate(queue_ids, now_ms, int(time.time() * 1000))
                    if self.publisher is not None:
                        await self.publisher.tick(queue_ids)
                except (RedisError, KafkaError, OSError) as exc:
                    log.debug("alert evaluation: %s; trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), EVALUATE_SECONDS)
        finally:
            if self.publisher is not None:
                await self.publisher.producer.stop()
