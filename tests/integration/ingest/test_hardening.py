"""Careless producers and flaky services (issue 7): nothing stops the pipeline, nothing is
lost or counted twice, and nothing stale is shown as live. Real tansu, real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis

from harness import (
    InProcessProcessor,
    ProcessorProcess,
    _event,
    call_stream,
    crash_and_cut_aof,
    http_json,
    http_status,
    http_text,
    metric_value,
    produce,
    read_topic,
    start_redis,
    totals_match,
    unique_settings,
    wait_until,
)
from harness.agents import api_agents_as_recorded, simulated_centre
from stream.tools.broker import EmbeddedBroker, free_port


@pytest.fixture
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="callstream-hardening-") as directory:
        yield directory


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.kill()
    process.wait()


def merged(*expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for part in expected:
        for queue, counts in part.items():
            into = total.setdefault(queue, dict.fromkeys(counts, 0))
            for name, n in counts.items():
                into[name] += n
    return total


async def snapshot_is_live(url: str) -> bool:
    snapshot = await http_json(url + "/api/queues")
    age = time.time() - datetime.fromisoformat(snapshot["ts"]).timestamp()
    return bool(snapshot["ready"]) and age < 3


# --- careless producers -------------------------------------------------------------------


async def test_hostile_values_then_ordinary_calls_are_all_counted(broker: EmbeddedBroker
                                                                  ) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000) - 60_000
    hostile = []
    callers = ["\u0664\u0664\u0662\u0660\u0667", "\uff14\uff14\uff12\uff10", "5" * 5000,
               "anonymous"]
    for i, caller in enumerate(callers):
        hostile.append(_event(f"h{i}-q", "call.queued", now + i, call_id=f"h{i}",
                              queue_id="hostile", caller=caller, priority=-(2**31)))
    for i, priority in enumerate([10**15, 2**31, -(10**30)]):  # beyond the int32 range
        hostile.append(_event(f"p{i}-q", "call.queued", now + i, call_id=f"p{i}",
                              queue_id="hostile", priority=priority))
    hostile.append(_event("old-q", "call.queued", 0, call_id="old", queue_id="hostile"))
    later = [_event(f"{c}-a", "call.answered", now + 10_000, call_id=c, queue_id="hostile",
                    agent_id="a1") for c in ("h0", "h1", "h2", "h3", "p0", "old")]
    ordinary, expected = call_stream(200, queues=2)
    await produce(settings, [*hostile, *later, *ordinary])
    async with InProcessProcessor(settings) as processor:
        expected["hostile"] = {"offered": 4, "answered": 6, "abandoned": 0,
                               "answered_in_sla": 4, "short_abandoned": 0}
        # p0's answer is an orphan (its queued event was refused); old's answer is orphan too
        await wait_until(lambda: totals_match(processor.url, expected), timeout=30)
        await wait_until(lambda: snapshot_is_live(processor.url), timeout=5)
        assert await metric_value(processor.url, "callstream_events_total",
                                  type="call.queued", result="stale") == 1
        assert await metric_value(processor.url, "callstream_events_total",
                                  type="call.queued", result="rejected") == 3
    dead = await read_topic(broker.bootstrap, settings.topic_dlq, 3)
    assert sorted(dict(m.headers)["callstream-error"] for m in dead) == [
        b"bad_value:priority"] * 3


async def test_a_message_the_state_cannot_take_is_dead_lettered_alone(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    client = redis.Redis.from_url(settings.redis_url)
    # A leg record that no script could read (written by hand, or by an older bug).
    client.hset(f"{settings.redis_prefix}:{{q:sick}}:legs", "broken", "??")
    now = int(time.time() * 1000) - 60_000
    events = [
        _event("c1-q", "call.queued", now, call_id="c1", queue_id="sick"),
        _event("bad-a", "call.answered", now + 1, call_id="broken", queue_id="sick",
               agent_id="a1"),
        _event("c2-q", "call.queued", now + 2, call_id="c2", queue_id="sick"),
        _event("c1-a", "call.answered", now + 3_000, call_id="c1", queue_id="sick",
               agent_id="a1"),
    ]
    ordinary, expected = call_stream(100, queues=2)
    expected["sick"] = {"offered": 2, "answered": 1, "abandoned": 0, "answered_in_sla": 1,
                        "short_abandoned": 0}
    await produce(settings, [*events, *ordinary])
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: totals_match(processor.url, expected), timeout=30)
        await wait_until(lambda: snapshot_is_live(processor.url), timeout=5)
    async with InProcessProcessor(settings):  # a restart sends no dead letter twice
        await asyncio.sleep(1.5)
    dead = await read_topic(broker.bootstrap, settings.topic_dlq, 1)
    assert [json.loads(m.value)["event_id"] for m in dead] == ["bad-a"]
    assert dict(dead[0].headers)["callstream-error"] == b"apply_failed"


async def test_the_queue_bound_holds_against_3000_new_queue_ids(broker: EmbeddedBroker
                                                                ) -> None:
    settings = unique_settings(broker.bootstrap, max_queues=100)
    now = int(time.time() * 1000) - 60_000
    flood = [_event(f"f{i}", "call.queued", now, call_id=f"f{i}", queue_id=f"spam-{i}")
             for i in range(3000)]
    await produce(settings, flood)
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: _counted(processor.url, "rejected", 2900), timeout=60)
        await wait_until(lambda: _queues_shown(processor.url, 100), timeout=10)
        snapshot = await http_json(processor.url + "/api/queues")
        # a queue already tracked goes on counting
        tracked = snapshot["queues"][0]["queue_id"]
        await produce(settings, [_event("again", "call.queued", now, call_id="again",
                                        queue_id=tracked)])
        await wait_until(lambda: _offered(processor.url, tracked, 2), timeout=20)
        metrics = await http_text(processor.url + "/metrics")
        assert len({line.split('queue="')[1].split('"')[0] for line in metrics.splitlines()
                    if 'queue="' in line}) == 100
    dead = await read_topic(broker.bootstrap, settings.topic_dlq, 2900)
    assert len(dead) == 2900
    assert {dict(m.headers)["callstream-error"] for m in dead} == {b"too_many_queues"}


async def _queues_shown(url: str, n: int) -> bool:
    return len((await http_json(url + "/api/queues"))["queues"]) == n


async def _counted(url: str, result: str, n: int) -> bool:
    return await metric_value(url, "callstream_events_total", result=result) == n


async def _offered(url: str, queue: str, n: int) -> bool:
    snapshot = await http_json(url + "/api/queues")
    return any(q["queue_id"] == queue and q["totals"]["offered"] == n
               for q in snapshot["queues"])


# --- a Redis that forgets -----------------------------------------------------------------


async def test_aof_cut_while_callstream_runs_reads_the_lost_writes_again(
        broker: EmbeddedBroker, workdir: str) -> None:
    port = free_port()
    server = start_redis(port, workdir, "--appendonly", "yes", "--appendfsync", "always")
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=200)
    first, expected_first = call_stream(1500, queues=4, seed=1)
    second, expected_second = call_stream(500, queues=4, seed=2)
    try:
        async with InProcessProcessor(settings) as processor:
            await produce(settings, first)
            await wait_until(lambda: totals_match(processor.url, expected_first), timeout=60)
            server = crash_and_cut_aof(server, port, workdir)
            await produce(settings, second)
            await wait_until(lambda: totals_match(
                processor.url, merged(expected_first, expected_second)), timeout=60)
            await wait_until(lambda: snapshot_is_live(processor.url), timeout=5)
    finally:
        stop(server)


async def test_aof_cut_leaves_the_agent_figures_exact(broker: EmbeddedBroker,
                                                      workdir: str) -> None:
    """The agents' slot and the queues' per-agent counts are read again from Kafka, as the
    queue figures are, when Redis comes back without its last writes."""
    port = free_port()
    server = start_redis(port, workdir, "--appendonly", "yes", "--appendfsync", "always")
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=200)
    events, days = simulated_centre((int(time.time() * 1000) - 1900_000) // 1000 * 1000,
                                    1800.0)
    half = len(events) // 2
    try:
        async with InProcessProcessor(settings) as processor:
            await produce(settings, events[:half])

            async def caught_up() -> bool:
                return await metric_value(processor.url, "callstream_events_total") >= half

            await wait_until(caught_up, timeout=60)
            server = crash_and_cut_aof(server, port, workdir)
            await produce(settings, events[half:])
            await api_agents_as_recorded(processor.url, days)
    finally:
        stop(server)


class Proxy:
    """A TCP forwarder standing for the address clients use (a VIP, a DNS name): moved
    from a primary to its replica at failover."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.streams: list[asyncio.StreamWriter] = []

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.streams += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def move_to(self, target: int) -> None:
        self.target = target
        for stream in self.streams:
            stream.close()
        self.streams.clear()

    async def close(self) -> None:
        self.move_to(self.target)
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxy_holder() -> AsyncIterator[list[Proxy]]:
    holder: list[Proxy] = []
    yield holder
    for proxy in holder:
        await proxy.close()


