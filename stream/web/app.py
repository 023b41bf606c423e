"""The HTTP server: /metrics, /healthz, /readyz, the JSON API and the wallboard."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..consume import Health
from ..journeys import masked
from . import wallboard
from .hub import SnapshotHub

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN_PATHS = ("/healthz",)
#: A queue's missed callers, oldest miss first, with their numbers; None while the
#: processor has no state store yet.
MissedCallers = Callable[[str], Awaitable[list[dict[str, Any]] | None]]


def build_app(hub: SnapshotHub, registry: CollectorRegistry, health: Health,
              token: str = "", missed_callers: MissedCallers | None = None
              ) -> web.Application:
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
        return web.json_response(hub.snapshot)

    async def queue(request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        for snapshot in hub.snapshot["queues"]:
            if snapshot["queue_id"] == queue_id:
                return web.json_response(
                    snapshot | {"ts": hub.snapshot["ts"], "ready": hub.snapshot["ready"]})
        raise web.HTTPNotFound(text=f"queue {queue_id!r} has not been seen")

    async def missed(request: web.Request) -> web.Response:
        """Caller numbers in full only behind the API token (contract §5, §6)."""
        queue_id = request.match_info["queue_id"]
        if not any(q["queue_id"] == queue_id for q in hub.snapshot["queues"]):
            raise web.HTTPNotFound(text=f"queue {queue_id!r} has not been seen")
        callers = await missed_callers(queue_id) if missed_callers else None
        if callers is None:
            raise web.HTTPServiceUnavailable(text="caller journeys are not available yet")
        if not token:
            callers = [c | {"caller": masked(c["caller"])} for c in callers]
        return web.json_response({"queue_id": queue_id, "missed": callers})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/queues", queues)
    app.router.add_get("/api/queues/{queue_id}", queue)
    app.router.add_get("/api/queues/{queue_id}/missed", missed)
    wallboard.add_routes(app, hub)
    return app


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
