"""What decides scaling out: CPU per event on each Redis Cluster node and in each processor,
and how queue, caller and agent slots spread over the nodes (run by hand, not in CI).

    .venv/bin/python bench/bench_capacity.py [--calls 50000 --queues 50 --agents 500]
        [--processors 1,2] [--hot-queue] [--single] [--many-queues 500]
        [--utilisation 0.5]

Starts a 3-primary Redis Cluster of its own (AOF ``everysec``, as production runs) and an
embedded broker; produces the events of ``bench_pipeline.py`` (every call with a caller
of its own; with ``--agents``, three agent.state events per answered call, keyed by
agent) to a topic of 8 partitions; then, for each processor count, starts that many
``callstream run`` child processes at once in one consumer group, every feature on (MQTT
when Mosquitto answers on 127.0.0.1:1883), on a fresh key root, and reports as the round
ends:

- events/s between 10% and 90% of the events done (the pipeline full at both ends; on
  2 cores, two processors share the cores with Redis and the broker: not a speed-up, the
  CPU per event is the figure), and the events each processor consumed;
- Redis CPU per event on each node (its main thread, the one that caps a node; the whole
  process with its AOF threads beside it) and in all; processor CPU per event, per
  processor and in all; each also without the fixed load's share;
- the fixed load once the topic is drained (refresher, alerts, callback timer, janitor,
  MQTT: CPU ms per second), in two halves to show it is steady;
- per node: its slots, the queue, caller and agents tags it holds (with their keys and
  memory, and the keys under no tag), and the share of the call events whose queue it holds.

``--single`` also runs one processor on the same topic against a single Redis (AOF
``everysec``, no Cluster): on one Redis a batch's callers go 100 to a script call in one
pipeline, on a Cluster one script call per caller's slot.

``--hot-queue`` also runs every call through one queue, chosen on another node than the
agents' slot, so that the three nodes hold: the queue and a third of the callers; the
agents and a third of the callers; a third of the callers only. The differences give the
Redis cost of the queue's slot per call event and of the agents' slot per agent event, so
each slot's ceiling (one slot is one node's one thread); the processor's CPU per event
gives the ceiling of the queue's one partition (a partition is one processor's at a time).
Those slot costs then predict each node of the spread round, as a check.

``--many-queues N`` also measures the fixed load of one processor with N queues (4 calls
each, drained): the refresher, alerts and MQTT work per queue, every second, on every
processor.

At the end, from the first processor count's spread round (and the single Redis's): the
capacities (events/s per processor core and per Redis node, at 100% and at
``--utilisation``), the fixed load per queue (with ``--hot-queue``) and a sizing table for
1k, 10k and 100k events/s. ``docs/capacity.md`` is written from this output.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import (
    POLICY_TOML,
    _answers,
    consumed,
    events_for,
    process_cpu_seconds,
    produce_all,
)

from harness import ProcessorProcess, unique_settings
from harness.redis_servers import redis_cluster, start_redis
from stream.ingest.kafka import all_topics, ensure_topics
from stream.state.keys import KeySpace
from stream.tools.broker import EmbeddedBroker, free_port

PARTITIONS = 8  # ensure_topics' default, as deploy/ creates call-events
IDLE_SECONDS = 10.0
WINDOW = (0.1, 0.9)  # timed from 10% of the events done to 90%
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
KINDS = ("queue", "caller", "agents", "untagged")
TAG = re.compile(rb"\{([^}]*)\}")
CALLER = re.compile(rb'"caller": "\+?([0-9]+)"')
MIB = 1024 * 1024


def node_cpu(ports: list[int]) -> list[tuple[float, float]]:
    """CPU seconds each node has used so far: (main thread, whole process)."""
    cpu = []
    for port in ports:
        info = redis.Redis(port=port).info("cpu")
        cpu.append((float(info["used_cpu_sys_main_thread"])
                    + float(info["used_cpu_user_main_thread"]),
                    float(info["used_cpu_sys"]) + float(info["used_cpu_user"])))
    return cpu


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def slot_owner(ports: list[int]) -> list[int]:
    """Slot -> index in ``ports`` of the primary that serves it."""
    owner = [-1] * 16384
    reply = redis.Redis(port=ports[0]).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    for start, end, primary, *_ in reply:
        for slot in range(int(start), int(end) + 1):
            owner[slot] = ports.index(int(primary[1]))
    return owner


def slot_ranges(owner: list[int], node: int) -> str:
    ranges, start = [], None
    for slot in range(16385):
        inside = slot < 16384 and owner[slot] == node
        if inside and start is None:
            start = slot
        elif not inside and start is not None:
            ranges.append(f"{start}-{slot - 1}")
            start = None
    return ",".join(ranges)


def keyslot(tag: str) -> int:
    """The Cluster slot of a hash tag's keys."""
    return int(key_slot(f"{{{tag}}}".encode()))


