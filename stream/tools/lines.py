"""A log's lines into Kafka records, and their sending: what replay (a whole file) and
follow (a growing one) share.

Event ids come from the file's content, so sending a line again changes nothing: the
processor applies each event once. A line that cannot be used is reported and skipped;
contract validation beyond what the Kafka key needs is left to the processor, which
dead-letters bad events.
"""

from __future__ import annotations

import asyncio
import codecs
import gzip
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from aiokafka import AIOKafkaProducer

from stream.tools.queue_log import Event, QueueLogMapper, Skip, format_ts
from stream.tools.sends import Sends

Format = Literal["jsonl", "queue_log"]

#: Skipped lines reported one by one; past this they are only counted in the summary.
REPORT_LIMIT = 20


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


def shifted(record: Record, seconds: float) -> Record:
    """The record with its ``ts`` moved by ``seconds``; re-encoded, as its bytes change."""
    moment = event_time(record.event)
    if moment is None:
        return record
    event = record.event | {"ts": format_ts(moment + seconds)}
    return Record(record.key, _encode(event), event)


# -- sending -----------------------------------------------------------------------------


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
    sends = Sends(producer, topic)
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
                    await sends.settle()
                    await asyncio.sleep(delay)
                await sends.send(record.value, record.key)
                report.produced[str(record.event["type"])] += 1
            await sends.settle_if_full()
            progress.update(lineno, report.events)
        await sends.settle()
    finally:
        progress.close()
