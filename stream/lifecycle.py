"""Running a long-lived command until SIGINT or SIGTERM asks it to finish cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def run_until_signalled(main: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run ``main``; SIGINT/SIGTERM set ``stop`` so it can finish its batch and commit."""

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main

    asyncio.run(wrapper())
