"""Readiness of a real processor (real tansu, real Redis) when Redis hangs: SIGSTOP on a
redis-server of the test's own, then SIGCONT."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from harness import InProcessProcessor, http_json, unique_settings, wait_until
from stream.app.run import run_processor
from stream.config import Policy
from stream.tools.broker import EmbeddedBroker, EmbeddedRedis


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis().start()
    try:
        yield redis
    finally:
        process = redis._process
        if process is not None:
            process.send_signal(signal.SIGCONT)
        redis.stop()


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as response:
        return response.status, await response.json()


async def wallboard_ready(url: str) -> bool:
    """What the wallboard's stream says of readiness, from its first event."""
    async with aiohttp.ClientSession() as session, session.get(
            url + "/wallboard/events") as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                ready: bool = json.loads(line[6:])["ready"]
                return ready
    raise AssertionError("no event")


async def test_a_hung_redis_makes_the_processor_not_ready_within_seconds(
        broker: EmbeddedBroker, own_redis: EmbeddedRedis,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream.app.run")
    settings = unique_settings(broker.bootstrap, redis_url=own_redis.url, http_host="0.0.0.0")
    process = own_redis._process
    assert process is not None
    async with InProcessProcessor(settings) as processor:
        url = processor.url
        assert (await readyz(url))[0] == 200
        await wait_until(lambda: wallboard_ready(url), timeout=5)
        process.send_signal(signal.SIGSTOP)  # Redis hangs: connections open, no answer
        paused = time.monotonic()
        await wait_until(lambda: _status_is(url, 503), timeout=10)
        assert time.monotonic() - paused < 5
        _, body = await readyz(url)
        assert body["redis"] is False and body["kafka"] is True, body
        assert list(body["down"]) == ["redis"]
        assert "CALLSTREAM_REDIS_URL" in body["down"]["redis"]
        assert not await wallboard_ready(url)
        assert (await http_json(url + "/api/queues"))["ready"] is False
        process.send_signal(signal.SIGCONT)
        await wait_until(lambda: _status_is(url, 200), timeout=15)
        await wait_until(lambda: wallboard_ready(url), timeout=5)
    # Bound to every address with no token: said once, at start.
    open_warnings = [r for r in caplog.records if "CALLSTREAM_HTTP_TOKEN" in r.getMessage()]
    assert len(open_warnings) == 1 and "0.0.0.0" in open_warnings[0].getMessage()


async def test_no_warning_when_bound_to_loopback_or_behind_a_token(
        broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stream.app.run")
    for overrides in ({"http_host": "127.0.0.1"}, {"http_host": "0.0.0.0", "http_token": "t"}):
        settings = unique_settings(broker.bootstrap, **overrides)
        stop = asyncio.Event()
        task = asyncio.create_task(run_processor(settings, Policy(), stop))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 20)
    assert not [r for r in caplog.records if "CALLSTREAM_HTTP_TOKEN" in r.getMessage()]


async def _status_is(url: str, status: int) -> bool:
    try:
        return (await readyz(url))[0] == status
    except aiohttp.ClientError:
        return False
