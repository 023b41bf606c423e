"""The wallboard of a real processor (a child process) in a real browser, events produced live.

Debian's chromium, driven by Playwright, reads the page's marks (contract §5) the way a
kiosk would: figures as the page formats them, and ``<body data-stale>`` as the processor
lives, dies (SIGKILL) and comes back on the same port.

``CALLSTREAM_UPDATE_SCREENSHOT=1`` also writes the screenshot to ``docs/wallboard-live.png``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from harness import (
    CHROMIUM,
    NO_CHROMIUM,
    ProcessorProcess,
    http_ok,
    http_status,
    produce,
    queue_figures,
    unique_settings,
    wait_until,
)
from stream.timefmt import rfc3339 as iso
from stream.tools.broker import EmbeddedBroker

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "wallboard-live.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        context = await browser.new_context(
            viewport={"width": 1600, "height": 900}, timezone_id="UTC", locale="en-GB"
        )
        yield await context.new_page()
        await browser.close()


def figure(page: Page, queue_id: str, name: str) -> Locator:
    return page.locator(f'[data-queue="{queue_id}"] [data-figure="{name}"]')


async def expect_figures(page: Page, queue_id: str, texts: dict[str, str],
                         timeout: float = 5000) -> None:
    for name, text in texts.items():
        await expect(figure(page, queue_id, name)).to_have_text(text, timeout=timeout)


def _event(event_id: str, kind: str, ts_ms: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "ts": iso(ts_ms), **fields}


def _call(call: str, kind: str, ts_ms: int, queue: str = "sales", **fields: Any
          ) -> dict[str, Any]:
    return _event(f"{call}-{kind}", kind, ts_ms, call_id=call, queue_id=queue, **fields)


def _agent(agent: str, state: str, ts_ms: int, *queues: str) -> dict[str, Any]:
    return _event(f"{agent}-{state}-{ts_ms}", "agent.state", ts_ms, agent_id=agent,
                  state=state, queues=list(queues))


def first_events(now: int) -> list[dict[str, Any]]:
    """Live traffic of the last minute: two calls waiting in sales, nothing yet in support."""
    s = 1000
    return [
        _agent("a1", "available", now - 60 * s, "sales"),
        _agent("a2", "busy", now - 60 * s, "sales"),
        _agent("a3", "away", now - 60 * s, "support"),
        _call("w2", "call.queued", now - 60 * s),
        _call("w2", "call.answered", now - 25 * s, agent_id="a2"),  # wait 35: not in SLA
        _call("w6", "call.queued", now - 50 * s),
        _call("w6", "call.answered", now - 48 * s, agent_id="a2"),  # wait 2: in SLA
        _call("w1", "call.queued", now - 40 * s),
        _call("w1", "call.answered", now - 30 * s, agent_id="a2"),  # wait 10: in SLA
        _call("w3", "call.queued", now - 20 * s),
        _call("w3", "call.abandoned", now - 10 * s),  # wait 10: not short
        _call("w4", "call.queued", now - 15 * s),  # waiting
        _call("w5", "call.queued", now - 5 * s),  # waiting
    ]


# Sales over 5m: answered 3 (w2, w6, w1), in SLA 2, abandoned 1 (not short).
SALES_FIRST = {
    "waiting": "2",
    "service_level": "50.0%",  # 2 / (3 + 1 - 0)
    "abandon_ratio": "25.0%",  # (1 - 0) / (3 + 1 - 0)
    "asa": "0:15",  # (35 + 2 + 10) / 3 = 15.67 s, shown as whole seconds
    "agents_available": "1",  # a1
    "ewt": "—",  # no leg has ended yet: AHT unknown, so no EWT
}
# Support only has an agent away: no call, so every ratio and mean is absent.
SUPPORT = {
    "waiting": "0",
    "service_level": "—",
    "abandon_ratio": "—",
    "asa": "—",
    "agents_available": "0",
    "ewt": "—",
}
# After a1 answers w4 at exactly 20 s (equal to sla_seconds counts as in SLA):
# answered 4, in SLA 3, abandoned 1.
SALES_SECOND = {
    "waiting": "1",  # w5
    "service_level": "60.0%",  # 3 / (4 + 1 - 0)
    "abandon_ratio": "20.0%",  # 1 / (4 + 1 - 0)
    "asa": "0:16",  # (35 + 2 + 10 + 20) / 4 = 16.75 s
    "agents_available": "0",  # a1 busy
}


async def test_wallboard_follows_a_live_processor_through_a_kill_and_a_restart(
    broker: EmbeddedBroker, page: Page, tmp_path: Path
) -> None:
    settings = unique_settings(broker.bootstrap)
    processes: list[ProcessorProcess] = []
    starting: asyncio.Task[ProcessorProcess] | None = None
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        processes.append(await ProcessorProcess(settings).start())
        timings["first start"] = time.monotonic() - started
        url = processes[0].url
        now = int(time.time() * 1000)
        await produce(settings, first_events(now))

        body = page.locator("body")
        await page.goto(url + "/wallboard")
        await expect_figures(page, "sales", SALES_FIRST, timeout=10_000)
        await expect_figures(page, "support", SUPPORT)
        await expect(body).to_have_attribute("data-stale", "false")

        # Live update: on the page within 2 s of the processor serving it.
        await asyncio.sleep(max(0.0, (now + 5000) / 1000 - time.time()))
        produced_at = time.monotonic()
        await produce(settings, [
            _call("w4", "call.answered", now + 5000, agent_id="a1"),
            _agent("a1", "busy", now + 5000, "sales"),
        ])

        async def api_updated() -> bool:
            sales = await queue_figures(url, "sales")
            return sales is not None and sales["waiting"] == 1 \
                and sales["agents"]["available"] == 0
        await wait_until(api_updated, timeout=10)
        served_at = time.monotonic()
        await expect(figure(page, "sales", "waiting")).to_have_text("1", timeout=2000)
        timings["api -> page"] = time.monotonic() - served_at
        timings["produce -> page"] = time.monotonic() - produced_at
        assert timings["api -> page"] < 2.0
        await expect_figures(page, "sales", SALES_SECOND, timeout=2000)
        await expect(body).to_have_attribute("data-stale", "false")

        await page.wait_for_timeout(500)  # let the live fade-in finish
        target = (SCREENSHOT if os.environ.get("CALLSTREAM_UPDATE_SCREENSHOT") == "1"
                  else tmp_path / "wallboard-live.png")
        await page.screenshot(path=str(target))
        assert target.stat().st_size > 10_000

        # SIGKILL: the page loses its stream and says so; the last figures stay.
        killed_at = time.monotonic()
        processes[0].kill()
        await expect(body).to_have_attribute("data-stale", "true", timeout=5000)
        timings["kill -> stale"] = time.monotonic() - killed_at
        await expect(page.locator("#stale")).to_be_visible()
        await expect(figure(page, "sales", "waiting")).to_have_text("1")

        # The same settings, the same port. Until it holds its partitions again it serves
        # the page but is not ready, and the page stays stale.
        restarted = ProcessorProcess(settings)
        processes.append(restarted)
        restarted_at = time.monotonic()
        starting = asyncio.create_task(restarted.start())
        await wait_until(lambda: http_ok(url + "/healthz"), timeout=20)
        if await http_status(url + "/readyz") != 200:
            await expect(page.locator("#stale-reason")).to_contain_text("not ready",
                                                                        timeout=5000)
            assert await http_status(url + "/readyz") != 200
            await expect(body).to_have_attribute("data-stale", "true")
        await starting
        timings["restart -> ready"] = time.monotonic() - restarted_at
        await expect(body).to_have_attribute("data-stale", "false", timeout=5000)
        timings["restart -> live page"] = time.monotonic() - restarted_at
        # The figures live in Redis: the restarted processor shows the same ones.
        await expect_figures(page, "sales", SALES_SECOND)
        await expect_figures(page, "support", SUPPORT)
    finally:
        if starting is not None and not starting.done():
            starting.cancel()
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.terminate()
        print("timings (s):", {k: round(v, 2) for k, v in timings.items()})
