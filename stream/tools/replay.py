"""``callstream replay FILE``: recorded history (JSON lines or an Asterisk queue_log) into Kafka.

Event ids come from the file's content, so replaying a file again changes nothing: the
processor applies each event once. A line that cannot be used is reported and skipped;
contract validation beyond what the Kafka key needs is left to the processor, which
dead-letters bad events.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import gzip
import io
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.config import Settings
from stream.ingest.kafka import ensure_topics, make_producer
from stream.tools.queue_log import Event, QueueLogMapper, Skip, format_ts

Format = Literal["jsonl", "queue_log"]

#: Sends awaited together: one round trip per chunk, not per event.
SEND_CHUNK = 1000
#: Skipped lines reported one by one; past this they are only counted in the summary.
REPORT_LIMIT = 20
#: Seconds between progress updates: in place on a terminal, as log lines otherwise.
TTY_PROGRESS_SECONDS = 0.25
LOG_PROGRESS_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Record:
    """One message for Kafka; ``event`` is its decoded value, for pacing and shifting."""

    key: str
    value: bytes
    event: Event


@dataclass(slots=True)
class ReplayReport:
    """What a replay did, summed up at its end."""

    path: Path
    format: Format
    lines: int = 0
    produced: Counter[str] = field(default_factory=Counter)  # by event type
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    not_mapped: Counter[str] = field(default_factory=Counter)  # queue_log events, by name
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.produced.values())

    def summary(self, topic: str) -> str:
        """The closing lines of ``callstream replay``."""
        lines = [
            f"replayed {self.path} ({self.format}, {self.lines:,} lines) in {self.seconds:.1f} s",
            f"  produced {self.events:,} events to {topic}"
            + (f": {_counts(self.produced, by_name=True)}" if self.produced else ""),
            f"  skipped {self.skipped.total():,} lines"
            + (f": {_counts(self.skipped)}" if self.skipped else ""),
        ]
        if self.not_mapped:
            lines.append(f"  not mapped (no contract event): {_counts(self.not_mapped)}")
        return "\n".join(lines)


def _counts(counter: Counter[str], by_name: bool = False) -> str:
    items = sorted(counter.items()) if by_name else counter.most_common()
    return ", ".join(f"{name} {count:,}" for name, count in items)


# -- reading -----------------------------------------------------------------------------


def _open(path: Path) -> io.BufferedIOBase:
    # Asterisk's logrotate leaves queue_log.1.gz and friends: read them as they are.
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-empty lines, numbered from 1, stripped of blanks and of a leading BOM."""
    with _open(path) as file:
        for lineno, raw in enumerate(file, 1):
            line = (raw.removeprefix(codecs.BOM_UTF8) if lineno == 1 else raw).strip()
            if line:
                yield lineno, line


def count_lines(path: Path) -> int:
    """Lines in the file: the total the progress line counts towards."""
    with _open(path) as file:
        return sum(1 for _ in file)


def detect_format(path: Path) -> Format:
    """JSON lines when the first non-empty line starts with ``{``, else a queue_log."""
    for _, line in _lines(path):
        return "jsonl" if line.startswith(b"{") else "queue_log"
    return "queue_log"


def _key_field(kind: object) -> str | None:
    if isinstance(kind, str):
        if kind.startswith("call."):
            return "queue_id"
        if kind.startswith("agent."):
            return "agent_id"
    return None


def _encode(event: Event) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _jsonl_record(line: bytes) -> list[Record] | Skip:
    """A contract event passed through byte for byte, keyed as the contract says."""
    try:
        event = json.loads(line)
    except ValueError:
        return Skip("not a JSON object")
    if not isinstance(event, dict):
        return Skip("not a JSON object")
    key_field = _key_field(event.get("type"))
    if key_field is None:
        return Skip("type is not call.* or agent.*: no Kafka key")
    key = event.get(key_field)
    if not isinstance(key, str) or not key:
        return Skip(f"no {key_field} (the Kafka key)")
    return [Record(key, line, event)]


