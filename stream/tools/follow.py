"""``callstream replay --follow FILE``: a live queue_log into Kafka, read as ``tail -F`` does.

Position. Once the broker has acknowledged every line up to a byte offset, that offset is saved
with the file's identity (device, inode) and a digest of the bytes just before it, so a restart
sends only the lines after it:

- the same file, still holding the same bytes before the offset: resume at the offset;
- the file was rotated while the follower was stopped: the saved file is looked for beside the
  log by its identity, finished from the offset, and the new log is then read from its start;
- the file was truncated or replaced: read from its start (its lines are new).

While running, a new file at the path (rotation: renamed, then created again) is switched to
once the old one is read to its end; a file shorter than the offset, or whose bytes before the
offset changed, was truncated and is read again from its start. A last line without its
newline is not sent until it is complete (or its file has been rotated away).

The queue_log mapping remembers agents across lines (their queues and state), so one mapper
serves every file in turn; on a restart the lines before the offset are mapped again, without
sending, to rebuild that memory. Only the file holding the position is read for that.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.config import Settings
from stream.ingest.kafka import ensure_topics, make_producer
from stream.signals import run_until_signalled
from stream.tools.lines import (
    Format,
    LineMapper,
    Pacer,
    Record,
    ReplayReport,
    detect_format,
    line_mapper,
    produce_lines,
)
from stream.tools.queue_log import Skip
from stream.tools.status import StatusLine

#: Seconds between looks at a file with nothing new: how soon a line appears in Kafka.
POLL_SECONDS = 0.2
#: Bytes read at a time; each read's lines are sent, acknowledged and saved together.
READ_BYTES = 1 << 20
#: Bytes before the offset whose digest tells the same file from a rewritten one.
TAIL_BYTES = 64


@dataclass(frozen=True, slots=True)
class Position:
    """How far a file was sent: its identity, a byte offset, a digest of the bytes before it."""

    device: int
    inode: int
    offset: int
    tail: str

    @classmethod
    def load(cls, path: Path) -> Position | None:
        """The saved position; None when there is none yet (or it cannot be read)."""
        try:
            data = json.loads(path.read_text())
            return cls(int(data["device"]), int(data["inode"]), int(data["offset"]),
                       str(data["tail"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old position or the new one, never half."""
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps({"device": self.device, "inode": self.inode,
                                         "offset": self.offset, "tail": self.tail}))
        os.replace(temporary, path)


def default_state_path(log: Path) -> Path:
    """``.NAME.callstream-position`` next to the log: no logrotate pattern for it matches."""
    return log.with_name(f".{log.name}.callstream-position")


def _digest(before: bytes) -> str:
    return hashlib.sha256(before).hexdigest()


def _tail_digest(fd: int, offset: int) -> str:
    """The digest of the file's bytes just before ``offset``, as it is now."""
    start = max(0, offset - TAIL_BYTES)
    return _digest(os.pread(fd, offset - start, start))


@dataclass(slots=True)
class FollowReport(ReplayReport):
    """What a follower did: ``lines`` are the complete lines it read and sent."""

    rotations: int = 0
    truncations: int = 0

    def summary(self, topic: str) -> str:
        """The closing lines of ``callstream replay --follow``."""
        _, *rest = ReplayReport.summary(self, topic).splitlines()  # slots: no bare super()
        head = (f"followed {self.path} ({self.format}) for {self.seconds:.1f} s: "
                f"{self.lines:,} lines sent, {self.rotations} rotations, "
                f"{self.truncations} truncations")
        return "\n".join([head, *rest])


class FollowStatus:
    """The follower's one status line; it stays between batches, :meth:`end` erases it."""

    def __init__(self, stream: TextIO, report: FollowReport) -> None:
        self._line = StatusLine(stream)
        self._report = report
        self._shown = ""
        self.where = ""

    def update(self, lines: int, events: int) -> None:
        """Redraw, if due and changed, with the follower's totals (``lines`` is a line number
        in a file): an idle follower does not fill a service's log with the same line."""
        text = (f"follow: {self._report.lines:,} lines sent, {self._report.events:,} events; "
                f"{self.where}")
        if text != self._shown and self._line.due():
            self._line.show(text)
            self._shown = text

    def note(self, message: str) -> None:
        self._line.note(message)

    def close(self) -> None:
        """Kept: the next batch draws on the same line."""

    def end(self) -> None:
        self._line.close()


