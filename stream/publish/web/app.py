"""The HTTP server: /metrics, /healthz, /readyz, the JSON API and the wallboard."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream.health import Health
from stream.parse.events import mask_caller
from stream.publish.hub import SnapshotHub
from stream.publish.waiting_calls import WaitingCalls
from stream.publish.web import wallboard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN_PATHS = ("/healthz",)
#: A queue's missed callers, oldest miss first, with their numbers; None while the
#: processor has no state store yet.
MissedCallers = Callable[[str], Awaitable[list[dict[str, Any]] | None]]


#: The wallboard's session cookie: a value derived from the token, never the token itself.
COOKIE_NAME = "callstream_wallboard"


def build_app(hub: SnapshotHub, registry: CollectorRegistry, health: Health,
              token: str = "", calls: WaitingCalls | None = None,
              missed_callers: MissedCallers | None = None) -> web.Application:
    """The application; with ``token`` set, every path but /healthz needs it. ``calls``
    answers ``/api/calls/{call_id}`` (without it, that path answers 503); ``missed_callers``
    answers ``/api/queues/{queue_id}/missed``.

    API clients send ``Authorization: Bearer <token>``. A wall display opens
    ``/wallboard?token=<token>`` once: the page answers with a cookie and sends the browser
    on to ``/wallboard`` without the token, so the token is in no later URL, log or history,
    and the event stream authenticates by that cookie.
    """
    middlewares: list[Middleware] = [_token_guard(token)] if token else []
    app = web.Application(middlewares=middlewares)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(health.liveness(), status=200 if health.live else 503)

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response(health.readiness(), status=200 if health.ready else 503)

    async def queues(_: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in hub.snapshot.items() if k != "agents"})

    async def queue(request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        for snapshot in hub.snapshot["queues"]:
            if snapshot["queue_id"] == queue_id:
                return web.json_response(
                    snapshot | {"ts": hub.snapshot["ts"], "ready": hub.snapshot["ready"]})
        raise web.HTTPNotFound(text=f"queue {queue_id!r} has not been seen")

    async def call(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        if calls is None or not calls.ready:
            raise web.HTTPServiceUnavailable(text="not ready: the queues have not been read yet")
        waiting = calls.find(call_id)
        if not waiting:
            raise web.HTTPNotFound(text=f"call {call_id!r} is not waiting in any queue")
        return web.json_response({"call_id": call_id, "waiting": waiting,
                                  "ts": hub.snapshot["ts"], "ready": hub.snapshot["ready"]})

    async def missed(request: web.Request) -> web.Response:
        """Caller numbers in full only behind the API token (contract §5, §6)."""
        queue_id = request.match_info["queue_id"]
        if not any(q["queue_id"] == queue_id for q in hub.snapshot["queues"]):
            raise web.HTTPNotFound(text=f"queue {queue_id!r} has not been seen")
        callers = await missed_callers(queue_id) if missed_callers else None
        if callers is None:
            raise web.HTTPServiceUnavailable(text="caller journeys are not available yet")
        if not token:
            callers = [c | {"caller": mask_caller(c["caller"])} for c in callers]
        return web.json_response({"queue_id": queue_id, "missed": callers})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/queues", queues)
    app.router.add_get("/api/queues/{queue_id}", queue)
    _add_agent_routes(app, hub)
    app.router.add_get("/api/calls/{call_id:.+}", call)  # a call_id may hold a "/"
    app.router.add_get("/api/queues/{queue_id}/missed", missed)
    wallboard.add_routes(app, hub)
    return app


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (the scheme in any case)."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _add_agent_routes(app: web.Application, hub: SnapshotHub) -> None:
    """``GET /api/agents`` and ``GET /api/agents/{agent_id}``: contract §2 "Per agent"."""

    async def agents(_: web.Request) -> web.Response:
        snapshot = hub.snapshot
        return web.json_response({"ts": snapshot["ts"], "ready": snapshot["ready"],
                                  "agents": snapshot.get("agents", [])})

    async def agent(request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        snapshot = hub.snapshot
        for figures in snapshot.get("agents", []):
            if figures["agent_id"] == agent_id:
                return web.json_response(
                    figures | {"ts": snapshot["ts"], "ready": snapshot["ready"]})
        raise web.HTTPNotFound(text=f"agent {agent_id!r} is not tracked")

    app.router.add_get("/api/agents", agents)
    app.router.add_get("/api/agents/{agent_id}", agent)


def _token_guard(token: str) -> Middleware:
    """Bearer token on every path; on the wallboard's paths also its cookie, which
    ``/wallboard?token=`` trades for the token."""
    cookie = hmac.new(token.encode(), b"callstream wallboard cookie", hashlib.sha256).hexdigest()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        given = bearer_token(request)
        if given is not None and _same(given, token):
            return await handler(request)
        on_wallboard = request.path in (wallboard.WALLBOARD_PATH, wallboard.EVENTS_PATH)
        if on_wallboard and _same(request.cookies.get(COOKIE_NAME, ""), cookie):
            return await handler(request)
        if request.path == wallboard.WALLBOARD_PATH and _same(request.query.get("token", ""),
                                                              token):
            # Relative, so that a reverse proxy's path prefix is kept.
            query = request.url.query.copy()
            query.popall("token")
            location = "wallboard" + (f"?{urlencode(list(query.items()))}" if query else "")
            response = web.HTTPSeeOther(location=location)
            response.set_cookie(COOKIE_NAME, cookie, httponly=True, samesite="Strict",
                                secure=request.secure)
            raise response
        raise web.HTTPUnauthorized(
            text="missing or wrong token (CALLSTREAM_HTTP_TOKEN): send "
                 "'Authorization: Bearer <token>', or open /wallboard?token=<token> once")

    return guard

