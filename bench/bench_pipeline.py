"""Benchmark `callstream run` as it ships, every feature on (run by hand, not in CI).

    .venv/bin/python bench/bench_pipeline.py throughput [--calls 100000 --queues 50]
        [--agents 500]
    .venv/bin/python bench/bench_pipeline.py latency [--rate 5000 --seconds 20]
    .venv/bin/python bench/bench_pipeline.py rss [--events 1000000]

Every mode runs the processor as `callstream run` wires it: journeys, callback offers
(callback hours all day, so that offers are made whatever the hour), alerts, per-agent
figures, the snapshot refresher, the janitor, and MQTT when Mosquitto answers on
127.0.0.1:1883.

throughput: produce the events first, then run `callstream run` as a child process on
them, timed from the first batch Redis recorded as done (applied, relayed, offsets saved)
to the last, between two bare aiokafka drains of the topic in the same run (the share is
of the drains' mean: the VM's speed moves from minute to minute); and the CPU per event of
Redis and of the processor over that time.
latency: produce at a fixed rate while the processor runs (in this process, wired by
`run_processor`); Kafka record timestamp (producer side) to the moment the batch holding it
was fetched (Kafka's own delivery), had its state applied in Redis (the figures), and was
finished (facts relayed, offsets committed).
rss: a `callstream run` child process applies N events; its VmRSS at the end.

--agents N: calls are answered by N agents, each of whom also sends agent.state busy at
the answer, wrapup at the end and available 10 s later (the per-agent figures at work).
CALLSTREAM_BENCH_REDIS_URL names the Redis database (default db 14, flushed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import ProcessorProcess, http_text, unique_settings
from stream.app.run import run_processor
from stream.config import Settings, load_policy
from stream.ingest.checkpoint import Checkpoint
from stream.ingest.consumer import Consumer
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.state.keys import KeySpace
from stream.timefmt import rfc3339 as iso
from stream.tools.broker import EmbeddedBroker

REDIS_URL = os.environ.get("CALLSTREAM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def events_for(calls: int, queues: int, seed: int = 1, agents: int = 0
               ) -> list[tuple[bytes, bytes]]:
    """~2.85 events per call: queued, then answered + ended (75%) or abandoned; with
    ``agents``, three agent.state events more per answered call."""
    rng = random.Random(seed)
    # Every event in the past, however many calls (a ts past now + 5 min is refused).
    start = int(time.time() * 1000) - max(1800_000, calls * 10 + 400_000)
    out: list[tuple[bytes, bytes]] = []
    for i in range(calls):
        queue = f"queue{i % queues}"
        call = f"c{seed}-{i}"
        t = start + i * 10
        wait = rng.randint(1, 60) * 1000
        rows: list[dict[str, Any]] = [{"type": "call.queued", "ts": iso(t),
                                       "caller": f"+4420{rng.randint(10**7, 10**8 - 1)}"}]
        agent = f"a{i % agents}" if agents else "a1"
        states: list[tuple[int, str]] = []
        if rng.random() < 0.85:
            rows.append({"type": "call.answered", "ts": iso(t + wait), "agent_id": agent})
            rows.append({"type": "call.ended", "ts": iso(t + wait + 180_000)})
            states = [(t + wait, "busy"), (t + wait + 180_000, "wrapup"),
                      (t + wait + 190_000, "available")]
        else:
            rows.append({"type": "call.abandoned", "ts": iso(t + wait)})
        for n, row in enumerate(rows):
            row |= {"event_id": f"{call}-{n}", "call_id": call, "queue_id": queue}
            out.append((queue.encode(), json.dumps(row).encode()))
        for n, (ts, state) in enumerate(states if agents else []):
            row = {"event_id": f"{call}-s{n}", "type": "agent.state", "ts": iso(ts),
                   "agent_id": agent, "state": state, "queues": [queue]}
            out.append((agent.encode(), json.dumps(row).encode()))
    return out


async def produce_all(settings: Settings, events: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for start in range(0, len(events), 20_000):
            futures = [await producer.send(settings.topic_events, value, key=key)
                       for key, value in events[start:start + 20_000]]
            await asyncio.gather(*futures)
            print(f"\rproduced {start + len(futures)}/{len(events)}", end="", file=sys.stderr)
        print(file=sys.stderr)
    finally:
        await producer.stop()


async def bare_drain(settings: Settings, total: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    partitions = consumer.partitions_for_topic(settings.topic_events) or set()
    consumer.assign([TopicPartition(settings.topic_events, p) for p in partitions])
    await consumer.seek_to_beginning()
    seen, first = 0, 0.0
    while seen < total:
        batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        n = sum(len(records) for records in batch.values())
        if n and not first:
            first = time.perf_counter()
        seen += n
    elapsed = time.perf_counter() - first
    await consumer.stop()
    return total / elapsed


#: The policy of the benchmark: contract defaults, but callbacks all day.
POLICY_TOML = '[defaults]\ncallback_hours = "00:00-24:00"\n'


def product_settings(bootstrap: str, policy_file: Path, **overrides: Any) -> Settings:
    """Settings of a `callstream run` with every feature on."""
    mqtt = "mqtt://127.0.0.1:1883" if _answers("127.0.0.1", 1883) else ""
    return unique_settings(bootstrap, redis_url=REDIS_URL, policy_file=str(policy_file),
                           mqtt_url=mqtt, **overrides)


def _answers(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


async def done_count(client: aioredis.Redis, settings: Settings) -> int:
    """Messages recorded as done by the processor (its checkpoint: last offset + 1 per
    partition, every partition starting at 0)."""
    key = KeySpace(settings.redis_prefix).checkpoint(settings.topic_events)
    return sum(int(offset) + 1 for offset in (await client.hgetall(key)).values())


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_seconds() -> float:
    client = aioredis.Redis.from_url(REDIS_URL)
    info = await client.info("cpu")
    await client.aclose()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def throughput(args: argparse.Namespace) -> None:
    events = events_for(args.calls, args.queues, agents=args.agents)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder:
        policy = Path(folder) / "policy.toml"
        policy.write_text(POLICY_TOML)
        settings = product_settings(broker.bootstrap, policy, kafka_start="earliest")
        await ensure_topics(settings, all_topics(settings))
        await produce_all(settings, events)
        drain_before = await bare_drain(settings, len(events))
        client = aioredis.Redis.from_url(REDIS_URL)
        processor = await ProcessorProcess(settings).start()
        pid = processor.process.pid
        while not (first_done := await done_count(client, settings)):
            await asyncio.sleep(0.005)
        first, cpu_first = time.perf_counter(), (await redis_cpu_seconds(),
                                                 process_cpu_seconds(pid))
        while (done := await done_count(client, settings)) < len(events):
            await asyncio.sleep(0.005)
        last, cpu_last = time.perf_counter(), (await redis_cpu_seconds(),
                                               process_cpu_seconds(pid))
        processor.terminate()
        await client.aclose()
        drain_after = await bare_drain(settings, len(events))
    measured = done - first_done
    rate = measured / (last - first)
    print(f"events: {len(events)} ({args.calls} calls, {args.queues} queues, "
          f"{args.agents or 1} agent(s), 8 partitions); MQTT "
          f"{'on' if settings.mqtt_url else 'off (no Mosquitto on 127.0.0.1:1883)'}")
    # The VM's speed moves from minute to minute: the drain is timed before and after the
    # processor's run, and the share taken of their mean.
    drain_rate = (drain_before + drain_after) / 2
    print(f"bare aiokafka drain: {drain_rate:,.0f} events/s (before the processor "
          f"{drain_before:,.0f}, after it {drain_after:,.0f})")
    print(f"callstream run:      {rate:,.0f} events/s "
          f"({rate / drain_rate:.1%} of the bare drain; {measured} events after the first "
          f"batch)")
    redis_us, own_us = ((after - before) * 1e6 / measured
                        for before, after in zip(cpu_first, cpu_last, strict=True))
    print(f"CPU per event: Redis {redis_us:.1f} µs (all its clients), "
          f"callstream run {own_us:.1f} µs")


async def paced_produce(settings: Settings, events: list[tuple[bytes, bytes]], rate: int
                        ) -> None:
    """Produce at ``rate`` events/s, each event's ts the moment it is sent."""
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    started = time.perf_counter()
    for i, (key, value) in enumerate(events):
        row = json.loads(value) | {"ts": iso(int(time.time() * 1000))}
        await producer.send(settings.topic_events, json.dumps(row).encode(), key=key)
        ahead = started + (i + 1) / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    await producer.flush()
    await producer.stop()


