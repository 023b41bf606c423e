"""Redis memory that caller journeys take per distinct caller (run by hand, not in CI).

    .venv/bin/python bench/bench_journeys_memory.py [--callers 1000000] [--queues 50]

Starts a redis-server of its own (no persistence) and takes a day of caller facts into
the journeys through the production scripts (apply_journey.lua, journey_queue.lua):
each distinct caller calls once; 70% are answered, 30% abandon after 30 s (a miss), and
half of those call again an hour later and are answered (a repeat call, a recovery).
The figure is Redis's used_memory after, minus before, over the callers: the callers'
journeys, and the queues' missed lists and resolutions (which hold caller numbers).
Legs and window buckets are the core's, not counted here.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stream.state.journeys import JourneyOp, JourneyStore
from stream.state.keys import KeySpace
from stream.state.store import StateStore
from stream.tools.broker import free_port, wait_for_port

HOUR_MS = 3600_000


def ops_for(callers: int, queues: int, start_ms: int, seed: int = 1) -> list[JourneyOp]:
    rng = random.Random(seed)
    ops: list[JourneyOp] = []
    for i in range(callers):
        caller = f"4915{rng.randrange(10**9):09d}{i % 10}"
        queue = f"queue{i % queues}"
        t = start_ms + i * 80  # a million callers over a day
        ops.append(JourneyOp(caller, "Q", f"E{i}-q", queue, t))
        roll = rng.random()
        if roll < 0.7:
            ops.append(JourneyOp(caller, "A", f"E{i}-a", queue, t + 20_000))
            continue
        ops.append(JourneyOp(caller, "B", f"E{i}-b", queue, t + 30_000))
        if roll < 0.85:
            other = f"queue{(i + 1) % queues}"
            ops.append(JourneyOp(caller, "Q", f"E{i}-q2", other, t + HOUR_MS))
            ops.append(JourneyOp(caller, "A", f"E{i}-a2", other, t + HOUR_MS + 10_000))
    return ops


async def measure(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            client = aioredis.Redis(port=port)
            store = StateStore(client, [(300, 10)], KeySpace("cs"), caller_facts=True)
            journeys = JourneyStore(store)
            await store.scripts.load()
            before = int((await client.info("memory"))["used_memory"])
            ops = ops_for(args.callers, args.queues, int(time.time() * 1000) - 25 * HOUR_MS)
            started = time.perf_counter()
            for n in range(0, len(ops), args.batch):
                # The recovering second call comes in a later batch, as it would.
                await journeys.take(ops[n:n + args.batch], int(time.time() * 1000))
                print(f"\r{n + args.batch}/{len(ops)} facts", end="", file=sys.stderr)
            print(file=sys.stderr)
            elapsed = time.perf_counter() - started
            after = int((await client.info("memory"))["used_memory"])
            keys = await client.dbsize()
            print(f"callers: {args.callers:,} ({len(ops):,} facts, {args.queues} queues) "
                  f"in {elapsed:.0f} s")
            print(f"keys: {keys:,}; used_memory grew by {(after - before) / 2**20:,.1f} MiB")
            print(f"bytes per caller: {(after - before) / args.callers:,.0f}")
            sample = [k async for k in client.scan_iter("cs:{c:*", count=1000)][:1]
            if sample:
                usage = await client.memory_usage(sample[0])
                print(f"one journey key ({sample[0].decode()[:12]}...): MEMORY USAGE {usage}")
            await client.aclose()
        finally:
            server.terminate()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20_000)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
