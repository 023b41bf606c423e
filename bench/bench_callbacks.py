"""Benchmark callback offers (run by hand, not in CI): threshold crossing to offer on topic.

    .venv/bin/python bench/bench_callbacks.py [--calls 10000 --queues 50 --spread 30]

A real `callstream run` child process against tansu and the local Redis. ``--calls``
calls with callers start waiting across ``--queues`` queues, their queue times spread
over ``--spread`` seconds, so that with a 10 s threshold crossings come continuously
while all of them wait. For each offer: its Kafka record timestamp (set when the
processor sent it) minus the moment its call's wait reached the threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import ProcessorProcess, unique_settings
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.timefmt import rfc3339
from stream.tools.broker import EmbeddedBroker

REDIS_URL = "redis://127.0.0.1:6379/14"
THRESHOLD_S = 10


async def main(calls: int, queues: int, spread: float) -> None:
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as directory:
        policy = Path(directory) / "policy.toml"
        policy.write_text(f'[defaults]\ncallback_hours = "00:00-24:00"\n'
                          f"callback_wait_seconds = {THRESHOLD_S}\n"
                          f"callback_max_pending = {calls}\n")
        settings = unique_settings(broker.bootstrap, redis_url=REDIS_URL,
                                   policy_file=str(policy))
        await ensure_topics(settings, all_topics(settings))
        processor = await ProcessorProcess(settings).start()
        producer = make_producer(settings)
        await producer.start()
        crossing: dict[str, float] = {}
        start = time.time()
        try:
            for i in range(calls):  # paced: queue times spread evenly over `spread` seconds
                due = start + spread * i / calls
                if (ahead := due - time.time()) > 0:
                    await asyncio.sleep(ahead)
                now_ms = int(time.time() * 1000)
                call, queue = f"b{i}", f"bq{i % queues}"
                event = {"event_id": f"{call}-q", "type": "call.queued", "ts": rfc3339(now_ms),
                         "call_id": call, "queue_id": queue, "caller": f"44{i:010d}"}
                await producer.send(settings.topic_events, json.dumps(event).encode(),
                                    key=queue.encode())
                crossing[call] = now_ms + THRESHOLD_S * 1000
            await producer.flush()
            latencies = await collect(settings.kafka_bootstrap, settings.topic_offers, crossing,
                                      timeout=spread + THRESHOLD_S + 60)
        finally:
            await producer.stop()
            processor.terminate()
    print(f"{calls} calls waiting over {queues} queues, crossings over {spread:.0f} s")
    print(f"offers received: {len(latencies)} of {calls}")
    if latencies:
        cuts = statistics.quantiles(latencies, n=100)
        print(f"crossing -> offer on the topic: p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms, "
              f"max {max(latencies):.0f} ms")


async def collect(bootstrap: str, topic: str, crossing: dict[str, float], timeout: float
                  ) -> list[float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    latencies: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(latencies) < len(crossing) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    offer = json.loads(record.value)
                    latencies.append(record.timestamp - crossing[offer["call_id"]])
    finally:
        await consumer.stop()
    return latencies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--spread", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.queues, args.spread))
