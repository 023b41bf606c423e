"""What a test asks of a running processor over HTTP (status, JSON, metrics), and polling
until it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


async def http_status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def http_ok(url: str) -> bool:
    return await http_status(url) == 200


async def http_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def http_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20,
                     every: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail the test with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


async def queue_figures(base_url: str, queue_id: str) -> dict[str, Any] | None:
    snapshot = await http_json(base_url + "/api/queues")
    for queue in snapshot["queues"]:
        if queue["queue_id"] == queue_id:
            return dict(queue)
    return None


async def totals_match(url: str, expected: dict[str, dict[str, int]]) -> bool:
    """True once every queue's totals equal the expected counts (no more, no fewer)."""
    try:
        snapshot = await http_json(url + "/api/queues")
    except aiohttp.ClientError:
        return False
    got = {q["queue_id"]: {k: q["totals"][k] for k in next(iter(expected.values()))}
           for q in snapshot["queues"]}
    return got == expected


async def metric_value(url: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(await http_text(url + "/metrics")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total