def spread(ports: list[int], root: str) -> list[dict[str, Any]]:
    """Per node: the tags of each kind it holds under ``root``, their keys and memory."""
    out = []
    for port in ports:
        client = redis.Redis(port=port)
        tags: dict[str, set[bytes]] = {"queue": set(), "caller": set(), "agents": set()}
        keys, memory = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
        found = []
        for key in client.scan_iter(match=f"{root}:*", count=10_000):
            match = TAG.search(key)
            tag = match.group(1) if match else b""
            kind = ("queue" if tag.startswith(b"q:") else "caller" if tag.startswith(b"c:")
                    else "agents" if tag == b"agents" else "untagged")
            keys[kind] += 1
            found.append((kind, key))
            if kind != "untagged":
                tags[kind].add(tag)
        pipe = client.pipeline(transaction=False)
        for _, key in found:
            pipe.memory_usage(key)
        for (kind, _), used in zip(found, pipe.execute(), strict=True):
            memory[kind] += used or 0
        out.append({"tags": {kind: len(held) for kind, held in tags.items()}, "keys": keys,
                    "memory": memory})
    return out


async def done_count(client: aioredis.Redis | aioredis.RedisCluster, root: str,
                     topic: str) -> int:
    """Messages recorded as done (the checkpoint: last offset + 1 per partition)."""
    stored = await client.hgetall(KeySpace(root).checkpoint(topic))
    return sum(int(offset) + 1 for offset in stored.values())


