"""Running a long-lived command until SIGINT or SIGTERM asks it to finish cleanly.

The first signal sets ``stop``: the command finishes its batch, commits and returns. Whatever
hangs meanwhile (a broker that does not answer, a thread stuck in a system call), the process
ends within ``STOP_DEADLINE_SECONDS`` of that signal: the command is cancelled at
``CANCEL_AFTER_SECONDS``, and the process exits without further ado at the deadline. A
second signal cancels at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
#: An orchestrator's grace period is often 10 s: end well inside it.
STOP_DEADLINE_SECONDS = 9.0
CANCEL_AFTER_SECONDS = 6.0
#: Exit status when the deadline ended the process.
FORCED_EXIT_STATUS = 1


def _exit_now(deadline: float) -> None:
    # Runs in a timer thread: the event loop itself may be what hangs.
    sys.stderr.write(f"callstream: did not stop within {deadline:g} s of the signal; "
                     "exiting anyway\n")
    sys.stderr.flush()
    os._exit(FORCED_EXIT_STATUS)


def run_until_signalled(main: Coroutine[Any, Any, None], stop: asyncio.Event, *,
                        cancel_after: float = CANCEL_AFTER_SECONDS,
                        deadline: float = STOP_DEADLINE_SECONDS) -> None:
    """Run ``main``; SIGINT/SIGTERM set ``stop`` so it can finish its batch and commit, and
    the process ends within ``deadline`` seconds of the first signal whatever happens."""
    watchdog: list[threading.Timer] = []

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel(why: str) -> None:
            if not task.done():
                log.warning("%s; cancelling what is left", why)
                task.cancel()

        def on_signal() -> None:
            if stop.is_set():  # asked twice: do not wait any longer
                cancel("asked again to stop")
                return
            stop.set()
            loop.call_later(cancel_after, cancel, f"still stopping after {cancel_after:g} s")
            timer = threading.Timer(deadline, _exit_now, (deadline,))
            timer.daemon = True
            timer.start()
            watchdog.append(timer)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            await main
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
            task.uncancel()  # cancelled by us, on the way out: a stop, not an error

    try:
        asyncio.run(wrapper())
    finally:
        for timer in watchdog:
            timer.cancel()