async def test_a_replica_promoted_without_the_last_writes_is_caught(
        broker: EmbeddedBroker, workdir: str, proxy_holder: list[Proxy]) -> None:
    primary_port, replica_port = free_port(), free_port()
    Path(workdir, "p").mkdir()
    Path(workdir, "r").mkdir()
    primary = start_redis(primary_port, str(Path(workdir, "p")))
    replica = start_redis(replica_port, str(Path(workdir, "r")), "--replicaof", "127.0.0.1",
                          str(primary_port))
    proxy = await Proxy(primary_port).start()
    proxy_holder.append(proxy)
    settings = unique_settings(broker.bootstrap,
                               redis_url=f"redis://127.0.0.1:{proxy.port}/0")
    parts = [call_stream(600, queues=3, seed=s) for s in (11, 12, 13)]
    try:
        async with InProcessProcessor(settings) as processor:
            await produce(settings, parts[0][0])
            await wait_until(lambda: totals_match(processor.url, parts[0][1]), timeout=60)
            await _replica_caught_up(primary_port, replica_port)
            # The replica stops following here (a partition, a lagging link): what the
            # primary acknowledges from now on never reaches it.
            redis.Redis(port=replica_port).execute_command("REPLICAOF", "NO", "ONE")
            await produce(settings, parts[1][0])
            await wait_until(lambda: totals_match(processor.url, merged(parts[0][1],
                                                                        parts[1][1])),
                             timeout=60)
            primary.kill()  # the primary dies with writes the replica never got
            primary.wait()
            proxy.move_to(replica_port)  # failover: the replica serves the address
            await produce(settings, parts[2][0])
            await wait_until(lambda: totals_match(
                processor.url, merged(*(p[1] for p in parts))), timeout=60)
            await wait_until(lambda: snapshot_is_live(processor.url), timeout=5)
    finally:
        stop(primary)
        stop(replica)