async def run_round(bootstrap: str, ports: list[int], topic: str, total: int,
                    processors: int, policy: Path, broker_pid: int) -> dict[str, Any]:
    """``processors`` processors in one group on the topic, from its start to its end, on
    the Redis Cluster of ``ports`` (or the single Redis, one port)."""
    mqtt = "mqtt://127.0.0.1:1883" if _answers("127.0.0.1", 1883) else ""
    base = unique_settings(bootstrap, redis_url=f"redis://127.0.0.1:{ports[0]}/0",
                           policy_file=str(policy), kafka_start="earliest",
                           topic_events=topic, mqtt_url=mqtt)
    settings = [base.model_copy(update={"http_port": free_port(), "instance": f"bench-{i}"})
                for i in range(processors)]
    client: aioredis.Redis | aioredis.RedisCluster = (
        aioredis.RedisCluster(host="127.0.0.1", port=ports[0]) if len(ports) > 1
        else aioredis.Redis(port=ports[0]))
    root = base.redis_prefix
    started = await asyncio.gather(*(ProcessorProcess(s).start() for s in settings))
    pids = [p.process.pid for p in started]

    def cpu() -> tuple[float, list[tuple[float, float]], list[float]]:
        return (time.perf_counter(), node_cpu(ports),
                [process_cpu_seconds(pid) for pid in pids])

    def ours() -> tuple[float, float]:
        """The machine's busy CPU seconds, and those of the broker and of this process."""
        return machine_busy(), process_cpu_seconds(broker_pid) + process_cpu_seconds(
            os.getpid())

    async def until(at_least: int) -> int:
        moved, still = -1, time.monotonic()
        while (done := await done_count(client, root, topic)) < at_least:
            if done != moved:
                moved, still = done, time.monotonic()
                print(f"\r  done {done:,}/{total:,}", end="", file=sys.stderr)
            elif time.monotonic() - still > 60:
                exits = [p.process.poll() for p in started]
                raise RuntimeError(f"no progress for 60 s at {done}/{total}; exits {exits}")
            await asyncio.sleep(0.005)
        return done

    # Timed between two moments with the pipeline full (10% and 90% done): the work in
    # flight at either end is about the same, so the window holds its events' work.
    done_from = await until(int(total * WINDOW[0]))
    first, machine_first = cpu(), ours()
    done_to = await until(int(total * WINDOW[1]))
    last, machine_last = cpu(), ours()
    await until(total)
    print(file=sys.stderr)
    # The fixed load with nothing to consume (refresher, alerts, callback timer, janitor,
    # MQTT), in two halves to show it is steady.
    await asyncio.sleep(1)
    idle = [cpu()]
    for _ in range(2):
        await asyncio.sleep(IDLE_SECONDS / 2)
        idle.append(cpu())
    per_processor = [await consumed(p.url) for p in started]
    for processor in started:
        processor.terminate()
    await client.aclose()
    events, seconds = max(1, done_to - done_from), last[0] - first[0]
    halves = [([(b[0] - a[0]) * 1e3 / (t1 - t0) for a, b in zip(na, nb, strict=True)],
               [(b - a) * 1e3 / (t1 - t0) for a, b in zip(oa, ob, strict=True)])
              for (t0, na, oa), (t1, nb, ob) in pairwise(idle)]
    fixed_node = [sum(h[0][n] for h in halves) / len(halves) for n in range(len(ports))]
    fixed_own = [sum(h[1][n] for h in halves) / len(halves) for n in range(processors)]
    node_us = [(b[0] - a[0]) * 1e6 / events for a, b in zip(first[1], last[1], strict=True)]
    own_us = [(b - a) * 1e6 / events for a, b in zip(first[2], last[2], strict=True)]
    # Other work on the machine in the window, in cores: what was busy less what ran here.
    here = (sum(b[1] - a[1] for a, b in zip(first[1], last[1], strict=True))
            + sum(b - a for a, b in zip(first[2], last[2], strict=True))
            + machine_last[1] - machine_first[1])
    others = (machine_last[0] - machine_first[0] - here) / seconds
    return {"processors": processors, "events": events, "seconds": seconds,
            "others": others,
            "window": (done_from, done_to), "rate": events / seconds,
            "consumed": per_processor, "node_us": node_us,
            "node_process_us": [(b[1] - a[1]) * 1e6 / events
                                for a, b in zip(first[1], last[1], strict=True)],
            "own_us": own_us, "halves": halves, "fixed_node_ms": fixed_node,
            "fixed_own_ms": fixed_own,
            # per event without the fixed load's share of the window
            "node_marginal_us": [us - ms * 1e3 * seconds / events
                                 for us, ms in zip(node_us, fixed_node, strict=True)],
            "own_marginal_us": [us - ms * 1e3 * seconds / events
                                for us, ms in zip(own_us, fixed_own, strict=True)],
            "spread": spread(ports, root)}


def _sum(values: list[float], digits: int = 2) -> str:
    joined = " + ".join(f"{v:.{digits}f}" for v in values)
    return f"{joined} = {sum(values):.{digits}f}" if len(values) > 1 else joined


def load_facts(events: list[tuple[bytes, bytes]], owner: list[int]) -> dict[str, Any]:
    """The load's queues, callers and events by kind, and per Cluster node the share of
    the call events (not agent.state) whose queue it holds."""
    counts = [0, 0, 0]
    queues, callers = set(), set()
    agent_events = 0
    for key, value in events:
        if b'"agent.state"' in value:
            agent_events += 1
            continue
        queues.add(key)
        counts[owner[keyslot(f"q:{key.decode()}")]] += 1
        if (caller := CALLER.search(value)) is not None:
            callers.add(caller.group(1))
    return {"shares": [c / sum(counts) for c in counts], "queues": len(queues),
            "callers": len(callers), "events": len(events), "agent_events": agent_events,
            "call_events": len(events) - agent_events}


