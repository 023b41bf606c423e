"""Producing the simulated events: paced by the wall clock, into Kafka or a JSON-lines file,
with progress on stderr."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.config import Settings
from stream.errors import ServiceUnavailable
from stream.ingest.kafka import ensure_topics, make_producer
from stream.timefmt import rfc3339
from stream.tools.sends import Sends
from stream.tools.simulate.engine import timeline
from stream.tools.simulate.model import Event, SimulationConfig
from stream.tools.status import StatusLine, clock_time

#: Seconds between progress updates on stderr: redrawn in place, or logged as lines.
IN_PLACE_PROGRESS_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
#: A paced run's progress says it is fast-forwarding while its events are this far behind.
CATCHING_UP_SECONDS = 5.0


async def produce(
    settings: Settings,
    config: SimulationConfig,
    speed: float,
    out_path: str | None,
    start: datetime | None = None,
    progress_in_place: bool | None = None,
) -> int:
    """Send the simulated events to ``out_path`` (JSON lines) or Kafka; return how many.

    Kafka messages go to ``settings.topic_events`` keyed by queue (``call.*``) or agent
    (``agent.*``). ``speed`` 1 is real time, 10 ten times faster, 0 as fast as possible.
    At a speed above 0 the simulated clock starts at ``start`` (default: now) and every
    ``ts`` is the wall-clock time its event is due, so ``clock=wall`` windows see live data;
    faster than real time this is a time-lapse, in which durations shrink by ``speed``. A
    ``start`` in the past fast-forwards: the events already due go at once, with their past
    ``ts``, and the run then goes on live. At speed 0 the run ends now (it starts
    ``duration`` ago) unless ``start`` is given. Progress goes to stderr, redrawn in place
    on one line if ``progress_in_place`` (default: when stderr is a terminal).
    """
    sink: _Sink = _FileSink(out_path, speed > 0) if out_path else await _KafkaSink.open(settings)
    progress = _Progress(sys.stderr, progress_in_place, paced=speed > 0)
    try:
        anchor = start or _default_start(speed, config.duration_seconds)
        async for event in _paced(config, anchor, speed):
            await sink.send(event)
            progress.count(event)
    finally:
        await sink.close()
        progress.close()
    return progress.events


def _default_start(speed: float, duration: float | None) -> datetime:
    now = datetime.now(UTC)
    if speed == 0 and duration is not None:
        return now - timedelta(seconds=duration)
    return now


async def _paced(config: SimulationConfig, start: datetime, speed: float) -> AsyncIterator[Event]:
    """The events, each released when due by the wall clock at this speed: at once if
    ``start`` is so far back that it is already due."""
    events = timeline(config, start)
    if speed == 0:
        for _, event in events:
            yield event
        return
    loop = asyncio.get_running_loop()
    began = loop.time() - max(0.0, time.time() - start.timestamp())
    start_ms = math.floor(start.timestamp() * 1000)
    for offset, event in events:
        delay = began + offset / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if speed != 1:
            event["ts"] = rfc3339(start_ms + round(offset / speed * 1000))
        yield event


def _encode(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


class _Sink:
    """Where events go: a file or Kafka."""

    async def send(self, event: Event) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _FileSink(_Sink):
    def __init__(self, path: str, paced: bool) -> None:
        # Unbuffered while paced (one write per line), so a reader following the file sees
        # each event when it is due.
        self._file = open(path, "wb", buffering=0 if paced else -1)  # noqa: SIM115

    async def send(self, event: Event) -> None:
        self._file.write(_encode(event) + b"\n")

    async def close(self) -> None:
        self._file.close()


class _KafkaSink(_Sink):
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self._sends = Sends(producer, settings.topic_events)

    @classmethod
    async def open(cls, settings: Settings) -> _KafkaSink:
        try:
            await ensure_topics(settings, [settings.topic_events])
            producer = make_producer(settings)
            await producer.start()
        except KafkaError as exc:
            raise _unavailable(settings, exc) from exc
        return cls(settings, producer)

    async def send(self, event: Event) -> None:
        key = event["queue_id"] if event["type"].startswith("call.") else event["agent_id"]
        try:
            await self._sends.send(_encode(event), key)
            await self._sends.settle_if_full()
        except KafkaError as exc:
            raise _unavailable(self._settings, exc) from exc

    async def close(self) -> None:
        try:
            await self._sends.settle()
        finally:
            await self._producer.stop()


def _unavailable(settings: Settings, exc: KafkaError) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka at {settings.kafka_bootstrap} (CALLSTREAM_KAFKA_BOOTSTRAP) failed: {exc!r}"
    )


class _Progress:
    """Events sent, their rate and the simulated clock on stderr, and a summary at the end:
    one line redrawn in place (on a terminal, or when asked), else a line every few seconds."""

    def __init__(self, stream: TextIO, in_place: bool | None = None, paced: bool = False
                 ) -> None:
        self.events = 0
        #: Paced runs say when they are fast-forwarding through events already due.
        self._paced = paced
        self._line = StatusLine(
            stream, in_place=in_place, every=(IN_PLACE_PROGRESS_SECONDS, PROGRESS_SECONDS))
        self._began = self._last = time.monotonic()
        self._last_events = 0

    def count(self, event: Event) -> None:
        """Count ``event`` (just sent); show the progress if the last update is old enough."""
        self.events += 1
        if not self._line.due():
            return
        now = time.monotonic()
        rate = (self.events - self._last_events) / (now - self._last)
        self._last, self._last_events = now, self.events
        ts = event["ts"]
        text = f"simulate: {self.events:,} events, {rate:,.0f} events/s, simulated {ts[11:19]} UTC"
        behind = time.time() - datetime.fromisoformat(ts).timestamp()
        if self._paced and behind > CATCHING_UP_SECONDS:
            text += f", fast-forwarding ({clock_time(behind)} behind)"
        self._line.show(text)

    def close(self) -> None:
        elapsed = time.monotonic() - self._began
        self._line.finish(f"simulate: {self.events:,} events in {elapsed:.1f} s")
