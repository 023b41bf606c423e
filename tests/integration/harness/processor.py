"""Run real processors against tansu and Redis: in the test's loop or as a child process;
produce events to them and read topics back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from harness.probes import http_ok, http_status, wait_until
from harness.settings import REDIS_URL
from stream.app.run import run_processor
from stream.config import Policy, Settings
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.tools.broker import free_port


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