def report(title: str, result: dict[str, Any], owner: list[int] | None,
           load: dict[str, Any]) -> None:
    nodes, own = result["node_us"], result["own_us"]
    where = "on the 3 nodes" if owner else "on the single Redis"
    print(f"\n{title}: {result['processors']} processor(s); {result['events']:,} events "
          f"timed (done {result['window'][0]:,} to {result['window'][1]:,}) in "
          f"{result['seconds']:.1f} s, {result['rate']:,.0f} events/s (everything shares 2 "
          f"cores: not a capacity); other work on the machine meanwhile "
          f"{result['others']:.2f} cores"
          + (" (over 0.25: this round's CPU per event is inflated)"
             if result["others"] > 0.25 else ""))
    if result["events"] < 50_000:
        print(f"  only {result['events']:,} events timed: too few for the CPU per event "
              f"(--calls 20000 or more)")
    print("  events consumed per processor (callstream_events_total; a rebalance's "
          "re-reads count twice): " + ", ".join(f"{n:,.0f}" for n in result["consumed"]))
    print(f"  Redis main thread CPU per event: {_sum(nodes)} µs {where} (whole "
          f"processes {_sum(result['node_process_us'])} µs); without the fixed load "
          f"{_sum(result['node_marginal_us'])} µs"
          + (f"; busiest node {max(nodes):.2f} µs, {max(nodes) / (sum(nodes) / 3):.2f} x "
             f"the even share" if owner else ""))
    print(f"  processor CPU per event: {_sum(own)} µs; without the fixed load "
          f"{_sum(result['own_marginal_us'])} µs")
    halves = result["halves"]
    print(f"  fixed load, drained ({IDLE_SECONDS:.0f} s in two halves): Redis main threads "
          f"{_sum(result['fixed_node_ms'], 1)} ms/s (halves "
          f"{', '.join(_sum(h[0], 1) for h in halves)}); processors "
          f"{_sum(result['fixed_own_ms'], 1)} ms/s (halves "
          f"{', '.join(_sum(h[1], 1) for h in halves)})")
    for n, node in enumerate(result["spread"]):
        tags, keys, memory = node["tags"], node["keys"], node["memory"]
        name = f"node {n + 1} (slots {slot_ranges(owner, n)})" if owner else "the Redis"
        print(f"  {name}: queues {tags['queue']:,} ({keys['queue']:,} keys, "
              f"{memory['queue'] / MIB:.1f} MiB), callers {tags['caller']:,} "
              f"({keys['caller']:,} keys, {memory['caller'] / MIB:.1f} MiB), agents "
              f"{tags['agents']} ({keys['agents']} keys, {memory['agents'] / MIB:.1f} MiB), "
              f"untagged keys {keys['untagged']}"
              + (f"; {load['shares'][n]:.1%} of the call events" if owner else ""))
    held = {kind: sum(node["tags"][kind] for node in result["spread"])
            for kind in ("queue", "caller", "agents")}
    memory = {kind: sum(node["memory"][kind] for node in result["spread"]) for kind in KINDS}
    print(f"  tags held in all: queues {held['queue']:,} of {load['queues']:,}, callers "
          f"{held['caller']:,} of {load['callers']:,}, agents {held['agents']} of 1; "
          f"memory {memory['queue'] / load['call_events'] * 1000 / 1024:.0f} KiB per "
          f"thousand call events in the queues' slots, "
          f"{memory['caller'] / max(1, held['caller']):.0f} bytes per caller, "
          f"{memory['agents'] / max(1, load['agent_events']):.0f} bytes per agent.state "
          f"event in the agents' slot")


def hot_figures(result: dict[str, Any], load: dict[str, Any], hot: int, agents: int,
                utilisation: float) -> dict[str, float]:
    """The slots' costs from the differences between the three nodes of the hot run (per
    event without the fixed load)."""
    nodes = result["node_marginal_us"]
    rest = ({0, 1, 2} - {hot, agents}).pop()
    events, n_call, n_agent = load["events"], load["call_events"], load["agent_events"]
    queue_us = (nodes[hot] - nodes[rest]) * events / n_call
    agents_us = (nodes[agents] - nodes[rest]) * events / n_agent if n_agent else 0.0
    callers_us = nodes[rest] * 3 * events / n_call
    own = sum(result["own_marginal_us"])
    print(f"  without the fixed load: the queue's node is node {hot + 1}, the agents' node "
          f"{agents + 1}, node {rest + 1} holds callers only; {n_call:,} call events, "
          f"{n_agent:,} agent events")
    print(f"  the queue's slot: ({nodes[hot]:.2f} - {nodes[rest]:.2f}) µs per event = "
          f"{queue_us:.2f} µs per call event: one queue tops out at "
          f"{1e6 / queue_us:,.0f} call events/s on a node's thread of its own at 100% "
          f"({1e6 * utilisation / queue_us:,.0f} at {utilisation:.0%})")
    if n_agent:
        print(f"  the agents' slot: ({nodes[agents]:.2f} - {nodes[rest]:.2f}) µs per event = "
              f"{agents_us:.2f} µs per agent.state event: all agents together top out at "
              f"{1e6 / agents_us:,.0f} agent events/s at 100% "
              f"({1e6 * utilisation / agents_us:,.0f} at {utilisation:.0%})")
    print(f"  callers (journeys, offers; spread by hash): {callers_us:.2f} µs per call event "
          f"over all nodes (node {rest + 1}'s {nodes[rest]:.2f} µs per event, times 3, per "
          f"call event)")
    print(f"  the queue's one partition is one processor's: {own:.2f} µs per event, so "
          f"{1e6 / own:,.0f} events/s at 100% of a core ({1e6 * utilisation / own:,.0f} at "
          f"{utilisation:.0%})")
    return {"queue": queue_us, "agents": agents_us, "callers": callers_us}


