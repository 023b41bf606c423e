"""Benchmark the voice menu's question, GET /api/calls/{call_id} (run by hand, not in CI).

    .venv/bin/python bench/bench_ivr.py [--waiting 2000 --rate 500 --seconds 20 --churn 10]

A real `callstream run` child process against tansu and the local Redis. ``--waiting``
calls with mixed priorities (none, and -2 to 3) wait in one queue, staffed so that every
caller has an EWT. Then, from this process, a paced client asks for random waiting calls at
``--rate`` requests/s for ``--seconds`` s (open loop: each request's latency counts from
the moment it was due, so a stall is not hidden), while ``--churn`` calls/s are answered
and as many join, so the queue's waiting list changes all along (as in a real centre).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import ProcessorProcess, unique_settings
from stream.config import Settings
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.timefmt import rfc3339
from stream.tools.broker import EmbeddedBroker

QUEUE = "ivr"


def event(kind: str, ts_ms: int, event_id: str, **fields: Any) -> tuple[bytes, bytes]:
    """(key, value) of one contract event."""
    body = {"event_id": event_id, "type": kind, "ts": rfc3339(ts_ms), **fields}
    key = fields.get("queue_id") or fields["agent_id"]
    return str(key).encode(), json.dumps(body).encode()


def queued(call: str, ts_ms: int, rng: random.Random) -> tuple[bytes, bytes]:
    priority = rng.choice([None, None, -2, -1, 0, 1, 2, 3])
    extra = {} if priority is None else {"priority": priority}
    return event("call.queued", ts_ms, f"{call}-q", call_id=call, queue_id=QUEUE, **extra)


def warm_queue(waiting: int, now_ms: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Agents staffed, a handled call (so AHT is known), then ``waiting`` calls waiting."""
    events = [event("agent.state", now_ms - 900_000, f"a{i}-s", agent_id=f"a{i}",
                    state="busy" if i else "available", queues=[QUEUE]) for i in range(20)]
    events += [event("call.queued", now_ms - 800_000, "h-q", call_id="h", queue_id=QUEUE),
               event("call.answered", now_ms - 790_000, "h-a", call_id="h", queue_id=QUEUE,
                     agent_id="a1"),
               event("call.ended", now_ms - 610_000, "h-e", call_id="h", queue_id=QUEUE)]
    events += [queued(f"w{i}", now_ms - 600_000 + i * 500_000 // waiting, rng)
               for i in range(waiting)]
    return events


async def send(settings: Settings, producer: Any, events: list[tuple[bytes, bytes]]) -> None:
    await asyncio.gather(*[await producer.send(settings.topic_events, value, key=key)
                           for key, value in events])


async def churn(settings: Settings, producer: Any, waiting: list[str], per_second: int,
                seconds: float, rng: random.Random) -> None:
    """Each 100 ms, answer the longest-waiting calls and queue as many new ones."""
    joined = 0
    deadline = time.monotonic() + seconds
    while per_second and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now_ms = int(time.time() * 1000)
        events = []
        for _ in range(per_second // 10):
            answered = waiting.pop(0)
            events.append(event("call.answered", now_ms, f"{answered}-a", call_id=answered,
                                queue_id=QUEUE, agent_id="a1"))
            joined += 1
            call = f"n{joined}"
            events.append(queued(call, now_ms, rng))
            waiting.append(call)
        await send(settings, producer, events)


async def ask(session: aiohttp.ClientSession, url: str, due: float, timings: Timings) -> None:
    sent = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        timings.statuses[response.status] += 1
    timings.latencies.append((time.perf_counter() - due) * 1000)
    timings.late.append((sent - due) * 1000)


@dataclass
class Timings:
    """Per request: from due time to answer, and how late this client was sending it."""

    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


async def load(base_url: str, waiting: list[str], rate: int, seconds: float,
               rng: random.Random) -> tuple[Timings, float]:
    """Requests at ``rate`` per second, each for a call waiting when it is sent."""
    timings = Timings()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            if (ahead := due - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            url = f"{base_url}/api/calls/{rng.choice(waiting)}"
            tasks.append(asyncio.create_task(ask(session, url, due, timings)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return timings, len(timings.latencies) / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def in_place(base_url: str, waiting_calls: int, last: str) -> Any:
    """The API's answer for the last call queued, once every call waits and it is found."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/queues/{QUEUE}") as response:
            if response.status != 200 or (await response.json())["waiting"] != waiting_calls:
                return None
        async with session.get(f"{base_url}/api/calls/{last}") as response:
            return await response.json() if response.status == 200 else None


async def main(waiting_calls: int, rate: int, seconds: float, churn_rate: int,
               redis_url: str) -> None:
    rng = random.Random(11)
    with EmbeddedBroker() as broker:
        settings = unique_settings(broker.bootstrap, redis_url=redis_url)
        await ensure_topics(settings, all_topics(settings))
        processor = await ProcessorProcess(settings).start()
        producer = make_producer(settings, linger_ms=5)
        await producer.start()
        try:
            await send(settings, producer, warm_queue(waiting_calls, int(time.time() * 1000), rng))
            waiting = [f"w{i}" for i in range(waiting_calls)]
            base = f"http://127.0.0.1:{settings.http_port}"
            while (sample := await in_place(base, waiting_calls, waiting[-1])) is None:
                await asyncio.sleep(0.2)
            print(f"{waiting_calls} calls waiting in one queue; one answer: {sample}")
            churning = asyncio.create_task(churn(settings, producer, waiting, churn_rate,
                                                 seconds, rng))
            cpu_before = cpu_seconds(processor.process.pid)
            timings, achieved = await load(base, waiting, rate, seconds, rng)
            cpu = cpu_seconds(processor.process.pid) - cpu_before
            await churning
        finally:
            await producer.stop()
            processor.terminate()
    cuts = statistics.quantiles(timings.latencies, n=100)
    late = statistics.quantiles(timings.late, n=100)
    print(f"{len(timings.latencies)} requests at {achieved:.0f}/s over {seconds:.0f} s "
          f"(asked {rate}/s), {churn_rate} calls/s answered and as many joining; "
          f"statuses {dict(timings.statuses)}")
    print(f"latency from due time: p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms, "
          f"max {max(timings.latencies):.2f} ms")
    print(f"of which this client was late sending: p50 {late[49]:.2f} ms, "
          f"p99 {late[98]:.2f} ms")
    print(f"processor CPU meanwhile: {100 * cpu / seconds:.0f}% of a core, "
          f"{1000 * cpu / len(timings.latencies):.2f} ms per request (churn included)")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--churn", type=int, default=10,
                        help="calls/s answered and as many joining during the load")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    asyncio.run(main(args.waiting, args.rate, args.seconds, args.churn, args.redis_url))
