"""A signalled stop ends the process in time, whatever hangs: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = """
import asyncio, time
from stream.signals import run_until_signalled

async def main(stop):
    print("started", flush=True)
    await stop.wait()
    {on_stop}

stop = asyncio.Event()
run_until_signalled(main(stop), stop, cancel_after=0.5, deadline=1.5)
print("returned", flush=True)
"""

HANGS = {
    # Finishes its work in time: a clean stop.
    "clean": "await asyncio.sleep(0.1)",
    # Waits on something that never answers, but can be cancelled.
    "cancellable": "await asyncio.sleep(3600)",
    # Swallows the cancellation and goes on waiting.
    "deaf": textwrap.dedent("""
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass""").replace("\n", "\n    "),
    # Blocks the event loop itself (a synchronous call that hangs).
    "blocked": "time.sleep(3600)",
}


def start(on_stop: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT.format(on_stop=on_stop)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    return process


@pytest.mark.parametrize(("hang", "status", "returned"), [
    ("clean", 0, True), ("cancellable", 0, True), ("deaf", 1, False), ("blocked", 1, False),
])
def test_the_process_ends_by_the_deadline_whatever_hangs(hang: str, status: int,
                                                         returned: bool) -> None:
    process = start(HANGS[hang])
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    took = time.monotonic() - started
    assert process.returncode == status, err
    assert ("returned" in out) == returned
    assert "Traceback" not in err
    if hang == "clean":
        assert took < 0.5
    elif hang == "cancellable":
        assert 0.4 < took < 1.4
    else:
        assert 1.4 < took < 2.5
        assert "did not stop within 1.5 s" in err


def test_a_second_signal_cancels_at_once() -> None:
    process = start(HANGS["cancellable"])
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - started < 0.35
    assert process.returncode == 0 and "returned" in out, err