def _mapped_record(event: Event) -> Record:
    key_field = _key_field(event["type"])
    assert key_field is not None  # the mapper makes call.* and agent.* events only
    return Record(event[key_field], _encode(event), event)


LineMapper = Callable[[bytes], "list[Record] | Skip"]


def line_mapper(fmt: Format, callback_keys: Iterable[str] = ()) -> LineMapper:
    """Maps one stripped line to its messages; a queue_log mapper remembers earlier lines."""
    if fmt == "jsonl":
        return _jsonl_record
    mapper = QueueLogMapper(callback_keys)

    def mapped(line: bytes) -> list[Record] | Skip:
        events = mapper.map_line(line.decode("utf-8", errors="replace"))
        return events if isinstance(events, Skip) else [_mapped_record(e) for e in events]

    return mapped


def read_records(
    path: Path, fmt: Format, callback_keys: Iterable[str] = ()
) -> Iterator[tuple[int, list[Record] | Skip]]:
    """Per non-empty line: its number and its messages, or why it has none."""
    mapped = line_mapper(fmt, callback_keys)
    for lineno, line in _lines(path):
        yield lineno, mapped(line)


def event_time(event: Event) -> float | None:
    """The event's ``ts`` as Unix seconds; None when it is not a time with an offset."""
    ts = event.get("ts")
    try:
        if isinstance(ts, str):
            moment = datetime.fromisoformat(ts)
        elif isinstance(ts, int | float) and not isinstance(ts, bool):
            moment = datetime.fromtimestamp(ts, UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):  # also a ts in ms: year out of range
        return None
    return moment.timestamp() if moment.tzinfo else None


def latest_time(path: Path, fmt: Format, callback_keys: Iterable[str] = ()) -> float | None:
    """The latest event time in the file: what ``--shift-to-now`` moves to now."""
    times = (
        moment
        for _, records in read_records(path, fmt, callback_keys)
        if not isinstance(records, Skip)
        for record in records
        if (moment := event_time(record.event)) is not None
    )
    return max(times, default=None)


def shifted(record: Record, seconds: float) -> Record:
    """The record with its ``ts`` moved by ``seconds``; re-encoded, as its bytes change."""
    moment = event_time(record.event)
    if moment is None:
        return record
    event = record.event | {"ts": format_ts(moment + seconds)}
    return Record(record.key, _encode(event), event)


# -- pacing and progress -----------------------------------------------------------------


class Pacer:
    """Spaces sends as the events' timestamps are, ``speed`` times faster; 0 never waits."""

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._speed = speed
        self._clock = clock
        self._origin: tuple[float, float] | None = None  # (event time, clock) of the first

    def delay(self, event: Event) -> float:
        """Seconds to wait before sending ``event``; events out of order are not held back."""
        if self._speed == 0:
            return 0.0
        moment = event_time(event)
        if moment is None:
            return 0.0
        now = self._clock()
        if self._origin is None:
            self._origin = (moment, now)
            return 0.0
        first_moment, first_clock = self._origin
        return max(0.0, first_clock + (moment - first_moment) / self._speed - now)