def _producer_process(settings: Settings, events: list[tuple[bytes, bytes]], rate: int) -> None:
    asyncio.run(paced_produce(settings, events, rate))


class Latencies:
    """Each event's latency at the three points, noted by wrapping the consumer's steps
    (a few percent of the CPU per event: not in a throughput run)."""

    def __init__(self) -> None:
        self.fetched: list[float] = []
        self.applied: list[float] = []
        self.finished: list[float] = []
        self.count = 0

    def wrap(self) -> None:
        prepare, apply, finish = Consumer._prepare, Checkpoint.apply, Checkpoint.finish

        async def timed_prepare(consumer: Consumer, records: list[Any]) -> Any:
            now_ms = time.time() * 1000
            self.fetched.extend(now_ms - r.timestamp for r in records)
            return await prepare(consumer, records)

        async def timed_apply(checkpoint: Checkpoint, batch: Any, *rest: Any) -> Any:
            results = await apply(checkpoint, batch, *rest)
            now_ms = time.time() * 1000
            self.applied.extend(now_ms - e.ts for e in batch.state.events)
            return results

        async def timed_finish(checkpoint: Checkpoint, batch: Any) -> None:
            await finish(checkpoint, batch)
            now_ms = time.time() * 1000
            self.finished.extend(now_ms - e.ts for e in batch.state.events)
            self.count += batch.size

        Consumer._prepare = timed_prepare  # type: ignore[method-assign]
        Checkpoint.apply = timed_apply  # type: ignore[method-assign]
        Checkpoint.finish = timed_finish  # type: ignore[method-assign]