def check(costs: dict[str, float], result: dict[str, Any], load: dict[str, Any],
          agents_node: int) -> None:
    """Each node of a spread round as the hot run's slot costs predict it."""
    call, agent = load["call_events"] / load["events"], load["agent_events"] / load["events"]
    callers = [node["tags"]["caller"] for node in result["spread"]]
    predicted = [call * (load["shares"][n] * costs["queue"]
                         + callers[n] / sum(callers) * costs["callers"])
                 + (agent * costs["agents"] if n == agents_node else 0.0)
                 for n in range(3)]
    ratios = [m / p for m, p in zip(result["node_marginal_us"], predicted, strict=True)]
    print(f"\ncheck: the spread round with {result['processors']} processor(s), per node "
          f"without the fixed load, predicted from the hot run's slot costs (queues by "
          f"their call events, callers by their tags, the agents' slot): "
          f"{_sum(predicted)} µs; measured {_sum(result['node_marginal_us'])} µs (measured / "
          f"predicted: {', '.join(f'{r:.2f}' for r in ratios)}; in all "
          f"{sum(result['node_marginal_us']) / sum(predicted):.2f})")


def _figures(r: dict[str, Any]) -> tuple[float, float, float, float]:
    """Per event without the fixed load (all processors, all nodes: µs), and the fixed
    load per processor (of its core, of Redis threads: shares of one)."""
    return (sum(r["own_marginal_us"]), sum(r["node_marginal_us"]),
            sum(r["fixed_own_ms"]) / r["processors"] / 1e3,
            sum(r["fixed_node_ms"]) / r["processors"] / 1e3)


