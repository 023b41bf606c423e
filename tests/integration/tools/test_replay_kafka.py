"""``callstream replay`` into a real Kafka (tansu): JSON lines, queue_log, the command line."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from stream.config import Settings
from stream.tools import replay
from stream.tools.broker import EmbeddedBroker
from stream.tools.lines import Pacer, event_time
from stream.tools.queue_log import QueueLogMapper, Skip
from stream.tools.replay import Progress, replay_file

SAMPLE = Path(__file__).parent.parent.parent / "data" / "queue_log.sample"
ROOT = Path(__file__).parent.parent.parent.parent

JSONL_EVENTS = [
    # Odd spacing on purpose: the value must be these bytes, not a re-encoding.
    (
        b'{"event_id": "e1", "type": "call.queued", "ts": "2026-11-22T10:00:00.000Z",'
        b' "call_id": "c1", "queue_id": "sales", "caller": "+33612345678"}'
    ),
    (
        b'{"event_id":"e2","type":"agent.state","ts":"2026-11-22T10:00:01Z",'
        b'"agent_id":"SIP:1001","state":"busy","queues":["sales"]}'
    ),
    (
        b'{"event_id":"e3","type":"call.answered","ts":1795341602.5,'
        b'"call_id":"c1","queue_id":"sales","agent_id":"SIP:1001"}'
    ),
    # A bad id is the processor's to dead-letter: passed through.
    (
        b'{"event_id":"e4","type":"call.ended","ts":"2026-11-22T10:05:00Z",'
        b'"call_id":"c1","queue_id":"bad queue"}'
    ),
]
JSONL_BAD = {
    b"not json at all": "not a JSON object",
    b'["a", "list"]': "not a JSON object",
    b'{"event_id":"e5","type":"call.queued","call_id":"c2"}': "no queue_id (the Kafka key)",
    b'{"event_id":"e6","type":"agent.state","state":"away"}': "no agent_id (the Kafka key)",
    b'{"event_id":"e7","type":"hello"}': "type is not call.* or agent.*: no Kafka key",
}


def settings_for(broker: EmbeddedBroker) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, topic_events=f"replay-{uuid.uuid4().hex}")


async def consume(bootstrap: str, topic: str, expected: int) -> list[ConsumerRecord[Any, Any]]:
    """Every message of the topic: waits for ``expected``, then checks that no more come."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


def write_jsonl(path: Path) -> Path:
    lines = [JSONL_EVENTS[0], b"", *JSONL_BAD, *JSONL_EVENTS[1:], b"   "]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_jsonl_passes_events_through_byte_for_byte(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    path = write_jsonl(tmp_path / "events.jsonl")
    err = io.StringIO()
    report = await replay_file(path, settings, err=err)

    assert report.format == "jsonl"
    assert report.events == 4
    assert report.produced == Counter(
        {"call.queued": 1, "agent.state": 1, "call.answered": 1, "call.ended": 1}
    )
    assert report.skipped == Counter(JSONL_BAD.values())
    for lineno, reason in zip(range(3, 8), JSONL_BAD.values(), strict=True):
        assert f"{path}:{lineno}: skipped: {reason}" in err.getvalue()

    records = await consume(broker.bootstrap, settings.topic_events, 4)
    assert sorted((r.key, r.value) for r in records) == sorted(
        [
            (b"sales", JSONL_EVENTS[0]),
            (b"SIP:1001", JSONL_EVENTS[1]),
            (b"sales", JSONL_EVENTS[2]),
            (b"bad queue", JSONL_EVENTS[3]),
        ]
    )
    # One key, one partition: a queue's events keep their order.
    assert len({r.partition for r in records if r.key == b"sales"}) == 1


async def test_queue_log_twice_gives_the_same_events(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    first = await replay_file(SAMPLE, settings, err=io.StringIO())
    second = await replay_file(SAMPLE, settings, fmt="queue_log", err=io.StringIO())

    assert first.format == second.format == "queue_log"
    assert first.events == second.events == 61
    assert first.skipped == Counter(
        {"too few fields": 1, "bad epoch": 1, "unknown event FOOBAR": 1}
    )
    assert first.not_mapped == Counter({"QUEUESTART": 1, "DID": 1, "RINGNOANSWER": 1})

    records = await consume(broker.bootstrap, settings.topic_events, 2 * first.events)
    assert len(records) == 2 * first.events
    by_id: dict[str, list[bytes]] = {}
    for record in records:
        event = json.loads(record.value)
        expected_key = event["agent_id"] if event["type"] == "agent.state" else event["queue_id"]
        assert record.key == expected_key.encode()
        by_id.setdefault(event["event_id"], []).append(record.value)
    assert all(len(values) == 2 and values[0] == values[1] for values in by_id.values())

    mapper = QueueLogMapper()
    mapped = [mapper.map_line(line) for line in SAMPLE.read_text().splitlines()]
    expected = [e for events in mapped if not isinstance(events, Skip) for e in events]
    assert sorted(by_id) == sorted(e["event_id"] for e in expected)
    assert {
        json.loads(values[0])["event_id"]: json.loads(values[0]) for values in by_id.values()
    } == {e["event_id"]: e for e in expected}


async def test_gzipped_queue_log(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = settings_for(broker)
    path = tmp_path / "queue_log.1.gz"
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    report = await replay_file(path, settings, err=io.StringIO())
    assert (report.format, report.events, report.lines) == ("queue_log", 61, 57)


async def test_speed_spaces_events_like_their_timestamps(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    path = tmp_path / "paced.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"p{n}",
                    "type": "call.queued",
                    "ts": 1795428000 + n,
                    "call_id": f"c{n}",
                    "queue_id": "sales",
                }
            )
            + "\n"
            for n in range(3)
        )
    )
    started = time.monotonic()
    await replay_file(path, settings, speed=0, err=io.StringIO())
    unpaced = time.monotonic() - started
    started = time.monotonic()
    await replay_file(path, settings, speed=4, err=io.StringIO())  # 2 s of history
    paced = time.monotonic() - started
    assert 0.3 <= paced - unpaced < 3  # 0.5 s of pacing, less what overlaps the start-up