class ProgressView(Protocol):
    """What :func:`produce_lines` tells about its progress."""

    def update(self, lines: int, events: int) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class StatusLine:
    """One status line on stderr: redrawn in place on a terminal, logged now and then otherwise."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._tty = stream.isatty()
        self._every = TTY_PROGRESS_SECONDS if self._tty else LOG_PROGRESS_SECONDS
        self._next = clock() + self._every
        self._width = 0

    def due(self) -> bool:
        """Whether the last update is old enough for another: cheap to ask per line."""
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._every
        return True

    def show(self, text: str) -> None:
        """Draw ``text`` in place of the previous status."""
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def note(self, message: str) -> None:
        """A message on a line of its own, clear of the status line."""
        self.close()
        self._stream.write(message + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Erase the status line of a terminal."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


class Progress:
    """Lines done out of the file's total, rate and ETA."""

    def __init__(
        self, total_lines: int, stream: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._total = total_lines
        self._clock = clock
        self._started = clock()
        self._line = StatusLine(stream, clock)

    def update(self, lines: int, events: int) -> None:
        """Show the progress, if the last update is old enough: cheap to call per line."""
        if not self._line.due():
            return
        elapsed = self._clock() - self._started
        eta = (self._total - lines) * elapsed / lines if lines else math.inf
        self._line.show(
            f"replay: {lines:,}/{self._total:,} lines ({lines / max(self._total, 1):.0%}), "
            f"{events:,} events, {events / elapsed:,.0f} events/s, ETA {_clock_time(eta)}"
        )

    def note(self, message: str) -> None:
        """A message on a line of its own, clear of the progress line."""
        self._line.note(message)

    def close(self) -> None:
        """Erase the progress line of a terminal."""
        self._line.close()


def _clock_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


# -- producing ---------------------------------------------------------------------------


async def replay_file(
    path: Path,
    settings: Settings,
    *,
    fmt: Format | Literal["auto"] = "auto",
    speed: float = 0.0,
    shift_to_now: bool = False,
    callback_keys: Iterable[str] = (),
    err: TextIO | None = None,
) -> ReplayReport:
    """Produce the events of ``path`` to ``settings.topic_events`` and report what was done.

    Raises OSError when the file cannot be read, KafkaError when Kafka fails.
    """
    stream = err or sys.stderr
    chosen: Format = detect_format(path) if fmt == "auto" else fmt
    keys = frozenset(callback_keys)
    report = ReplayReport(path, chosen, lines=count_lines(path))
    offset = 0.0
    if shift_to_now and (latest := latest_time(path, chosen, keys)) is not None:
        offset = time.time() - latest
    await ensure_topics(settings, [settings.topic_events])
    producer = make_producer(settings)
    await producer.start()
    started = time.monotonic()
    try:
        await produce_lines(
            producer,
            settings.topic_events,
            read_records(path, chosen, keys),
            report,
            Pacer(speed),
            Progress(report.lines, stream),
            offset,
        )
        await producer.flush()
    finally:
        await producer.stop()
    report.seconds = time.monotonic() - started
    return report


async def produce_lines(
    producer: AIOKafkaProducer,
    topic: str,
    lines: Iterable[tuple[int, list[Record] | Skip]],
    report: ReplayReport,
    pacer: Pacer,
    progress: ProgressView,
    offset: float = 0.0,
) -> None:
    """Send the lines' records and wait for the broker's acknowledgement of every one."""
    pending: list[asyncio.Future[Any]] = []
    try:
        for lineno, result in lines:
            if isinstance(result, Skip):
                if result.informational:
                    report.not_mapped[result.reason] += 1
                    continue
                reported = report.skipped.total()
                report.skipped[result.reason] += 1
                if reported < REPORT_LIMIT:
                    progress.note(f"{report.path}:{lineno}: skipped: {result.reason}")
                elif reported == REPORT_LIMIT:
                    progress.note("further skipped lines are only counted in the summary")
                continue
            for record in result:
                if offset:
                    record = shifted(record, offset)
                if (delay := pacer.delay(record.event)) > 0:
                    # Deliver what is due before idling, so events arrive on their time.
                    await _settle(pending)
                    await asyncio.sleep(delay)
                pending.append(await producer.send(topic, record.value, key=record.key.encode()))
                report.produced[str(record.event["type"])] += 1
            if len(pending) >= SEND_CHUNK:
                await _settle(pending)
            progress.update(lineno, report.events)
        await _settle(pending)
    finally:
        progress.close()


async def _settle(pending: list[asyncio.Future[Any]]) -> None:
    """Wait for the sends in flight; a failed one raises its KafkaError."""
    await asyncio.gather(*pending)
    pending.clear()


# -- command line ------------------------------------------------------------------------

_DESCRIPTION = """\
Feed recorded call events into Kafka (topic CALLSTREAM_TOPIC_EVENTS, default call-events,
on CALLSTREAM_KAFKA_BOOTSTRAP), for the processor to apply as if they happened live.

FILE is either JSON lines of contract events, passed through unchanged and keyed by
queue_id (call.*) or agent_id (agent.*), or an Asterisk queue_log, mapped to contract
events as docs/queue_log.md describes. Event ids come from the file's content: replaying
a file twice changes nothing. A line that cannot be used is reported with its number and
skipped; the summary counts them by reason."""

_EPILOG = """\
For history, run the processor with CALLSTREAM_CLOCK=event, so that its windows follow
the events' time rather than the wall clock; or replay with --shift-to-now to a processor
on the default CALLSTREAM_CLOCK=wall.

A live Asterisk queue_log: callstream replay --follow /var/log/asterisk/queue_log
(see "Feeding a live Asterisk" in the README).

exit status: 0 done (skipped lines included), 1 Kafka failed, 2 FILE missing or unreadable"""


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a speed: 0, 1 or a factor like 10")
    return value


def _keys(text: str) -> frozenset[str]:
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` command to the ``callstream`` command line."""
    parser = subparsers.add_parser(
        "replay",
        help="feed a JSON lines file or an Asterisk queue_log into Kafka",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        help="JSON lines or Asterisk queue_log; a .gz file is read decompressed",
    )
    parser.add_argument(
        "--format",
        choices=["auto", "jsonl", "queue_log"],
        default="auto",
        help="what FILE holds; auto (default): JSON lines if its first non-empty line "
        "starts with '{', a queue_log otherwise",
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=0.0,
        metavar="N",
        help="0 (default): as fast as possible; 1: in real time, spaced like the events' "
        "timestamps; N: N times faster than real time",
    )
    parser.add_argument(
        "--shift-to-now",
        action="store_true",
        help="move every event time by one offset so that the latest event is now, for a "
        "processor on CALLSTREAM_CLOCK=wall; JSON lines are then re-encoded. Event ids do "
        "not change: events the processor already applied are not applied again",
    )
    parser.add_argument(
        "--callback-keys",
        type=_keys,
        default=frozenset(),
        metavar="KEYS",
        help="queue_log only: comma-separated EXITWITHKEY keys (e.g. 1,#) with which a caller "
        "asks to be called back: call.callback_accepted; other keys: call.abandoned. "
        "Default: none",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep FILE open and send lines as they are written, as tail -F reads a live "
        "Asterisk queue_log: through rotation and truncation, until SIGTERM or Ctrl-C. Its "
        "position is saved once Kafka acknowledged the lines, so a restart resumes where it "
        "stopped, sending no line twice and skipping none. No --speed or --shift-to-now",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="STATE",
        help="with --follow: the file keeping the position; default .NAME.callstream-position "
        "next to FILE (its directory must then be writable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``callstream replay``; returns the exit status."""
    path: Path = args.file
    if args.follow and (args.speed or args.shift_to_now):
        print("callstream replay: --follow sends lines as they are written: "
              "--speed and --shift-to-now do not apply", file=sys.stderr)
        return 2
    if args.state and not args.follow:
        print("callstream replay: --state is the position of --follow", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"callstream replay: {path}: no such file", file=sys.stderr)
        return 2
    if args.follow:
        from stream.tools.follow import (
            run_follow,  # follow builds on this module: imported when needed
        )

        return run_follow(args)
    settings = Settings()
    try:
        report = asyncio.run(
            replay_file(
                path,
                settings,
                fmt=args.format,
                speed=args.speed,
                shift_to_now=args.shift_to_now,
                callback_keys=args.callback_keys,
            )
        )
    except OSError as exc:
        print(f"callstream replay: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(
            f"callstream replay: Kafka at {settings.kafka_bootstrap} "
            f"(CALLSTREAM_KAFKA_BOOTSTRAP) failed: {exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "callstream replay: interrupted; replaying again is safe (same event ids)",
            file=sys.stderr,
        )
        return 130
    print(report.summary(settings.topic_events))
    return 0