def sizing(cluster: dict[str, Any], single: dict[str, Any] | None,
           hot: dict[str, Any] | None, many: tuple[int, dict[str, Any]] | None,
           queues: int, agents: int, u: float) -> None:
    print(f"\ncapacities ({queues} queues, {agents} agents; per event without the fixed "
          f"load, which is given per processor):")
    setups = [("Cluster", cluster)] + ([("single Redis", single)] if single else [])
    for name, r in setups:
        own, red, fixed_own, fixed_red = _figures(r)
        print(f"  {name}, {r['processors']} processor: processor {own:.2f} µs per event, "
              f"fixed {fixed_own * 1e3:.0f} ms/s; Redis {red:.2f} µs per event (all "
              f"nodes), fixed {fixed_red * 1e3:.0f} ms/s per processor")
        print(f"    one processor core: 1e6 / {own:.2f} = {1e6 / own:,.0f} events/s at 100%; "
              f"at {u:.0%} less the fixed load: ({u:.2f} - {fixed_own:.3f}) x 1e6 / "
              f"{own:.2f} = {(u - fixed_own) * 1e6 / own:,.0f} events/s")
        if name == "Cluster":
            print(f"    one Redis node's thread, load spread evenly: 1e6 / {red:.2f} = "
                  f"{1e6 / red:,.0f} events/s at 100%, {u * 1e6 / red:,.0f} at {u:.0%} (the "
                  f"fixed load spread over the nodes besides)")
        else:
            print(f"    the single Redis's thread: 1e6 / {red:.2f} = {1e6 / red:,.0f} events/s "
                  f"at 100%; at {u:.0%} less 2 processors' fixed load: ({u:.2f} - 2 x "
                  f"{fixed_red:.3f}) x 1e6 / {red:.2f} = "
                  f"{(u - 2 * fixed_red) * 1e6 / red:,.0f} events/s")
    if many is not None:
        n, result = many
        per_queue_own = (result["fixed_own_ms"][0] - cluster["fixed_own_ms"][0]) / (n - queues)
        per_queue_redis = (sum(result["fixed_node_ms"])
                           - sum(cluster["fixed_node_ms"]) / cluster["processors"]) / (n - queues)
        print(f"  the fixed load grows with the queues: ({n} queues - {queues}) / "
              f"{n - queues} = {per_queue_own:.2f} ms/s of a processor core and "
              f"{per_queue_redis:.2f} ms/s of Redis per queue and processor")
    if hot is not None and queues > 1:
        per_queue_own = (cluster["fixed_own_ms"][0] - hot["fixed_own_ms"][0]) / (queues - 1)
        per_queue_redis = (sum(cluster["fixed_node_ms"]) / cluster["processors"]
                           - sum(hot["fixed_node_ms"])) / (queues - 1)
        print(f"  the fixed load grows with the queues: (spread - hot queue) / {queues - 1} = "
              f"{per_queue_own:.2f} ms/s of a processor core and {per_queue_redis:.2f} ms/s "
              f"of Redis per queue and processor; at 1,000 queues "
              f"{per_queue_own * 1000:,.0f} ms/s and {per_queue_redis * 1000:,.0f} ms/s")
    table(setups, queues, agents, u)
    if many is not None:
        n, result = many
        own = sum(cluster["own_marginal_us"])
        fixed_own, fixed_red = (sum(result["fixed_own_ms"]) / 1e3,
                                sum(result["fixed_node_ms"]) / 1e3)
        print(f"  with {n:,} queues (the many-queues round, Cluster): the fixed load takes "
              f"{fixed_own:.0%} of each processor's core and {fixed_red * 1e3:.0f} ms/s of "
              f"Redis threads per processor; a processor core at {u:.0%} then takes "
              + (f"({u:.2f} - {fixed_own:.3f}) x 1e6 / {own:.2f} = "
                 f"{(u - fixed_own) * 1e6 / own:,.0f} events/s" if fixed_own < u
                 else "no events at all"))


def table(setups: list[tuple[str, dict[str, Any]]], queues: int, agents: int, u: float
          ) -> None:
    """The sizing table, a single Redis where it holds."""
    print(f"  sizing at {u:.0%} for {queues} queues and {agents} agents (processors: one "
          f"core each, at least 2 so that one can fail; Redis: a single Redis where one "
          f"thread at {u:.0%} holds it, else a Cluster of at least 3 primaries at {u:.0%} "
          f"each, load spread evenly; partitions: the first of 12, 24, 48, 96 that is at "
          f"least 4 x the processors):")
    print("  | events/s | Redis | processors | processor cores busy | Redis threads busy "
          "| partitions |")
    for rate in (1_000, 10_000, 100_000):
        for name, r in reversed(setups):  # a single Redis first, where it holds
            own, red, fixed_own, fixed_red = _figures(r)
            if fixed_own >= u:
                print(f"  | {rate:,} | {name}: the fixed load alone takes {fixed_own:.0%} of "
                      f"a processor's core, over {u:.0%} |")
                break
            processors = max(2, math.ceil(rate * own / 1e6 / (u - fixed_own)))
            cores = rate * own / 1e6 + processors * fixed_own
            threads = rate * red / 1e6 + processors * fixed_red
            if name == "single Redis" and threads <= u:
                redis_text = "1 (single)"
            elif name == "Cluster":
                redis_text = f"{max(3, math.ceil(threads / u))} primaries"
            else:
                continue
            partitions = next((p for p in (12, 24, 48, 96) if p >= 4 * processors), 192)
            print(f"  | {rate:,} | {redis_text} | {processors} | {cores:.2f} | {threads:.2f} "
                  f"| {partitions} |")
            break


