"""The HTTP surface over real HTTP: the token, the wallboard's cookie, /readyz and /healthz."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from stream.health import Health
from stream.publish.hub import SnapshotHub
from stream.publish.web.app import COOKIE_NAME, build_app
from stream.tools.broker import free_port

TOKEN = "s3cret-token"


def ready_health(stall_seconds: float = 60) -> Health:
    health = Health(stall_seconds=stall_seconds)
    health.reachable("kafka", True)
    health.reachable("redis", True)
    health.assigned = True
    return health


@asynccontextmanager
async def serving(token: str = "", health: Health | None = None,
                  hub: SnapshotHub | None = None) -> AsyncIterator[str]:
    hub = hub or SnapshotHub()
    app = build_app(hub, CollectorRegistry(), health or ready_health(), token)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def status(url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            url, headers=headers, allow_redirects=False) as response:
        return response.status


async def first_event(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                event: dict[str, Any] = json.loads(line[6:])
                return event
    raise AssertionError("the stream ended without an event")


# --- the token ---------------------------------------------------------------------------------


async def test_every_path_but_healthz_needs_the_token() -> None:
    async with serving(TOKEN) as url:
        for path in ("/metrics", "/readyz", "/api/queues", "/wallboard", "/wallboard/events"):
            assert await status(url + path) == 401, path
        assert await status(url + "/healthz") == 200


async def test_bearer_is_matched_in_any_case() -> None:
    async with serving(TOKEN) as url:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            assert await status(url + "/api/queues", Authorization=f"{scheme} {TOKEN}") == 200
        assert await status(url + "/api/queues", Authorization="Bearer wrong") == 401
        assert await status(url + "/api/queues", Authorization=f"Basic {TOKEN}") == 401
        assert await status(url + "/api/queues", Authorization=TOKEN) == 401


async def test_the_token_in_an_api_url_is_not_taken() -> None:
    async with serving(TOKEN) as url:
        assert await status(url + f"/api/queues?token={TOKEN}") == 401
        assert await status(url + f"/wallboard/events?token={TOKEN}") == 401


async def test_the_wallboard_trades_the_token_for_a_cookie_and_drops_it_from_the_url() -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of an IP address, as browsers do
    async with serving(TOKEN) as url, aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(url + f"/wallboard?token={TOKEN}&queues=sales,support",
                               allow_redirects=False) as response:
            assert response.status == 303
            location = response.headers["Location"]
            cookie = response.headers["Set-Cookie"]
        assert TOKEN not in location and location.startswith("wallboard?")
        assert "queues=sales" in location
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        # The browser follows the redirect with the cookie; the page and its stream open.
        async with session.get(url + "/" + location) as page:
            assert page.status == 200 and "data-stale" in await page.text()
        event = await first_event(session, url + "/wallboard/events")
        assert event["ready"] is False and event["queues"] == []
        # The cookie opens the wallboard only, not the API.
        async with session.get(url + "/api/queues") as api:
            assert api.status == 401


async def test_a_wrong_token_or_cookie_opens_nothing() -> None:
    async with serving(TOKEN) as url:
        assert await status(url + "/wallboard?token=wrong") == 401
        assert await status(url + "/wallboard", Cookie=f"{COOKIE_NAME}={TOKEN}") == 401
        assert await status(url + "/wallboard/events", Cookie=f"{COOKIE_NAME}=x") == 401


async def test_without_a_token_everything_is_open() -> None:
    async with serving() as url:
        for path in ("/metrics", "/api/queues", "/wallboard"):
            assert await status(url + path) == 200


# --- readiness and liveness --------------------------------------------------------------------


async def test_readyz_names_what_is_down() -> None:
    health = ready_health()
    async with serving(health=health) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/readyz") as response:
            assert response.status == 200 and (await response.json())["down"] == {}
        health.reachable("kafka", False, ConnectionRefusedError("refused"))
        async with session.get(url + "/readyz") as response:
            body = await response.json()
        assert response.status == 503
        assert body["kafka"] is False and body["redis"] is True
        assert list(body["down"]) == ["kafka"]
        assert "CALLSTREAM_KAFKA_BOOTSTRAP" in body["down"]["kafka"]


async def test_healthz_fails_while_the_consumer_loop_is_wedged() -> None:
    health = ready_health(stall_seconds=0.3)
    async with serving(health=health) as url, aiohttp.ClientSession() as session:
        health.progressed(waiting=0)
        await asyncio.sleep(0.4)
        assert await status(url + "/healthz") == 200  # idle is not wedged
        health.waiting(250)  # a batch handed to apply, which never returns
        await asyncio.sleep(0.4)
        async with session.get(url + "/healthz") as response:
            body = await response.json()
        assert response.status == 503 and body["status"] == "wedged"
        assert body["waiting"] == 250 and "no progress" in body["reason"]
        health.progressed(waiting=0)
        assert await status(url + "/healthz") == 200


# --- the wallboard stream's staleness ---------------------------------------------------------


async def test_a_snapshot_not_renewed_for_3_s_is_streamed_as_not_ready() -> None:
    hub = SnapshotHub()
    hub.publish({"ts": "2026-11-22T10:15:30.000Z", "ready": True, "queues": []})
    async with serving(hub=hub) as url, aiohttp.ClientSession() as session, session.get(
            url + "/wallboard/events") as response:
        started = time.monotonic()
        readiness = []
        async for line in response.content:
            if line.startswith(b"data: "):
                readiness.append((time.monotonic() - started, json.loads(line[6:])["ready"]))
            if time.monotonic() - started > 4:
                break
    assert readiness[0][1] is True
    assert all(ready for at, ready in readiness if at < 2.9)
    assert [ready for at, ready in readiness if at > 3.6] and not any(
        ready for at, ready in readiness if at > 3.6)
