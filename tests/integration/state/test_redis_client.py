"""``connect_redis`` against real servers: a Redis that hangs is an error within seconds."""

from __future__ import annotations

import signal
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, TimeoutError

from harness import REDIS_URL
from stream.state.client import SOCKET_TIMEOUT_SECONDS, connect_redis
from stream.tools.broker import EmbeddedRedis, free_port


async def test_a_plain_redis_gets_a_client_with_timeouts() -> None:
    client = await connect_redis(REDIS_URL)
    try:
        assert isinstance(client, aioredis.Redis)
        assert await client.ping()
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == SOCKET_TIMEOUT_SECONDS
        assert kwargs["socket_connect_timeout"] > 0
    finally:
        await client.aclose()


async def test_a_redis_that_is_down_is_an_error_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - started < 1


async def test_a_redis_that_hangs_is_an_error_within_the_socket_timeout() -> None:
    redis = EmbeddedRedis().start()
    process = redis._process
    assert process is not None
    try:
        client = await connect_redis(redis.url)
        try:
            process.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.set("k", "v")
            assert time.monotonic() - started < SOCKET_TIMEOUT_SECONDS + 1
        finally:
            process.send_signal(signal.SIGCONT)
            await client.aclose()
    finally:
        redis.stop()
