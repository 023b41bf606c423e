"""Redis clients as callstream makes them: every call bounded in time, Clusters detected."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from .errors import ConfigError

#: A Redis that does not answer within this many seconds is taken as unreachable.
SOCKET_TIMEOUT_S = 2.0
_SCHEMES = ("redis://", "rediss://", "unix://")


async def connect_redis(url: str) -> aioredis.Redis | aioredis.RedisCluster:
    """A client for ``url``; for a Redis Cluster node, a Cluster client."""
    if not url.startswith(_SCHEMES):
        raise ConfigError(f"CALLSTREAM_REDIS_URL={url!r} needs a scheme: "
                          f"redis://host:6379/0, rediss:// (TLS) or unix://")
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": SOCKET_TIMEOUT_S,
                               "socket_connect_timeout": SOCKET_TIMEOUT_S}
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    try:
        info = await client.info("cluster")
        if not info.get("cluster_enabled"):
            return client
        await client.aclose()
        return aioredis.RedisCluster.from_url(url, **options)
    except BaseException:
        await client.aclose()
        raise
