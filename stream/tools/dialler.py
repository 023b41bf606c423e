"""A minimal dialler for callstream's callback offers: the telephony side of contract §3,
as the demo plays it and as an example for a real one (docs/callbacks.md).

It reads `callback-offers` and `callback-cancels`, "dials" each offer that was not
cancelled (here: a coin toss instead of a phone call), and reports every attempt back on
`call-events` as a `call.callback_attempt`, so callstream retries, closes the offer as
reached or unreached, and counts the results.

    python -m stream.tools.dialler --bootstrap localhost:9092 [--answer-rate 0.6]

Needs only aiokafka. Offers are never duplicated by callstream, so no deduplication is
needed here; a restarted dialler resumes from its consumer group's committed offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.config import Settings
from stream.timefmt import rfc3339_of


def now() -> str:
    return rfc3339_of(datetime.now(UTC))


async def dial(offer: dict[str, Any], answer_rate: float, ring_seconds: float) -> str:
    """Stand-in for the real call: ring for a moment, then a result."""
    await asyncio.sleep(ring_seconds)
    if random.random() < answer_rate:
        return "answered"
    return random.choice(["no_answer", "busy", "failed"])


async def run(bootstrap: str, answer_rate: float, offers_topic: str, cancels_topic: str,
              events_topic: str, stop_after: float | None = None, ring_seconds: float = 0.5,
              stop: asyncio.Event | None = None, quiet: bool = False) -> None:
    """Dial every offer until ``stop_after`` seconds pass or ``stop`` is set."""
    consumer = AIOKafkaConsumer(offers_topic, cancels_topic, bootstrap_servers=bootstrap,
                                group_id="dialler", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    cancelled: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = None if stop_after is None else loop.time() + stop_after
    try:
        while (deadline is None or loop.time() < deadline) and not (stop and stop.is_set()):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    message = json.loads(record.value)
                    if tp.topic == cancels_topic:
                        cancelled.add(message["offer_id"])
                        if not quiet:
                            print(f"cancelled {message['offer_id']}")
                        continue
                    if message["offer_id"] in cancelled:
                        continue  # the caller got through by themselves
                    result = await dial(message, answer_rate, ring_seconds)
                    report = {
                        "event_id": str(uuid.uuid4()), "type": "call.callback_attempt",
                        "ts": now(), "call_id": message["call_id"],
                        "queue_id": message["queue_id"], "offer_id": message["offer_id"],
                        "result": result,
                    }
                    await producer.send_and_wait(events_topic, json.dumps(report).encode(),
                                                 key=message["queue_id"].encode())
                    if not quiet:
                        print(f"offer {message['offer_id']} attempt {message['attempt']}: "
                              f"{result}")
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stream.tools.dialler",
                                     description=(__doc__ or "").split("\n\n")[0])
    defaults = Settings.model_fields
    parser.add_argument("--bootstrap", default=defaults["kafka_bootstrap"].default)
    parser.add_argument("--answer-rate", type=float, default=0.6)
    parser.add_argument("--offers-topic", default=defaults["topic_offers"].default)
    parser.add_argument("--cancels-topic", default=defaults["topic_cancels"].default)
    parser.add_argument("--events-topic", default=defaults["topic_events"].default)
    parser.add_argument("--stop-after", type=float, default=None,
                        help="seconds to run (default: until Ctrl-C)")
    args = parser.parse_args()
    asyncio.run(run(args.bootstrap, args.answer_rate, args.offers_topic, args.cancels_topic,
                    args.events_topic, args.stop_after))


if __name__ == "__main__":
    main()
