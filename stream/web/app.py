"""The HTTP server: /metrics, /healthz, /readyz, the JSON API and the wallboard."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..consume import Health
from . import wallboard
from .hub import SnapshotHub

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN_PATHS = ("/healthz",)


def build_app(hub: SnapshotHub, registry: CollectorRegistry, health: Health,
              token: str = "") -> web.Application:
    """The application; with ``token`` set, every path but /healthz needs it."""
    middlewares: list[Middleware] = [_token_guard(token)] if token else []
    app = web.Application(middlewares=middlewares)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        body = {"ready": health.ready, "kafka": health.kafka_ok, "redis": health.redis_ok,
                "assigned": health.assigned}
        return web.json_response(body, status=200 if health.ready else 503)

    async def queues(_: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in hub.snapshot.items() if k != "agents"})

    async def queue(request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        for snapshot in hub.snapshot["queues"]:
            if snapshot["queue_id"] == queue_id:
                return web.json_response(
                    snapshot | {"ts": hub.snapshot["ts"], "ready": hub.snapshot["ready"]})
        raise web.HTTPNotFound(text=f"queue {queue_id!r} has not been seen")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/queues", queues)
    app.router.add_get("/api/queues/{queue_id}", queue)
    _add_agent_routes(app, hub)
    wallboard.add_routes(app, hub)
    return app


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
    """Bearer token in the Authorization header, or ``?token=`` for kiosk browsers."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="missing or wrong token (CALLSTREAM_HTTP_TOKEN)")
        return await handler(request)

    return guard
