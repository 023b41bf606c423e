"""Every Redis client callstream opens: timeouts on every call, and Cluster detection.

A Redis that stops answering (paused, a network partition) must surface as an error
within seconds, never as a call that waits forever.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import RedisError

from stream.state.keys import KeySpace
from stream.urls import check_redis_url

Redis = aioredis.Redis | aioredis.RedisCluster

#: Longest wait for one reply; a Lua call on a full batch takes well under a second.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
def redis_options() -> dict[str, Any]:
    """The timeouts every client gets."""
    return {"socket_timeout": SOCKET_TIMEOUT_SECONDS,
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS}


_PACKER: Any = cast(Any, HiredisRespSerializer)()  # untyped in redis-py 8


class _HiredisPacking:
    """Commands packed by hiredis: redis-py's asyncio client packs them in Python, about
    1.5 µs per argument, which the hot path's many-key scripts feel."""

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = _PACKER.pack(*args)
        return packed


_PACKED: dict[type[Any], type[Any]] = {}


def _hiredis_packed(cls: type[Any]) -> type[Any]:
    """``cls`` (a connection class) packing its commands with hiredis."""
    if issubclass(cls, _HiredisPacking):
        return cls
    if cls not in _PACKED:
        _PACKED[cls] = type(f"HiredisPacked{cls.__name__}", (_HiredisPacking, cls), {})
    return _PACKED[cls]


def _pack_with_hiredis(client: Redis) -> None:
    if isinstance(client, aioredis.RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = _hiredis_packed(kwargs.get("connection_class",
                                                                aioredis.Connection))
        for node in client.get_nodes():
            node.connection_class = _hiredis_packed(node.connection_class)
    else:
        pool = client.connection_pool
        pool.connection_class = _hiredis_packed(pool.connection_class)


async def connect_redis(url: str, *, decode_responses: bool = True) -> Redis:
    """A client for the Redis at ``url``, or for its Cluster when ``url`` names a Cluster
    node; every call has a timeout. Raises ``ConfigError`` for a malformed URL and
    ``redis.exceptions.RedisError`` / ``OSError`` while Redis does not answer."""
    check_redis_url(url)
    client: Redis = aioredis.Redis.from_url(url, decode_responses=decode_responses,
                                            **redis_options())
    _pack_with_hiredis(client)
    try:
        info = await client.info("cluster")
        if info.get("cluster_enabled"):
            await client.aclose()
            client = aioredis.RedisCluster.from_url(url, decode_responses=decode_responses,
                                                    **redis_options())
            _pack_with_hiredis(client)
            await client.initialize()
    except BaseException:
        await client.aclose()
        raise
    return client


async def answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis answers a PING at ``url`` within ``timeout`` seconds."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def delete_all(url: str, keys: KeySpace) -> None:
    """Delete every key under ``keys``' root (a demo leaving a Redis it borrowed)."""
    client = await connect_redis(url)
    try:
        batch = [key async for key in client.scan_iter(match=f"{keys.root}:*", count=1000)]
        for start in range(0, len(batch), 1000):
            await client.delete(*batch[start:start + 1000])
    finally:
        await client.aclose()
