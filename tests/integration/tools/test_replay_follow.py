"""``callstream replay --follow``: a live queue_log, rotated, truncated and restarted, into a
running processor, with exact figures at the end and no line sent twice.

The material is the sample queue_log, copied six times: each copy with call ids of its own and
re-timed to the last hour (events older than 24 h would be stale). One copy's figures are
worked out in ``test_replay_e2e.py``; the processor must show exactly six times them.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import (
    InProcessProcessor,
    http_json,
    read_topic,
    settings_env,
    unique_settings,
    wait_until,
)
from stream.config import Settings
from stream.tools.broker import EmbeddedBroker

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "queue_log.sample"
T0 = 1795338000
COPIES = 6
#: One copy of the sample, per queue (see SALES_ALL and SUPPORT_ALL in test_replay_e2e.py).
ONE_COPY = {
    "sales": {"offered": 6, "answered": 3, "answered_in_sla": 2, "abandoned": 3,
              "short_abandoned": 1, "transferred_out": 0},
    "support": {"offered": 7, "answered": 3, "answered_in_sla": 2, "abandoned": 4,
                "short_abandoned": 1, "transferred_out": 0},
}


def copy_of_sample(k: int, base: int) -> list[bytes]:
    """The sample's lines with call ids ``k-...`` and times moved so that it starts at ``base``."""
    lines = []
    for line in SAMPLE.read_text().splitlines():
        fields = line.split("|")
        if len(fields) >= 5:
            if fields[0].isdigit():
                fields[0] = str(int(fields[0]) - T0 + base)
            if fields[1] != "NONE":
                fields[1] = f"{k}-{fields[1]}"
        lines.append(("|".join(fields) + "\n").encode())
    return lines


class Follower:
    """``callstream replay --follow`` as a child process, stopped by SIGTERM."""

    def __init__(self, log: Path, state: Path, settings: Settings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "replay", "--follow", str(log),
             "--state", str(state)],
            env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def stop(self) -> tuple[int, int]:
        """SIGTERM; the lines and events it reports having sent."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=10)
        assert time.monotonic() - started < 5, "the follower took too long to stop"
        assert self.process.returncode == 0, err
        lines = re.search(r"([\d,]+) lines sent", out)
        events = re.search(r"produced ([\d,]+) events", out)
        assert lines and events, out + err
        return int(lines[1].replace(",", "")), int(events[1].replace(",", ""))


async def sent_through(state: Path, log: Path, timeout: float = 20) -> None:
    """Until the saved position is the end of ``log`` as it is now: all of it acknowledged."""
    st = log.stat()
    expected = (st.st_dev, st.st_ino, st.st_size)

    async def saved() -> bool:
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        return (data["device"], data["inode"], data["offset"]) == expected

    await wait_until(saved, timeout)


def append(log: Path, lines: list[bytes]) -> None:
    with log.open("ab") as file:
        file.write(b"".join(lines))


async def test_follow_through_rotation_truncation_and_restarts(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time())
    copies = [copy_of_sample(k, now - 3500 + 550 * k) for k in range(COPIES)]
    log, state = tmp_path / "queue_log", tmp_path / "position.json"
    written = 0
    sent: list[tuple[int, int]] = []

    async with InProcessProcessor(settings) as processor:
        # A live file with a partial last line: only complete lines are sent.
        first, partial = b"".join(copies[0][:30]), copies[0][30]
        log.write_bytes(first + partial[:10])
        follower = Follower(log, state, settings)
        await wait_until(lambda: offset_is(state, len(first)), timeout=20)
        await asyncio.sleep(0.5)
        assert await offset_is(state, len(first))
        append(log, [partial[10:], *copies[0][31:], *copies[1][:25]])
        await sent_through(state, log)
        sent.append(follower.stop())

        # Stopped: lines appended, then the file rotated and a new one started.
        append(log, copies[1][25:40])
        log.rename(tmp_path / "queue_log.1")
        log.write_bytes(b"".join(copies[1][40:]))
        follower = Follower(log, state, settings)
        await sent_through(state, log)

        # Running: rotated with a call under way (ENTERQUEUE before, CONNECT after), and lines
        # written to the renamed file before Asterisk reopens the log: they are sent too.
        append(log, copies[2][:10])
        await sent_through(state, log)
        append(log, copies[2][10:20])
        log.rename(tmp_path / "queue_log.2")
        append(tmp_path / "queue_log.2", copies[2][20:30])
        log.write_bytes(b"".join(copies[2][30:]))
        await sent_through(state, log)

        # Running: truncated (copytruncate) and written again, longer than before.
        log.write_bytes(b"".join(copies[3]))
        await sent_through(state, log)
        sent.append(follower.stop())

        # Restarted with nothing new, then lines as they come.
        follower = Follower(log, state, settings)
        await asyncio.sleep(1)
        append(log, copies[4])
        await sent_through(state, log)
        sent.append(follower.stop())

        # Truncated while stopped and written again, shorter: read from its start.
        log.write_bytes(b"".join(copies[5]))
        follower = Follower(log, state, settings)
        await sent_through(state, log)
        sent.append(follower.stop())
        written = sum(len(lines) for lines in copies)

        expected = {queue: {name: COPIES * count for name, count in figures.items()}
                    for queue, figures in ONE_COPY.items()}

        async def exact() -> bool:
            return totals(await http_json(processor.url + "/api/queues")) == expected

        try:
            await wait_until(exact, timeout=15)
        finally:
            print(totals(await http_json(processor.url + "/api/queues")))

    # The follower's own counts: every line written was sent once, none twice.
    assert sum(lines for lines, _ in sent) == written
    events = sum(count for _, count in sent)
    records = await read_topic(broker.bootstrap, settings.topic_events, events, timeout=10)
    ids = Counter(json.loads(record.value)["event_id"] for record in records)
    assert len(records) == events
    assert [event_id for event_id, n in ids.items() if n > 1] == []


async def offset_is(state: Path, offset: int) -> bool:
    try:
        return bool(json.loads(state.read_text())["offset"] == offset)
    except (OSError, ValueError):
        return False


def totals(snapshot: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {q["queue_id"]: {name: q["totals"][name] for name in ONE_COPY["sales"]}
            for q in snapshot["queues"]}


def test_follow_refuses_pacing_and_shifting(tmp_path: Path, capsys: Any) -> None:
    from stream.cli import main

    log = tmp_path / "queue_log"
    log.write_text("")
    for option in (["--speed", "2"], ["--shift-to-now"]):
        assert main(["replay", "--follow", *option, str(log)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--follow" in err and "--speed" in err