class Follower:
    """Tails one log path across rotations and truncations, saving its position as it goes."""

    def __init__(self, path: Path, state: Path, mapped: LineMapper, producer: AIOKafkaProducer,
                 topic: str, report: FollowReport, status: FollowStatus) -> None:
        self._path = path
        self._state = state
        self._mapped = mapped
        self._producer = producer
        self._topic = topic
        self._report = report
        self._status = status
        self._fd = -1
        self._identity = (0, 0)
        self._offset = 0
        self._before = b""  # the file's last TAIL_BYTES before the offset, as read
        self._lineno = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Send lines as they are written until ``stop`` is set; the position is then saved."""
        self._resume()
        try:
            while not stop.is_set():
                if await self._send_available(stop):
                    continue
                if self._rotated():
                    await self._switch()
                    continue
                self._status.where = f"at line {self._lineno:,} of {self._path}, waiting"
                self._status.update(self._report.lines, self._report.events)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        finally:
            os.close(self._fd)

    # -- where to start ------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self._identity = (st.st_dev, st.st_ino)
        self._offset = 0
        self._before = b""
        self._lineno = 0

    def _resume(self) -> None:
        self._open(self._path)
        saved = Position.load(self._state)
        if saved is None:
            return
        if (saved.device, saved.inode) != self._identity:
            rotated = self._find(saved)
            if rotated is None:
                self._status.note(f"{self._path}: the file of the saved position is gone; "
                                  "reading the log from its start")
                return
            self._status.note(f"{self._path}: rotated while stopped; finishing {rotated} first")
            self._open(rotated)
        if os.fstat(self._fd).st_size < saved.offset or _tail_digest(
                self._fd, saved.offset) != saved.tail:
            self._status.note(f"{self._path}: truncated or replaced while stopped; "
                              "reading it from its start")
            self._open(self._path)
            return
        self._rebuild(saved.offset)

    def _find(self, saved: Position) -> Path | None:
        """The rotated file (``queue_log.1``, ...) that holds the saved position, if still there."""
        for entry in os.scandir(self._path.parent):
            if entry.name.startswith(self._path.name) and entry.is_file():
                st = entry.stat()
                if (st.st_dev, st.st_ino) == (saved.device, saved.inode):
                    return Path(entry.path)
        return None

    def _rebuild(self, offset: int) -> None:
        """Map the lines already sent again, unsent: the mapper's memory of agents comes back."""
        while self._offset < offset:
            block = os.pread(self._fd, min(READ_BYTES, offset - self._offset), self._offset)
            for _ in self._records(block):
                pass
            self._advance(block)

    # -- reading -------------------------------------------------------------------------

    async def _send_available(self, stop: asyncio.Event, final: bool = False) -> bool:
        """Send the complete lines written since the offset; ``final``: the rest, too."""
        sent = False
        while not stop.is_set() or final:
            if self._truncated():
                self._report.truncations += 1
                self._status.note(f"{self._path}: truncated; reading it from its start")
                self._open(self._path)
            block = self._complete_lines(final)
            if not block:
                return sent
            await produce_lines(self._producer, self._topic, self._records(block), self._report,
                                Pacer(0), self._status)
            self._report.lines += block.count(b"\n") + (not block.endswith(b"\n"))
            self._advance(block)
            self._save()
            self._status.where = f"at line {self._lineno:,} of {self._path}"
            self._status.update(self._report.lines, self._report.events)
            sent = True
        return sent

    def _truncated(self) -> bool:
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            return True
        # Cut and written past the offset again between two looks: the bytes before it differ.
        return size > self._offset > 0 and (
            _tail_digest(self._fd, self._offset) != _digest(self._before))

    def _complete_lines(self, final: bool) -> bytes:
        """The bytes from the offset to the last newline (to the end when ``final``)."""
        size = READ_BYTES
        while True:
            data = os.pread(self._fd, size, self._offset)
            end = data.rfind(b"\n") + 1
            if end or len(data) < size:
                return data if final else data[:end]
            size *= 2  # one line longer than a read: read more

    def _records(self, block: bytes) -> Iterable[tuple[int, list[Record] | Skip]]:
        """Each non-empty line of ``block`` (whole lines) mapped, numbered within its file."""
        for raw in block.removesuffix(b"\n").split(b"\n"):
            self._lineno += 1
            if self._lineno == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if line := raw.strip():
                yield self._lineno, self._mapped(line)

    def _rotated(self) -> bool:
        """Whether the path is now another file than the one being read."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return False  # renamed, not yet created again: the old file may still grow
        return (st.st_dev, st.st_ino) != self._identity

    async def _switch(self) -> None:
        """Read the rotated file to its very end, then follow the new one from its start."""
        await self._send_available(asyncio.Event(), final=True)
        self._report.rotations += 1
        self._status.note(f"{self._path}: rotated; following the new file")
        self._open(self._path)
        self._save()

    def _advance(self, block: bytes) -> None:
        # From what was read, not read again: a file rewritten meanwhile must not match.
        self._offset += len(block)
        self._before = (self._before + block[-TAIL_BYTES:])[-TAIL_BYTES:]

    def _save(self) -> None:
        Position(*self._identity, self._offset, _digest(self._before)).save(self._state)


async def follow_file(path: Path, settings: Settings, stop: asyncio.Event, *,
                      fmt: Format | None = None, state: Path | None = None,
                      callback_keys: Iterable[str] = (), err: TextIO) -> FollowReport:
    """Follow ``path`` into ``settings.topic_events`` until ``stop`` is set.

    Raises OSError when the log or the state file cannot be read or written, KafkaError when
    Kafka fails; the position saved is then that of the last lines Kafka acknowledged.
    """
    chosen: Format = fmt or detect_format(path)
    report = FollowReport(path, chosen)
    status = FollowStatus(err, report)
    await ensure_topics(settings, [settings.topic_events])
    producer = make_producer(settings)
    await producer.start()
    started = time.monotonic()
    try:
        follower = Follower(path, state or default_state_path(path),
                            line_mapper(chosen, callback_keys), producer,
                            settings.topic_events, report, status)
        await follower.run(stop)
    finally:
        status.end()
        await producer.stop()
    report.seconds = time.monotonic() - started
    return report


def run_follow(args: argparse.Namespace) -> int:
    """Run ``callstream replay --follow``; returns the exit status."""
    path: Path = args.file
    settings = Settings()
    stop = asyncio.Event()
    reports: list[FollowReport] = []

    async def follow() -> None:
        reports.append(await follow_file(
            path, settings, stop, fmt=None if args.format == "auto" else args.format,
            state=args.state, callback_keys=args.callback_keys, err=sys.stderr))

    try:
        run_until_signalled(follow(), stop)
    except OSError as exc:
        print(f"callstream replay: {path}: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"callstream replay: Kafka at {settings.kafka_bootstrap} "
              f"(CALLSTREAM_KAFKA_BOOTSTRAP) failed: {exc}; the position saved is that of "
              "the lines it acknowledged", file=sys.stderr)
        return 1
    for report in reports:
        print(report.summary(settings.topic_events))
    return 0
