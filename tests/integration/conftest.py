"""Shared fixtures: a real tansu broker per test session, a flushed Redis per test, and
Debian's chromium (one per session) with a fresh page per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, async_playwright

# Before the harness is first imported, so that its asserts explain their failures as
# the tests' own do.
pytest.register_assert_rewrite("harness")

from harness import CHROMIUM, NO_CHROMIUM, REDIS_URL  # noqa: E402
from stream.tools.broker import EmbeddedBroker  # noqa: E402


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 1600, "height": 900}, timezone_id="UTC", locale="en-GB"
    )
    opened = await context.new_page()
    yield opened
    await context.close()
