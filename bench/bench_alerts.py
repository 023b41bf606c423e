"""Time one alert evaluation of every queue against the local Redis (run by hand).

    CALLSTREAM_TEST_REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/bench_alerts.py [--queues 2000] [--abandon-every 10]

Each queue gets 20 calls, one in ``--abandon-every`` abandoned; then `AlertWatch.evaluate`
(what each instance runs every second) and, for scale, the snapshot refresher's read of
the same queues (run twice a second) are timed. The keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness.alerts import SETTINGS, START, calls, open_store
from harness.centre import Centre
from stream.act.alerts import AlertWatch
from stream.config import Policy


async def main(queue_count: int, abandon_every: int) -> None:
    store = await open_store(f"bench{uuid.uuid4().hex[:6]}")
    try:
        queues = [f"q{i}" for i in range(queue_count)]
        events = [e for q in queues for e in calls(q, 3600, 15, 20, abandon_every)]
        centre = Centre(store, Policy())
        for start in range(0, len(events), 10_000):
            await centre.apply(*events[start:start + 10_000])
        watch = AlertWatch(SETTINGS, store, Policy(), None)
        now = START + 4000 * 1000
        evaluate, snapshot = [], []
        for _ in range(7):
            began = time.perf_counter()
            await watch.evaluate(queues, now, now)
            evaluate.append(time.perf_counter() - began)
            began = time.perf_counter()
            await store.read_queues(queues, now)
            snapshot.append(time.perf_counter() - began)
        print(f"{queue_count} queues: alert evaluation {statistics.median(evaluate) * 1000:.0f} ms"
              f" (median of 7), snapshot read {statistics.median(snapshot) * 1000:.0f} ms")
    finally:
        keys = [k async for k in store.client.scan_iter(match=f"{store.keys.root}:*",
                                                        count=5000)]
        for start in range(0, len(keys), 1000):
            await store.client.delete(*keys[start:start + 1000])
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=2000)
    parser.add_argument("--abandon-every", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.abandon_every))