async def latency(args: argparse.Namespace) -> None:
    events = events_for(args.rate * args.seconds // 3 + 1, 50, seed=2)
    events = events[: args.rate * args.seconds]
    seen = Latencies()
    seen.wrap()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder:
        policy_file = Path(folder) / "policy.toml"
        policy_file.write_text(POLICY_TOML)
        settings = product_settings(broker.bootstrap, policy_file, kafka_start="earliest")
        await ensure_topics(settings, all_topics(settings))
        stop = asyncio.Event()
        running = asyncio.create_task(
            run_processor(settings, load_policy(str(policy_file)), stop))
        await asyncio.sleep(8)  # group join
        # The producer is a process of its own, as the telephony platform would be.
        producer = multiprocessing.get_context("spawn").Process(
            target=_producer_process, args=(settings, events, args.rate))
        producer.start()
        while seen.count < len(events):
            await asyncio.sleep(0.1)
        stop.set()
        await running
        producer.join()
    quantiles = {}
    for name, values in (("produce -> fetched by callstream (Kafka's delivery)", seen.fetched),
                         ("produce -> state applied in Redis (the figures)", seen.applied),
                         ("produce -> facts relayed, offsets committed (end to end)",
                          seen.finished)):
        q = statistics.quantiles(values, n=100)
        quantiles[name] = q
        print(f"{len(values)} events at {args.rate}/s, {name}: p50 {q[49]:.1f} ms, "
              f"p99 {q[98]:.1f} ms, max {max(values):.1f} ms")
    fetched, applied = (q[98] for q in list(quantiles.values())[:2])
    print(f"p99 state applied over Kafka's own delivery: {applied - fetched:.1f} ms")


async def consumed(url: str) -> float:
    """Messages the processor has consumed, from its callstream_events_total."""
    metrics = await http_text(url + "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("callstream_events_total{"))


async def rss(args: argparse.Namespace) -> None:
    calls = args.events * 100 // 285
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder:
        policy = Path(folder) / "policy.toml"
        policy.write_text(POLICY_TOML)
        settings = product_settings(broker.bootstrap, policy)
        await ensure_topics(settings, all_topics(settings))
        processor = await ProcessorProcess(settings).start()
        for part in range(0, calls, 100_000):
            await produce_all(settings, events_for(min(100_000, calls - part), 50, seed=part))
        produced = sum(1 for part in range(0, calls, 100_000)
                       for _ in events_for(min(100_000, calls - part), 50, seed=part))
        while await consumed(processor.url) < produced:
            await asyncio.sleep(1)
        await asyncio.sleep(3)
        status = Path(f"/proc/{processor.process.pid}/status").read_text()
        vmrss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        print(f"after {produced:,} events: processor {vmrss}")
        processor.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--calls", type=int, default=100_000)
    t.add_argument("--queues", type=int, default=50)
    t.add_argument("--agents", type=int, default=0)
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=int, default=5000)
    lat.add_argument("--seconds", type=int, default=20)
    r = sub.add_parser("rss")
    r.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run({"throughput": throughput, "latency": latency, "rss": rss}[args.mode](args))
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True, check=False)


if __name__ == "__main__":
    main()
