"""The live wallboard in a real browser (Debian's chromium, driven by Playwright).

A real aiohttp server serves ``/wallboard`` and its event stream; the tests publish
snapshots into the hub and read the page the way a kiosk or a person would.

``CALLSTREAM_UPDATE_SCREENSHOT=1`` also writes the screenshot to ``docs/wallboard.png``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from stream.publish.hub import Snapshot, SnapshotHub
from stream.publish.web.wallboard import (
    EVENTS_PATH,
    HEARTBEAT_SECONDS,
    WALLBOARD_PATH,
    add_routes,
    sse_message,
    wallboard_view,
)

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "wallboard.png"
#: Looks like a caller number; it must never reach the page or its event stream.
CALLER = "+441632960123"


def window(
    offered: int,
    answered: int,
    in_sla: int,
    abandoned: int,
    short: int,
    service_level: float | None,
    abandon_ratio: float | None,
    asa: float | None,
) -> dict[str, Any]:
    return {
        "offered": offered,
        "answered": answered,
        "answered_in_sla": in_sla,
        "abandoned": abandoned,
        "short_abandoned": short,
        "callback_offered": 1,
        "callback_accepted": 1,
        "transferred_out": 0,
        "service_level": service_level,
        "abandon_ratio": abandon_ratio,
        "asa_seconds": asa,
        "aht_seconds": 180.0 if answered else None,
    }


def queue(
    queue_id: str,
    *,
    waiting: int,
    longest: float,
    ewt: float | None,
    agents: tuple[int, int, int, int, int],
    required: int | None,
    five: dict[str, Any],
    sla: int = 20,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "queue_id": queue_id,
        "waiting": waiting,
        "longest_wait_seconds": longest,
        "ewt_seconds": ewt,
        "agents": dict(
            zip(("available", "busy", "wrapup", "away", "offline"), agents, strict=True)
        ),
        "agents_required": required,
        "policy": {
            "sla_seconds": sla,
            "service_level_target": 0.8,
            "callback_wait_seconds": 120,
            "short_abandon_seconds": 5,
        },
        "windows": {
            "5m": five,
            "15m": window(120, 101, 86, 13, 2, 0.782, 0.098, 12.4),
            "1h": window(410, 377, 335, 27, 6, 0.842, 0.053, 9.6),
        },
        "totals": {"offered": 1200, "answered": 1100},
        **extra,
    }


def sales(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "waiting": 3,
        "longest": 42.5,
        "ewt": 60.0,
        "agents": (2, 5, 1, 1, 0),
        "required": 7,
        "five": window(40, 30, 24, 6, 1, 0.685, 0.142, 14.2),
        "callbacks": {"pending": 2},
        "journeys": {"missed": 4, "recovered": 7, "lost": 2, "repeat_call_ratio": 0.12,
                     "recovery_seconds": 1800.0, "lost_total": 9},
        "alerts": [
            {
                "alert_id": "al-1",
                "kind": "abandonment_spike",
                "status": "firing",
                "window": "5m",
                "abandon_ratio": 0.31,
                "caller": CALLER,
            }
        ],
        "caller": CALLER,
        "waiting_calls": [{"call_id": "c-1", "caller": CALLER}],
    }
    fields.update(changes)
    return queue("sales", sla=30, **fields)


def support() -> dict[str, Any]:
    # Nothing answered or abandoned in 5 m: ratios and means are absent, not 0.
    return queue(
        "support",
        waiting=0,
        longest=0.0,
        ewt=None,
        agents=(0, 0, 0, 2, 3),
        required=None,
        five=window(0, 0, 0, 0, 0, None, None, None),
        alerts=[{"alert_id": "al-0", "kind": "abandonment_spike", "status": "resolved"}],
    )


def billing() -> dict[str, Any]:
    return queue(
        "billing",
        waiting=1,
        longest=12.0,
        ewt=8.0,
        agents=(3, 2, 0, 0, 1),
        required=4,
        five=window(22, 21, 20, 1, 0, 0.909, 0.045, 6.3),
        callbacks={"pending": 0},
    )


def snapshot(*queues: dict[str, Any], ready: bool = True) -> Snapshot:
    return {"ts": "2026-11-23T16:40:01.250Z", "ready": ready, "queues": list(queues)}


class WallboardServer:
    """A real aiohttp server for the wallboard that can stop and come back on its port."""

    def __init__(self, hub: SnapshotHub) -> None:
        self.hub = hub
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        add_routes(app, self.hub)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = WALLBOARD_PATH, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}{query}"


@pytest.fixture
async def server() -> AsyncIterator[WallboardServer]:
    running = WallboardServer(SnapshotHub())
    await running.start()
    yield running
    await running.stop()


def figure(page: Page, queue_id: str, name: str) -> Any:
    return page.locator(f'[data-queue="{queue_id}"] [data-figure="{name}"]')


async def test_tiles_show_the_figures(page: Page, server: WallboardServer) -> None:
    server.hub.publish(snapshot(sales(), support(), billing()))
    await page.goto(server.url())

    await expect(page.locator("[data-queue]")).to_have_count(3)
    expected = {
        "sales": {
            "waiting": "3",
            "longest_wait": "0:42",
            "service_level": "68.5%",
            "abandon_ratio": "14.2%",
            "asa": "0:14",
            "agents_available": "2",
            "agents_required": "7",
            "ewt": "1:00",
        },
        "support": {
            "waiting": "0",
            "longest_wait": "0:00",
            "service_level": "—",
            "abandon_ratio": "—",
            "asa": "—",
            "agents_available": "0",
            "agents_required": "—",
            "ewt": "—",
        },
    }
    for queue_id, figures in expected.items():
        for name, text in figures.items():
            await expect(figure(page, queue_id, name)).to_have_text(text)
    await expect(page.locator("body")).to_have_attribute("data-stale", "false")

    sales_tile = page.locator('[data-queue="sales"]')
    await expect(sales_tile.locator('[data-role="alert"]')).to_be_visible()
    await expect(sales_tile.locator('[data-role="alert"]')).to_contain_text("ABANDONMENT SPIKE")
    await expect(sales_tile.locator('[data-role="badge"]')).to_have_text("✖ ALERT")
    # A resolved alert shows no banner; a queue without the callbacks feature no callbacks row.
    support_tile = page.locator('[data-queue="support"]')
    await expect(support_tile.locator('[data-role="alert"]')).to_be_hidden()
    await expect(support_tile.locator('[data-role="callbacks"]')).to_be_hidden()
    await expect(sales_tile.locator('[data-role="callbacks-pending"]')).to_have_text("2")
    # The caller journeys tile: missed / recovered / lost over the last day.
    await expect(sales_tile.locator('[data-role="journeys"]')).to_be_visible()
    await expect(sales_tile.locator('[data-role="journeys"] .value')).to_have_text("4 / 7 / 2")
    await expect(figure(page, "sales", "lost")).to_have_text("2")
    await expect(support_tile.locator('[data-role="journeys"]')).to_be_hidden()
    # Colour is not the only signal: the level is spelled out next to the figure.
    await expect(sales_tile.locator('[data-role="sl-note"]')).to_contain_text("✖ breach")
    await expect(sales_tile.locator('[data-role="longest-note"]')).to_contain_text("▲ over SLA")
    assert CALLER[1:] not in await page.content()


async def test_an_update_shows_within_two_seconds(page: Page, server: WallboardServer) -> None:
    server.hub.publish(snapshot(sales()))
    await page.goto(server.url())
    await expect(figure(page, "sales", "waiting")).to_have_text("3")

    started = time.monotonic()
    server.hub.publish(snapshot(sales(waiting=11, longest=130.0)))
    await expect(figure(page, "sales", "waiting")).to_have_text("11", timeout=2000)
    assert time.monotonic() - started < 2.0
    await expect(figure(page, "sales", "longest_wait")).to_have_text("2:10")
    await expect(page.locator('[data-queue="sales"] [data-role="longest-note"]')).to_contain_text(
        "✖"
    )


async def test_window_option_and_selector(page: Page, server: WallboardServer) -> None:
    server.hub.publish(snapshot(sales()))
    await page.goto(server.url(query="?window=15m"))
    await expect(figure(page, "sales", "service_level")).to_have_text("78.2%")

    await page.locator('#windows button[data-window="1h"]').click()
    await expect(figure(page, "sales", "service_level")).to_have_text("84.2%")
    await expect(figure(page, "sales", "abandon_ratio")).to_have_text("5.3%")
    assert page.url.endswith("window=1h")


async def test_queue_filter_shows_only_those_tiles(page: Page, server: WallboardServer) -> None:
    server.hub.publish(snapshot(sales(), support(), billing()))
    await page.goto(server.url(query="?queues=billing,support"))

    tiles = page.locator("[data-queue]")
    await expect(tiles).to_have_count(2)
    assert [await tile.get_attribute("data-queue") for tile in await tiles.all()] == [
        "billing",
        "support",
    ]
    await expect(page.locator('[data-queue="sales"]')).to_have_count(0)


async def test_stale_while_the_processor_is_not_ready(page: Page, server: WallboardServer) -> None:
    body = page.locator("body")
    server.hub.publish(snapshot(sales()))
    await page.goto(server.url())
    await expect(body).to_have_attribute("data-stale", "false")

    server.hub.publish(snapshot(sales(), ready=False))
    await expect(body).to_have_attribute("data-stale", "true", timeout=2000)
    await expect(page.locator("#stale")).to_contain_text("STALE — last update")
    await expect(page.locator("#stale-reason")).to_contain_text("not ready")

    server.hub.publish(snapshot(sales()))
    await expect(body).to_have_attribute("data-stale", "false", timeout=2000)


async def test_stale_when_the_server_goes_and_live_when_it_returns(
    page: Page, server: WallboardServer
) -> None:
    body = page.locator("body")
    server.hub.publish(snapshot(sales()))
    await page.goto(server.url())
    await expect(body).to_have_attribute("data-stale", "false")

    await server.stop()
    await expect(body).to_have_attribute("data-stale", "true", timeout=4000)
    await expect(page.locator("#stale")).to_be_visible()
    await expect(page.locator("#stale-time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    await expect(figure(page, "sales", "waiting")).to_have_text("3")  # last figures stay, dimmed

    await server.start()
    server.hub.publish(snapshot(sales(waiting=5)))
    await expect(body).to_have_attribute("data-stale", "false", timeout=8000)
    await expect(figure(page, "sales", "waiting")).to_have_text("5", timeout=2000)


async def test_a_silent_stream_turns_stale_and_is_reopened(page: Page) -> None:
    """A stream that stays open but sends nothing: stale after 3 s, reopened after 5 s."""
    page_html = files("stream.publish.web").joinpath("wallboard.html").read_bytes()
    connections: list[float] = []
    reopened = asyncio.Event()
    message = sse_message(wallboard_view(snapshot(billing())))

    async def wallboard_page(_: web.Request) -> web.Response:
        return web.Response(body=page_html, content_type="text/html")

    async def silent_events(request: web.Request) -> web.StreamResponse:
        connections.append(time.monotonic())
        if len(connections) > 1:
            reopened.set()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(message)
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_get(WALLBOARD_PATH, wallboard_page)
    app.router.add_get(EVENTS_PATH, silent_events)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}{WALLBOARD_PATH}")
        body = page.locator("body")
        await expect(body).to_have_attribute("data-stale", "false")
        await expect(body).to_have_attribute("data-stale", "true", timeout=4500)
        assert time.monotonic() - connections[0] > 2.5
        await expect(page.locator("#stale-reason")).to_contain_text("no data")
        await asyncio.wait_for(reopened.wait(), 4)  # the watchdog reopens the stream
        assert connections[1] - connections[0] > 4.5
    finally:
        await runner.cleanup()


async def test_event_stream_forwards_only_page_fields(server: WallboardServer) -> None:
    server.hub.publish(snapshot(sales(), support(), billing()))
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url(EVENTS_PATH, "?queues=sales,nosuch")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        first = await _next_event(response)
        started = time.monotonic()
        second = await _next_event(response)  # nothing published: a heartbeat resend
        waited = time.monotonic() - started

    assert waited < 1.0
    assert first == second
    raw = json.dumps(first)
    assert CALLER[1:] not in raw
    assert "caller" not in raw
    assert "waiting_calls" not in raw
    assert [q["queue_id"] for q in first["queues"]] == ["sales"]
    shown = first["queues"][0]
    assert shown["windows"]["5m"]["service_level"] == 0.685
    assert shown["callbacks"] == {"pending": 2, "results": {"reached": None}}
    assert shown["journeys"] == {"missed": 4, "recovered": 7, "lost": 2}
    assert shown["alerts"] == [
        {"kind": "abandonment_spike", "status": "firing", "window": "5m", "abandon_ratio": 0.31,
         "baseline_ratio": None, "calls": None}
    ]
    assert "totals" not in shown


async def test_event_stream_sends_each_newer_snapshot(server: WallboardServer) -> None:
    server.hub.publish(snapshot(billing()))
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url(EVENTS_PATH)) as response,
    ):
        first = await _next_event(response)
        changed = copy.deepcopy(billing())
        changed["waiting"] = 4
        server.hub.publish(snapshot(changed))
        started = time.monotonic()
        second = await _next_event(response)
        assert time.monotonic() - started < HEARTBEAT_SECONDS
    assert first["queues"][0]["waiting"] == 1
    assert second["queues"][0]["waiting"] == 4


async def test_screenshot(page: Page, server: WallboardServer, tmp_path: Path) -> None:
    """A realistic board at 1600x900, kept in the docs when asked to."""
    busy = queue(
        "support",
        waiting=7,
        longest=95.0,
        ewt=150.0,
        agents=(0, 9, 2, 1, 2),
        required=13,
        five=window(58, 41, 21, 5, 1, 0.512, 0.089, 38.0),
        callbacks={"pending": 5},
        alerts=[],
    )
    quiet = queue(
        "retentions",
        waiting=0,
        longest=0.0,
        ewt=None,
        agents=(1, 1, 0, 0, 2),
        required=2,
        five=window(0, 0, 0, 0, 0, None, None, None),
    )
    server.hub.publish(snapshot(sales(), busy, billing(), quiet))
    await page.clock.set_fixed_time(datetime(2026, 11, 23, 16, 40, 1, tzinfo=UTC))
    await page.goto(server.url())
    await expect(page.locator("body")).to_have_attribute("data-stale", "false")
    await page.wait_for_timeout(500)  # let the live fade-in finish

    target = SCREENSHOT if os.environ.get("CALLSTREAM_UPDATE_SCREENSHOT") else tmp_path / "wb.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
    # Nothing spills out of a tile at this size.
    overflowing = await page.evaluate(
        """() => [...document.querySelectorAll('.tile .in')]
              .filter((el) => el.scrollHeight > el.clientHeight + 1)
              .map((el) => el.closest('.tile').dataset.queue)"""
    )
    assert overflowing == []


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next ``data:`` event of a server-sent event stream, decoded."""
    while True:
        line = await response.content.readline()
        assert line, "the event stream ended"
        if line.startswith(b"data: "):
            event: dict[str, Any] = json.loads(line[len(b"data: ") :])
            return event