async def _replica_caught_up(primary: int, replica: int) -> None:
    async def same() -> bool:
        offset = redis.Redis(port=primary).info("replication")["master_repl_offset"]
        return bool(redis.Redis(port=replica).info("replication").get(
            "slave_repl_offset", -1) >= offset)
    await wait_until(same, timeout=20)


# --- hung services ------------------------------------------------------------------------


async def test_a_hung_redis_is_not_ready_and_its_figures_are_stale(broker: EmbeddedBroker,
                                                                   workdir: str) -> None:
    port = free_port()
    server = start_redis(port, workdir)
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0")
    events, expected = call_stream(50, queues=1)
    try:
        async with InProcessProcessor(settings) as processor:
            await produce(settings, events)
            await wait_until(lambda: totals_match(processor.url, expected), timeout=30)
            server.send_signal(signal.SIGSTOP)  # hangs: the port accepts, nothing answers
            paused = time.monotonic()
            await wait_until(lambda: _status(processor.url + "/readyz", 503), timeout=10)
            snapshot = await http_json(processor.url + "/api/queues")
            assert snapshot["ready"] is False  # the wallboard and MQTT show it stale
            assert time.monotonic() - paused < 8
            server.send_signal(signal.SIGCONT)
            await wait_until(lambda: _status(processor.url + "/readyz", 200), timeout=15)
            await wait_until(lambda: snapshot_is_live(processor.url), timeout=10)
    finally:
        stop(server)


async def _status(url: str, status: int) -> bool:
    return await http_status(url) == status


async def test_sigterm_during_a_kafka_outage_ends_the_process_in_time() -> None:
    own = EmbeddedBroker().start()
    try:
        settings = unique_settings(own.bootstrap)
        events, _ = call_stream(50, queues=1)
        await produce(settings, events)
        processor = await ProcessorProcess(settings).start()
        own.stop()
        await asyncio.sleep(2)  # the outage is under way
        started = time.monotonic()
        processor.process.terminate()
        code = await asyncio.to_thread(processor.process.wait, 15)
        assert time.monotonic() - started < 10
        assert code == 0
    finally:
        own.stop()