def parse(*argv: str) -> argparse.Namespace:
    """Until stream/cli.py exists: the ``callstream`` parser with only ``replay``."""
    parser = argparse.ArgumentParser(prog="callstream")
    replay.register(parser.add_subparsers(required=True))
    return parser.parse_args(argv)


async def test_command_shifts_to_now(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"replay-{uuid.uuid4().hex}"
    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("CALLSTREAM_TOPIC_EVENTS", topic)
    args = parse("replay", str(SAMPLE), "--shift-to-now", "--callback-keys", "1,#")
    before = time.time()
    # In a thread: the command runs its own event loop, as it does under the console script.
    assert await asyncio.to_thread(args.func, args) == 0
    out = capsys.readouterr()
    assert f"produced 61 events to {topic}" in out.out
    assert "call.callback_accepted 1" in out.out
    assert "skipped 3 lines: too few fields 1, bad epoch 1, unknown event FOOBAR 1" in out.out
    assert f"{SAMPLE}:22: skipped: too few fields" in out.err

    records = await consume(broker.bootstrap, topic, 61)
    times = sorted(datetime.fromisoformat(json.loads(r.value)["ts"]).timestamp() for r in records)
    assert before - 1 <= times[-1] <= time.time() + 1
    # The sample's events span +1 s to +510 s; ts keep milliseconds.
    assert times[-1] - times[0] == pytest.approx(509, abs=0.002)


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = parse("replay", str(tmp_path / "nope.log"))
    assert args.func(args) == 2
    assert "nope.log: no such file" in capsys.readouterr().err


async def test_unreachable_kafka_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    args = parse("replay", str(SAMPLE))
    assert await asyncio.to_thread(args.func, args) == 1
    assert "CALLSTREAM_KAFKA_BOOTSTRAP" in capsys.readouterr().err


def test_help_names_every_option() -> None:
    code = (
        "import argparse; from stream.tools import replay; "
        "p = argparse.ArgumentParser(prog='callstream'); replay.register(p.add_subparsers()); "
        "p.parse_args(['replay', '--help'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    for option in (
        "FILE",
        "--format",
        "--speed",
        "--shift-to-now",
        "--callback-keys",
        "CALLSTREAM_CLOCK=event",
        "exit status",
    ):
        assert option in done.stdout


def test_bad_speed_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("replay", str(SAMPLE), "--speed", "-1")
    assert "not a speed" in capsys.readouterr().err


# -- pacing and progress, without Kafka -------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_follows_event_time_at_the_given_speed() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock)
    assert pacer.delay({"ts": "2026-11-22T10:00:00Z"}) == 0
    assert pacer.delay({"ts": "2026-11-22T10:00:10Z"}) == 5
    clock.now += 5
    assert pacer.delay({"ts": "2026-11-22T10:00:12Z"}) == 1
    assert pacer.delay({"ts": "2026-11-22T09:59:00Z"}) == 0  # out of order: not held back
    assert pacer.delay({"ts": "garbage"}) == 0
    assert Pacer(0, clock).delay({"ts": "2026-11-22T10:00:00Z"}) == 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_in_place_on_a_terminal_at_most_four_times_a_second() -> None:
    clock, stream = FakeClock(), Terminal()
    progress = Progress(1000, stream, clock)
    progress.update(10, 10)
    assert stream.getvalue() == ""
    clock.now += 0.25
    progress.update(250, 500)
    clock.now += 0.1
    progress.update(300, 600)
    line = "replay: 250/1,000 lines (25%), 500 events, 2,000 events/s, ETA 0:00:01"
    assert stream.getvalue() == "\r" + line
    progress.note("x:3: skipped: bad epoch")
    progress.close()
    assert stream.getvalue() == f"\r{line}\r{' ' * len(line)}\rx:3: skipped: bad epoch\n"


def test_progress_logs_a_line_every_few_seconds_elsewhere() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(100, stream, clock)
    for _ in range(20):
        clock.now += 1
        progress.update(50, 50)
    assert stream.getvalue().count("\n") == 4
    assert "\r" not in stream.getvalue()


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-22T10:00:00.250Z", 1795341600.25),
        ("2026-11-22T11:00:00+01:00", 1795341600.0),
        (1795428000, 1795428000.0),
        (1795428000000, None),  # milliseconds: would pace for millennia
        ("2026-11-22T10:00:00", None),  # no offset
        (float("nan"), None),
        (True, None),
        (None, None),
    ],
)
def test_event_time(ts: object, expected: float | None) -> None:
    assert event_time({"ts": ts}) == expected