async def main_async(args: argparse.Namespace) -> None:
    rounds = [int(n) for n in args.processors.split(",")]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder, \
            redis_cluster(3, *AOF) as ports:
        policy = Path(folder) / "policy.toml"
        policy.write_text(POLICY_TOML)
        owner = slot_owner(ports)
        broker_pid = broker._process.pid if broker._process else os.getpid()
        agents_node = owner[keyslot("agents")]
        print(f"Redis Cluster of 3 primaries (AOF everysec) on ports {ports}; broker "
              f"{broker.bootstrap}; {PARTITIONS} partitions; MQTT "
              f"{'on' if _answers('127.0.0.1', 1883) else 'off'}; the agents' slot "
              f"{keyslot('agents')} is on node {agents_node + 1}")
        described = f"{args.calls:,} calls, {args.agents or 1} agents"
        events = events_for(args.calls, args.queues, agents=args.agents)
        settings = unique_settings(broker.bootstrap)
        await ensure_topics(settings, all_topics(settings), partitions=PARTITIONS)
        await produce_all(settings, events)
        spread_load = load_facts(events, owner)
        spreads = []
        for processors in rounds:
            result = await run_round(broker.bootstrap, ports, settings.topic_events,
                                     len(events), processors, policy,
                                     broker_pid)
            report(f"spread ({len(events):,} events, {described}, {args.queues} queues)",
                   result, owner, spread_load)
            spreads.append(result)
        single = None
        if args.single:
            port = free_port()
            (Path(folder) / "single").mkdir()
            server = start_redis(port, str(Path(folder) / "single"), *AOF)
            try:
                single = await run_round(broker.bootstrap, [port], settings.topic_events,
                                         len(events), 1, policy, broker_pid)
            finally:
                server.terminate()
                server.wait()
            report(f"single Redis, no Cluster ({len(events):,} events, {described}, "
                   f"{args.queues} queues)", single, None, spread_load)
        hot_round = None
        if args.hot_queue:
            # The hot queue on another node than the agents: their costs come apart.
            name = next(f"queue{n}" for n in range(1000)
                        if owner[keyslot(f"q:queue{n}")] != agents_node)
            hot = [(name.encode() if key == b"queue0" else key,
                    value.replace(b'"queue0"', f'"{name}"'.encode()))
                   for key, value in events_for(args.calls, 1, seed=3, agents=args.agents)]
            settings = unique_settings(broker.bootstrap)
            await ensure_topics(settings, all_topics(settings), partitions=PARTITIONS)
            await produce_all(settings, hot)
            hot_load = load_facts(hot, owner)
            hot_round = await run_round(broker.bootstrap, ports, settings.topic_events,
                                        len(hot), 1, policy, broker_pid)
            report(f"hot queue ({len(hot):,} events, {described}, 1 queue: {name}, slot "
                   f"{keyslot('q:' + name)})", hot_round, owner, hot_load)
            costs = hot_figures(hot_round, hot_load, owner[keyslot("q:" + name)],
                                agents_node, args.utilisation)
            for result in spreads:
                check(costs, result, spread_load, agents_node)
        many = None
        if args.many_queues:
            # The fixed load of many queues: a few calls in each, then the drained processor.
            n = args.many_queues
            calls = events_for(4 * n, n, seed=5, agents=args.agents)
            settings = unique_settings(broker.bootstrap)
            await ensure_topics(settings, all_topics(settings), partitions=PARTITIONS)
            await produce_all(settings, calls)
            result = await run_round(broker.bootstrap, ports, settings.topic_events,
                                     len(calls), 1, policy, broker_pid)
            print(f"\nmany queues ({len(calls):,} events, {4 * n:,} calls, {n:,} queues, "
                  f"{args.agents or 1} agents), 1 processor, drained: fixed load Redis main "
                  f"threads {_sum(result['fixed_node_ms'], 1)} ms/s (halves "
                  f"{', '.join(_sum(h[0], 1) for h in result['halves'])}); processor "
                  f"{_sum(result['fixed_own_ms'], 1)} ms/s (halves "
                  f"{', '.join(_sum(h[1], 1) for h in result['halves'])}); other work on the "
                  f"machine {result['others']:.2f} cores")
            many = (n, result)
        sizing(spreads[0], single, hot_round, many, args.queues, args.agents,
               args.utilisation)


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
    parser.add_argument("--single", action="store_true",
                        help="also run one processor against a single Redis, no Cluster")
    parser.add_argument("--many-queues", type=int, default=0, metavar="N",
                        help="also measure the fixed load of N queues (4 calls each)")
    parser.add_argument("--utilisation", type=float, default=0.5,
                        help="the share of a core or a node's thread to plan for "
                             "(default: 0.5)")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each round as it ends
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