def with_trend(queue_data: dict[str, Any], now: float) -> dict[str, Any]:
    """The last hour of a queue: service level per 2-minute bucket, waiting per minute."""
    start = int(now) // 120 * 120
    return queue_data | {"trend": {
        "service_level": [[start - 120 * (29 - i), 0.5 + i / 60] for i in range(30)],
        "waiting": [[int(now) // 60 * 60 - 60 * (59 - i), i % 7] for i in range(60)],
    }}


def six_queues(now: float) -> list[dict[str, Any]]:
    names = ["sales", "support", "billing", "retention", "onboarding", "vip-premium-support"]
    tiles = []
    for i, name in enumerate(names):
        base = sales() if i % 2 == 0 else billing()
        tiles.append(with_trend(base | {"queue_id": name, "waiting": i + 1}, now))
    return tiles


async def test_six_queues_fit_a_1080p_wall_with_trends_and_a_summary(
        browser: Browser, server: WallboardServer) -> None:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080},
                                        timezone_id="UTC", locale="en-GB")
    page = await context.new_page()
    try:
        server.hub.publish(snapshot(*six_queues(time.time())))
        await page.goto(server.url())
        await expect(page.locator("[data-queue]")).to_have_count(6)
        # One sparkline per trend per tile, drawn from the snapshot's points.
        sparks = page.locator('[data-trend="service_level"]')
        await expect(sparks).to_have_count(6)
        for spark in await sparks.all():
            await expect(spark).to_have_attribute("data-points", "30")
        for spark in await page.locator('[data-trend="waiting"]').all():
            await expect(spark).to_have_attribute("data-points", "60")
        # The wall at a glance: calls waiting everywhere, the worst service level.
        await expect(page.locator('[data-summary="waiting"]')).to_have_text("21")
        await expect(page.locator('[data-summary="worst_service_level"]')).to_have_text("68.5%")
        # One clock: the live mark carries no second time.
        await expect(page.locator("#live")).to_have_text("● LIVE")
        assert re.fullmatch(r"\d\d:\d\d:\d\d", await page.locator("#clock").inner_text())
        # Nothing is cut off: no visible text overflows its box, every tile's content ends
        # inside the tile.
        clipped = await page.evaluate("""() => {
          const out = [];
          for (const tile of document.querySelectorAll('[data-queue]')) {
            const box = tile.getBoundingClientRect();
            for (const el of tile.querySelectorAll('.label, .note, .value, .qname, .alert')) {
              if (!el.offsetParent || !el.textContent.trim()) continue;
              const r = el.getBoundingClientRect();
              if (el.scrollWidth > el.clientWidth + 1 || r.bottom > box.bottom + 1)
                out.push(tile.dataset.queue + ': ' + el.textContent.trim());
            }
          }
          return out;
        }""")
        assert clipped == []
    finally:
        await context.close()


# --- the team lead's view: /wallboard?view=agents (issue 12) ---------------------------
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
