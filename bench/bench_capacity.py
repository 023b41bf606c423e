"""What decides scaling out: CPU per event on each Redis Cluster node and in each processor,
and how queue, caller and agent slots spread over the nodes (run by hand, not in CI).

    .venv/bin/python bench/bench_capacity.py [--calls 50000 --queues 50 --agents 500]
        [--processors 1,2] [--hot-queue]

Starts a 3-primary Redis Cluster of its own (AOF ``everysec``, as production runs) and an
embedded broker; produces the events of ``bench_pipeline.py`` (every call with a caller
of its own); then, for each processor count, runs that many ``callstream run`` child
processes in one consumer group, every feature on, on a fresh key root, and reports:

- events/s from the first batch recorded as done to the last (on 2 cores, two processors
  share the cores: not a speed-up, the CPU per event is the figure);
- Redis CPU per event on each node, and in all; processor CPU per event (all processors);
- the keys each node holds, by kind (queue, caller, agents): how evenly the slots spread.

``--hot-queue`` also runs every call through one queue: the CPU per event of the node that
holds it caps that queue's rate (one queue is one slot, on one node's one thread).
``docs/capacity.md`` is written from its output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import POLICY_TOML, events_for, process_cpu_seconds, produce_all

from harness import ProcessorProcess, unique_settings
from harness.redis_servers import redis_cluster
from stream.config import Settings
from stream.ingest.kafka import all_topics, ensure_topics
from stream.state.keys import KeySpace
from stream.tools.broker import EmbeddedBroker

KINDS = {"queue": "{q:", "caller": "{c:", "agents": "{agents}"}


def node_cpu(ports: list[int]) -> list[float]:
    """CPU seconds each node has used so far."""
    cpu = []
    for port in ports:
        info = redis.Redis(port=port).info("cpu")
        cpu.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return cpu


def keys_by_kind(ports: list[int], root: str) -> list[dict[str, int]]:
    """Per node: how many keys of each kind it holds under ``root``."""
    spread = []
    for port in ports:
        client = redis.Redis(port=port)
        counts = dict.fromkeys(KINDS, 0)
        for key in client.scan_iter(match=f"{root}:*", count=10_000):
            for kind, tag in KINDS.items():
                if tag.encode() in key:
                    counts[kind] += 1
        spread.append(counts)
    return spread


async def done_count(client: aioredis.RedisCluster, settings: Settings) -> int:
    key = KeySpace(settings.redis_prefix).checkpoint(settings.topic_events)
    return sum(int(offset) + 1 for offset in (await client.hgetall(key)).values())


async def run_round(bootstrap: str, ports: list[int], topic: str, total: int,
                    processors: int, policy: Path) -> dict[str, Any]:
    """``processors`` processors in one group on the topic, from its start to its end."""
    base = unique_settings(bootstrap, redis_url=f"redis://127.0.0.1:{ports[0]}/0",
                           policy_file=str(policy), kafka_start="earliest")
    settings = [base.model_copy(update={"topic_events": topic, "http_port": base.http_port + i,
                                        "instance": f"bench-{i}"})
                for i in range(processors)]
    client = aioredis.RedisCluster(host="127.0.0.1", port=ports[0])
    started = [await ProcessorProcess(s).start() for s in settings]
    while not (first_done := await done_count(client, base)):
        await asyncio.sleep(0.005)
    first = time.perf_counter()
    redis_first, own_first = node_cpu(ports), sum(process_cpu_seconds(p.process.pid)
                                                  for p in started)
    while (done := await done_count(client, base)) < total:
        await asyncio.sleep(0.005)
    last = time.perf_counter()
    redis_last, own_last = node_cpu(ports), sum(process_cpu_seconds(p.process.pid)
                                                for p in started)
    for processor in started:
        processor.terminate()
    await client.aclose()
    measured = done - first_done
    return {"processors": processors, "events": measured, "rate": measured / (last - first),
            "node_us": [(b - a) * 1e6 / measured for a, b in zip(redis_first, redis_last,
                                                                 strict=True)],
            "own_us": (own_last - own_first) * 1e6 / measured,
            "spread": keys_by_kind(ports, base.redis_prefix)}


def report(title: str, result: dict[str, Any]) -> None:
    nodes = result["node_us"]
    print(f"\n{title}: {result['processors']} processor(s), {result['events']:,} events, "
          f"{result['rate']:,.0f} events/s")
    print(f"  Redis CPU per event: {' / '.join(f'{us:.1f}' for us in nodes)} µs on the "
          f"3 nodes, {sum(nodes):.1f} µs in all; busiest node {max(nodes):.1f} µs "
          f"(caps the cluster at {1e6 / max(nodes):,.0f} events/s)")
    print(f"  processor CPU per event: {result['own_us']:.1f} µs "
          f"({1e6 / result['own_us']:,.0f} events/s per processor core)")
    for n, counts in enumerate(result["spread"]):
        print(f"  node {n + 1} keys: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


async def main_async(args: argparse.Namespace) -> None:
    rounds = [int(n) for n in args.processors.split(",")]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder, \
            redis_cluster(3, "--appendonly", "yes", "--appendfsync", "everysec") as ports:
        policy = Path(folder) / "policy.toml"
        policy.write_text(POLICY_TOML)
        loads = [("spread", events_for(args.calls, args.queues, agents=args.agents))]
        if args.hot_queue:
            loads.append(("hot queue", events_for(args.calls, 1, seed=3, agents=args.agents)))
        for name, events in loads:
            settings = unique_settings(broker.bootstrap)
            await ensure_topics(settings, all_topics(settings))
            await produce_all(settings, events)
            for processors in rounds if name == "spread" else [1]:
                result = await run_round(broker.bootstrap, ports, settings.topic_events,
                                         len(events), processors, policy)
                report(f"{name} ({args.queues if name == 'spread' else 1} queues, "
                       f"{args.agents or 1} agents)", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--processors", default="1,2",
                        help="processor counts to run, comma-separated (default: 1,2)")
    parser.add_argument("--hot-queue", action="store_true",
                        help="also run every call through one queue")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each round as it ends
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
