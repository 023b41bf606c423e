"""The team lead's view of the wallboard (``/wallboard?view=agents``) in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect
from test_wallboard_browser import (  # noqa: F401  (fixtures)
    WallboardServer,
    billing,
    browser,
    page,
    sales,
    server,
    snapshot,
)

from stream.web.hub import Snapshot

pytestmark = pytest.mark.browser


def agent(agent_id: str, state: str, seconds: float, queues: list[str], answered: int,
          aht: float | None, occupancy: float | None) -> dict[str, Any]:
    figures = {"answered": answered, "aht_seconds": aht, "occupancy": occupancy,
               "state_seconds": {"available": 1.0, "busy": 2.0, "wrapup": 3.0}}
    return {"agent_id": agent_id, "state": state, "since": "2026-11-23T16:00:00.000Z",
            "state_seconds": seconds, "queues": queues,
            "windows": {"5m": figures, "1h": figures | {"answered": answered * 10}}}


def with_agents(*agents: dict[str, Any]) -> Snapshot:
    return snapshot(sales(), billing()) | {"agents": list(agents)}


TEAM = (
    agent("ann", "busy", 95.0, ["sales"], 4, 183.5, 0.82),
    agent("bob", "busy", 410.0, ["sales", "billing"], 2, 240.0, 0.9),
    agent("cat", "available", 12.0, ["billing"], 0, None, 0.0),
    agent("dan", "away", 3700.0, ["sales"], 1, 60.0, None),
)


def row(page: Page, agent_id: str) -> Any:
    return page.locator(f'[data-agent="{agent_id}"]')


async def test_agents_by_state_longest_in_state_first(page: Page,
                                                      server: WallboardServer) -> None:
    server.hub.publish(with_agents(*TEAM))
    await page.goto(server.url(query="?view=agents"))
    await expect(page.locator("body")).to_have_attribute("data-stale", "false")
    busy = page.locator('[data-state-column="busy"] [data-agent]')
    await expect(busy).to_have_count(2)
    assert [await r.get_attribute("data-agent") for r in await busy.all()] == ["bob", "ann"]
    await expect(row(page, "bob").locator('[data-figure="state_seconds"]')).to_have_text("6:50")
    await expect(row(page, "ann").locator('[data-figure="answered"]')).to_have_text("4")
    await expect(row(page, "ann").locator('[data-figure="aht"]')).to_have_text("3:03")
    await expect(row(page, "ann").locator('[data-figure="occupancy"]')).to_have_text("82%")
    await expect(row(page, "cat").locator('[data-figure="aht"]')).to_have_text("—")
    await expect(row(page, "dan")).to_have_attribute("data-state", "away")
    await expect(row(page, "dan").locator('[data-figure="state_seconds"]')).to_have_text(
        "1:01:40")
    # readable at wall distance: an agent's time in state is at least 3 % of the height
    size = await row(page, "bob").locator('[data-figure="state_seconds"]').evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 0.03 * 900
    # another window, and a state change moves the agent to its new column
    await page.locator('#windows button[data-window="1h"]').click()
    await expect(row(page, "ann").locator('[data-figure="answered"]')).to_have_text("40")
    server.hub.publish(with_agents(*TEAM[:2], agent("cat", "busy", 1.0, ["billing"], 1, None,
                                                    0.5), TEAM[3]))
    await expect(page.locator('[data-state-column="busy"] [data-agent]')).to_have_count(3)
    await expect(page.locator('[data-state-column="available"] [data-agent]')).to_have_count(0)


async def test_a_queue_tile_links_to_its_agents(page: Page, server: WallboardServer) -> None:
    server.hub.publish(with_agents(*TEAM))
    await page.goto(server.url())
    link = page.locator('[data-queue="billing"] a[data-role="agents-link"]')
    await expect(link).to_have_count(1)
    await link.click()
    await expect(page.locator("body")).to_have_attribute("data-view", "agents")
    await expect(page.locator("[data-agent]")).to_have_count(2)  # bob and cat serve billing
    await expect(row(page, "ann")).to_have_count(0)
    await expect(page.locator("body")).to_have_attribute("data-stale", "false")


async def test_the_agents_view_goes_stale_when_the_processor_is_not_ready(
        page: Page, server: WallboardServer) -> None:
    server.hub.publish(with_agents(*TEAM) | {"ready": False})
    await page.goto(server.url(query="?view=agents"))
    await expect(row(page, "ann")).to_have_count(1)
    await expect(page.locator("body")).to_have_attribute("data-stale", "true")
