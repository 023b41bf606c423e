"""``callstream replay FILE``: recorded history (JSON lines or an Asterisk queue_log) into Kafka.

The lines are read and sent as :mod:`stream.tools.lines` says; ``--follow`` hands the file
to :mod:`stream.tools.follow` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal, TextIO

from aiokafka.errors import KafkaError

from stream.config import Settings
from stream.ingest.kafka import ensure_topics, make_producer
from stream.tools.follow import run_follow
from stream.tools.lines import (
    Format,
    Pacer,
    ReplayReport,
    count_lines,
    detect_format,
    event_time,
    produce_lines,
    read_records,
)
from stream.tools.queue_log import Skip
from stream.tools.status import StatusLine, clock_time

# -- progress ----------------------------------------------------------------------------


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
            f"{events:,} events, {events / elapsed:,.0f} events/s, ETA {clock_time(eta)}"
        )

    def note(self, message: str) -> None:
        """A message on a line of its own, clear of the progress line."""
        self._line.note(message)

    def close(self) -> None:
        """Erase the progress line of a terminal."""
        self._line.close()


# -- producing ---------------------------------------------------------------------------


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
