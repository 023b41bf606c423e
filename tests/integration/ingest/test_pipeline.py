"""The whole pipeline on real tansu and Redis: exact through duplicates, crashes, Redis loss."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from harness import (
    InProcessProcessor,
    ProcessorProcess,
    call_stream,
    http_status,
    http_text,
    produce,
    totals_match,
    unique_settings,
    wait_until,
)
from stream.tools.broker import EmbeddedBroker, free_port, wait_for_port


async def test_the_same_stream_twice_counts_once(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    events, expected = call_stream(600)
    await produce(settings, events)
    await produce(settings, events)  # a producer that sent everything again
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: totals_match(processor.url, expected), timeout=30)
        metrics = await http_text(processor.url + "/metrics")
    duplicates = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("callstream_events_total{") and "duplicate" in line)
    assert duplicates == len(events)


async def test_two_instances_in_one_group_give_the_totals_of_one(broker: EmbeddedBroker
                                                                  ) -> None:
    settings = unique_settings(broker.bootstrap)
    second = settings.model_copy(update={"http_port": free_port()})
    events, expected = call_stream(1500, queues=6)
    async with InProcessProcessor(settings) as one, InProcessProcessor(second) as two:
        await produce(settings, events[: len(events) // 2])
        await asyncio.sleep(1)
        await produce(settings, events[len(events) // 2:])
        await wait_until(lambda: totals_match(one.url, expected), timeout=40)
        # Figures live in Redis: the other instance serves the same numbers.
        await wait_until(lambda: totals_match(two.url, expected), timeout=5)


async def test_kill_9_mid_stream_then_restart_ends_exact(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, kafka_batch_max=200)
    events, expected = call_stream(4000, queues=5)
    processor = await ProcessorProcess(settings).start()
    producing = asyncio.create_task(produce(settings, events))
    await asyncio.sleep(0.5)
    processor.kill()
    await producing
    restarted = await ProcessorProcess(settings).start()
    try:
        await wait_until(lambda: totals_match(restarted.url, expected), timeout=60)
    finally:
        assert restarted.terminate() == 0  # SIGTERM: finish the batch, commit, exit 0


@pytest.fixture
def own_redis() -> Iterator[tuple[int, str]]:
    """A redis-server of the test's own, AOF everysec, in a temporary directory."""
    directory = tempfile.mkdtemp(prefix="callstream-redis-")
    port = free_port()
    yield port, directory
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                   capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)


def start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


async def test_redis_crash_under_load_ends_exact(broker: EmbeddedBroker,
                                                 own_redis: tuple[int, str]) -> None:
    port, directory = own_redis
    redis = start_redis(port, directory)
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=300)
    events, expected = call_stream(4000, queues=5)
    async with InProcessProcessor(settings) as processor:
        producing = asyncio.create_task(produce(settings, events))
        await asyncio.sleep(0.4)
        redis.kill()  # SIGKILL under load
        redis.wait()
        await wait_until(lambda: _status_is(processor.url + "/readyz", 503), timeout=10)
        await asyncio.sleep(1)
        redis = start_redis(port, directory)  # AOF replayed on start
        await producing
        await wait_until(lambda: totals_match(processor.url, expected), timeout=60)
        assert await http_status(processor.url + "/readyz") == 200
    redis.terminate()
    redis.wait()


async def _status_is(url: str, status: int) -> bool:
    return await http_status(url) == status


async def test_readyz_is_503_while_redis_is_down(broker: EmbeddedBroker,
                                                 own_redis: tuple[int, str]) -> None:
    port, directory = own_redis
    redis = start_redis(port, directory)
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0")
    async with InProcessProcessor(settings) as processor:
        assert await http_status(processor.url + "/readyz") == 200
        redis.terminate()
        redis.wait()
        await wait_until(lambda: _status_is(processor.url + "/readyz", 503), timeout=10)
        assert await http_status(processor.url + "/healthz") == 200  # alive, not ready
        redis = start_redis(port, directory)
        await wait_until(lambda: _status_is(processor.url + "/readyz", 200), timeout=15)
    redis.terminate()
    redis.wait()


async def test_bad_messages_go_to_the_dlq_once_with_headers(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    good, expected = call_stream(20, queues=1)
    bad = [b"{not json", json.dumps({"event_id": "x", "type": "call.nope", "ts": 1}).encode(),
           json.dumps({"event_id": "y", "type": "call.queued", "ts": "yesterday",
                       "call_id": "c", "queue_id": "q0"}).encode()]
    await produce(settings, [bad[0], *good[:10], bad[1], *good[10:], bad[2]], key="q0")
    async with InProcessProcessor(settings) as processor:
        await wait_until(lambda: totals_match(processor.url, expected), timeout=20)
    # A restarted processor re-reads nothing it applied, and sends no bad message twice.
    async with InProcessProcessor(settings) as processor:
        await asyncio.sleep(1.5)
    consumer = AIOKafkaConsumer(settings.topic_dlq, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        got = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=300)
            got += [m for records in batch.values() for m in records]
    finally:
        await consumer.stop()
    assert sorted(m.value for m in got) == sorted(bad)
    headers = {m.value: dict(m.headers) for m in got}
    assert headers[bad[0]]["callstream-error"] == b"invalid_json"
    assert headers[bad[1]]["callstream-error"] == b"unknown_type"
    assert headers[bad[2]]["callstream-error"] == b"bad_ts"
    sources = {h["callstream-source"].decode() for h in headers.values()}
    assert all(s.startswith(settings.topic_events + ":") for s in sources)
    assert len(sources) == 3


async def test_readyz_is_503_while_kafka_is_down() -> None:
    own = EmbeddedBroker().start()  # a broker of this test's own, to take away
    try:
        settings = unique_settings(own.bootstrap)
        async with InProcessProcessor(settings) as processor:
            own.stop()
            await wait_until(lambda: _status_is(processor.url + "/readyz", 503), timeout=10)
            assert await http_status(processor.url + "/healthz") == 200
    finally:
        own.stop()
