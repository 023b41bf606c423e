"""A wall display behind a token, in a real browser (Debian's chromium): it opens
``/wallboard?token=…`` once, the token leaves the address bar, and the live stream runs on
the cookie, with the token in no request URL after the first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from playwright.async_api import async_playwright, expect
from prometheus_client import CollectorRegistry

from harness import CHROMIUM, NO_CHROMIUM
from stream.health import Health
from stream.publish.hub import SnapshotHub
from stream.publish.web.app import build_app

pytestmark = pytest.mark.browser

TOKEN = "kiosk-s3cret"


async def _refresh(hub: SnapshotHub) -> None:
    """A refresher's stand-in: a fresh, ready snapshot twice a second."""
    while True:
        hub.publish({"ts": "2026-11-23T16:40:01.250Z", "ready": True, "queues": []})
        await asyncio.sleep(0.5)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    hub = SnapshotHub()
    app = build_app(hub, CollectorRegistry(), Health(), TOKEN)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    refresher = asyncio.create_task(_refresh(hub))
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await runner.cleanup()


async def test_a_kiosk_opens_the_wallboard_with_the_token_once(base_url: str) -> None:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{base_url}/wallboard?token={TOKEN}&window=15m")
            await expect(page.locator("body")).to_have_attribute("data-stale", "false",
                                                                 timeout=5000)
            assert page.url == f"{base_url}/wallboard?window=15m"
            assert any("/wallboard/events" in url for url in requested)
            assert [url for url in requested if TOKEN in url] == [
                f"{base_url}/wallboard?token={TOKEN}&window=15m"]
            await page.reload()  # the address bar has no token: the cookie still opens it
            await expect(page.locator("body")).to_have_attribute("data-stale", "false",
                                                                 timeout=5000)
        finally:
            await browser.close()
