"""The follower's reading, without Kafka: what it sends as a file grows, turns and restarts.

It runs in the test's own event loop, so file changes made between two awaits happen, as far
as it can tell, all at once between two of its looks: the hard cases are deterministic.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from stream.tools.follow import Follower, FollowReport, FollowStatus
from stream.tools.lines import line_mapper


class FakeProducer:
    """Records what is sent; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append(json.loads(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@asynccontextmanager
async def following(log: Path, producer: FakeProducer) -> AsyncIterator[FollowReport]:
    report = FollowReport(log, "queue_log")
    follower = Follower(log, log.with_name("state"), line_mapper("queue_log"), producer,  # type: ignore[arg-type]
                        "events", report, FollowStatus(io.StringIO(), report))
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        yield report
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


def line(second: int, call: str, event: str, queue: str = "sales", agent: str = "NONE") -> str:
    return f"{1795338000 + second}|{call}|{queue}|{agent}|{event}|||1\n"


def queued(producer: FakeProducer) -> list[str]:
    return [e["call_id"] for e in producer.sent if e["type"] == "call.queued"]


async def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log, producer = tmp_path / "queue_log", FakeProducer()
    first, second = line(1, "c1", "ENTERQUEUE"), line(2, "c2", "ENTERQUEUE")
    log.write_bytes(b"\xef\xbb\xbf" + (first + second[:9]).encode())
    async with following(log, producer) as report:
        await until(lambda: report.lines == 1)
        await asyncio.sleep(0.5)
        assert queued(producer) == ["c1"]
        with log.open("a") as file:
            file.write(second[9:])
        await until(lambda: report.lines == 2)
    assert queued(producer) == ["c1", "c2"]


async def test_truncated_and_written_past_the_offset_between_two_looks(tmp_path: Path) -> None:
    log, producer = tmp_path / "queue_log", FakeProducer()
    log.write_text(line(1, "c1", "ENTERQUEUE"))
    async with following(log, producer) as report:
        await until(lambda: report.lines == 1)
        log.write_text(line(2, "c2", "ENTERQUEUE") + line(3, "c3", "ENTERQUEUE"))
        await until(lambda: report.lines == 3)
    assert (queued(producer), report.truncations) == (["c1", "c2", "c3"], 1)


async def test_a_rotated_file_is_read_to_its_end_even_a_partial_last_line(tmp_path: Path) -> None:
    log, producer = tmp_path / "queue_log", FakeProducer()
    log.write_text(line(1, "c1", "ENTERQUEUE"))
    async with following(log, producer) as report:
        await until(lambda: report.lines == 1)
        with log.open("a") as file:
            file.write(line(2, "c2", "ENTERQUEUE") + line(3, "c3", "ENTERQUEUE").rstrip("\n"))
        log.rename(tmp_path / "queue_log.1")
        log.write_text(line(4, "c4", "ENTERQUEUE"))
        await until(lambda: report.lines == 4)
    assert (queued(producer), report.rotations) == (["c1", "c2", "c3", "c4"], 1)


async def test_a_restart_sends_nothing_twice_and_remembers_the_agents(tmp_path: Path) -> None:
    log, producer = tmp_path / "queue_log", FakeProducer()
    log.write_text(line(1, "NONE", "ADDMEMBER", "sales", "SIP/1") + line(2, "c1", "ENTERQUEUE"))
    async with following(log, producer) as report:
        await until(lambda: report.lines == 2)
    with log.open("a") as file:  # written while stopped
        file.write(line(3, "NONE", "ADDMEMBER", "support", "SIP/1") + line(4, "c2", "ENTERQUEUE"))
    async with following(log, producer) as report:
        await until(lambda: report.lines == 2)
        await asyncio.sleep(0.3)
    assert queued(producer) == ["c1", "c2"]
    states = [e["queues"] for e in producer.sent if e["type"] == "agent.state"]
    assert states == [["sales"], ["sales", "support"]]  # the first file's membership kept
