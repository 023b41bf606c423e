"""Run real processors against tansu and Redis, produce events, read figures back."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from stream.app.run import run_processor
from stream.config import Policy, Settings
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.tools.broker import free_port

REDIS_URL = os.environ.get("CALLSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unique_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings with topics, group and Redis keys of their own, so tests never share state."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_group": f"g-{tag}",
        "kafka_start": "earliest",
        "redis_url": REDIS_URL,
        "redis_prefix": f"t{tag}",
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "topic_events": f"events-{tag}",
        "topic_dlq": f"dlq-{tag}",
        "topic_offers": f"offers-{tag}",
        "topic_cancels": f"cancels-{tag}",
        "topic_alerts": f"alerts-{tag}",
    } | overrides
    return Settings(**values)


async def produce(settings: Settings, events: list[dict[str, Any] | bytes],
                  key: str | None = None) -> None:
    """Produce events (dicts as JSON, bytes as they are), keyed as the contract says."""
    await ensure_topics(settings, all_topics(settings))
    producer = make_producer(settings)
    await producer.start()
    try:
        sends = []
        for event in events:
            if isinstance(event, bytes):
                value, event_key = event, key or "bad"
            else:
                value = json.dumps(event).encode()
                event_key = event.get("queue_id") or event.get("agent_id") or "x"
            sends.append(await producer.send(settings.topic_events, value,
                                             key=str(event_key).encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


class InProcessProcessor:
    """`callstream run` as an asyncio task of the test's own loop."""

    def __init__(self, settings: Settings, policy: Policy | None = None) -> None:
        self.settings = settings
        self.policy = policy or Policy()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    async def __aenter__(self) -> InProcessProcessor:
        self.task = asyncio.create_task(run_processor(self.settings, self.policy, self.stop))
        await wait_until(self.ready, timeout=20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)

    async def ready(self) -> bool:
        return await http_status(self.url + "/readyz") == 200


async def http_status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def http_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def http_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20,
                     every: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail the test with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


async def queue_figures(base_url: str, queue_id: str) -> dict[str, Any] | None:
    snapshot = await http_json(base_url + "/api/queues")
    for queue in snapshot["queues"]:
        if queue["queue_id"] == queue_id:
            return dict(queue)
    return None


def call_stream(calls: int, queues: int = 4, seed: int = 7, start_ms: int | None = None,
                spacing_ms: int = 50) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """A deterministic stream of whole calls, and the totals it must produce per queue."""
    import random

    rng = random.Random(seed)
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 600_000
    events: list[dict[str, Any]] = []
    expected: dict[str, dict[str, int]] = {}
    for i in range(calls):
        queue = f"q{i % queues}"
        call = f"call-{seed}-{i}"
        t = start + i * spacing_ms
        totals = expected.setdefault(queue, {"offered": 0, "answered": 0, "abandoned": 0,
                                              "answered_in_sla": 0, "short_abandoned": 0})
        events.append(_event(f"{call}-q", "call.queued", t, call_id=call, queue_id=queue))
        totals["offered"] += 1
        wait = rng.randint(1, 40) * 1000
        if rng.random() < 0.75:
            events.append(_event(f"{call}-a", "call.answered", t + wait, call_id=call,
                                 queue_id=queue, agent_id=f"agent{i % 9}"))
            events.append(_event(f"{call}-e", "call.ended", t + wait + 60_000, call_id=call,
                                 queue_id=queue))
            totals["answered"] += 1
            totals["answered_in_sla"] += wait <= 20_000
        else:
            events.append(_event(f"{call}-b", "call.abandoned", t + wait, call_id=call,
                                 queue_id=queue))
            totals["abandoned"] += 1
            totals["short_abandoned"] += wait < 5000
    return events, expected


def _event(event_id: str, kind: str, ts_ms: int, **fields: Any) -> dict[str, Any]:
    from stream.publish.snapshots import iso

    return {"event_id": event_id, "type": kind, "ts": iso(ts_ms), **fields}


def settings_env(settings: Settings) -> dict[str, str]:
    """The CALLSTREAM_* environment that gives a subprocess these settings."""
    import os

    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"CALLSTREAM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    return env


class ProcessorProcess:
    """`callstream run` as a real child process, to be killed for real."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    async def start(self) -> ProcessorProcess:
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "run"], env=settings_env(self.settings),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await wait_until(lambda: http_ok(self.url + "/readyz"), timeout=30)
        return self

    def kill(self) -> None:
        """SIGKILL: no batch finished, no commit, nothing flushed."""
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 20) -> int:
        self.process.terminate()
        return int(self.process.wait(timeout))


async def http_ok(url: str) -> bool:
    return await http_status(url) == 200


async def totals_match(url: str, expected: dict[str, dict[str, int]]) -> bool:
    """True once every queue's totals equal the expected counts (no more, no fewer)."""
    try:
        snapshot = await http_json(url + "/api/queues")
    except aiohttp.ClientError:
        return False
    got = {q["queue_id"]: {k: q["totals"][k] for k in next(iter(expected.values()))}
           for q in snapshot["queues"]}
    return got == expected


async def read_topic(bootstrap: str, topic: str, at_least: int, timeout: float = 20
                     ) -> list[Any]:
    """Every record of ``topic`` once ``at_least`` have arrived (or ``timeout`` passed)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            got += [m for records in batch.values() for m in records]
            if len(got) >= at_least:
                # a little longer, so that a duplicate would show
                batch = await consumer.getmany(timeout_ms=500)
                got += [m for records in batch.values() for m in records]
                break
    finally:
        await consumer.stop()
    return got


async def metric_value(url: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(await http_text(url + "/metrics")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total


def start_redis(port: int, directory: str, *extra: str) -> Any:
    """A redis-server of the test's own (``subprocess.Popen``), listening when returned."""
    import subprocess

    from stream.tools.broker import wait_for_port

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def crash_and_cut_aof(process: Any, port: int, directory: str) -> Any:
    """SIGKILL a Redis running with AOF, cut the last third off its AOF (as a host crash
    with ``appendfsync everysec`` can), repair it and start it again; the new process."""
    import glob
    import subprocess

    process.kill()
    process.wait()
    incr = glob.glob(os.path.join(directory, "appendonlydir", "*.incr.aof"))[0]
    with open(incr, "r+b") as aof:
        aof.truncate(os.path.getsize(incr) * 2 // 3)
    subprocess.run(["redis-check-aof", "--fix", incr], input=b"y\n", capture_output=True,
                   check=True)
    return start_redis(port, directory, "--appendonly", "yes")
