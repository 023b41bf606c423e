"""The live wallboard: one self-contained page and the server-sent events that feed it.

``GET /wallboard`` serves the page; ``GET /wallboard/events`` streams the live snapshot
(``?queues=a,b`` keeps only those queues). The stream forwards only the fields the page
shows (a whitelist), so nothing else in a snapshot, a caller number least of all, can
reach a wall display.

``?view=agents`` (with ``&queue=q`` for one queue's agents) serves and streams the team
lead's view instead: each agent's state, time in it, answered and AHT.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from typing import Any

from aiohttp import web

from stream.publish.hub import Snapshot, SnapshotHub
from stream.vocabulary import AGENT_STATES, OUTCOMES

WALLBOARD_PATH = "/wallboard"
EVENTS_PATH = "/wallboard/events"
AGENTS_VIEW = "agents"

#: The page marks itself stale after 3 s without a message, so resend well within that.
HEARTBEAT_SECONDS = 0.5
#: Tells EventSource how soon to reconnect after the stream drops.
RECONNECT_MILLISECONDS = 1000
#: A snapshot not renewed for this long is sent as not ready: the refresher is stuck.
SNAPSHOT_STALE_SECONDS = 3.0

_QUEUE_NUMBERS = ("waiting", "longest_wait_seconds", "ewt_seconds", "agents_required")
_POLICY_NUMBERS = (
    "sla_seconds",
    "service_level_target",
    "callback_wait_seconds",
    "short_abandon_seconds",
)
_WINDOW_NUMBERS = (*OUTCOMES, "service_level", "abandon_ratio", "asa_seconds", "aht_seconds")
_ALERT_NUMBERS = ("abandon_ratio", "baseline_ratio", "calls")
_TRENDS = ("waiting", "service_level")
_TREND_POINTS = 120
_JOURNEY_NUMBERS = ("missed", "recovered", "lost")
# Free text is limited to tame tokens: ids, window labels, alert kinds and statuses.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is self-contained: it may talk only to its own origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
}


def add_routes(app: web.Application, hub: SnapshotHub) -> None:
    """Register ``GET /wallboard`` (the page) and ``GET /wallboard/events`` (its SSE feed)."""
    page = files(__package__).joinpath("wallboard.html").read_bytes()
    agents_page = files(__package__).joinpath("wallboard_agents.html").read_bytes()
    closing = asyncio.Event()  # set at shutdown: open streams end instead of holding it up

    async def stop_streams(_: web.Application) -> None:
        closing.set()

    async def wallboard_page(request: web.Request) -> web.Response:
        chosen = agents_page if request.query.get("view") == AGENTS_VIEW else page
        return web.Response(body=chosen, headers=_PAGE_HEADERS)

    async def wallboard_events(request: web.Request) -> web.StreamResponse:
        if request.query.get("view") == AGENTS_VIEW:
            queue = request.query.get("queue", "").strip() or None
            return await _stream(request, hub, closing, lambda snap: agents_view(snap, queue))
        queue_ids = parse_queue_filter(request.query.get("queues", ""))
        return await _stream(request, hub, closing, lambda snap: wallboard_view(snap, queue_ids))

    app.on_shutdown.append(stop_streams)
    app.router.add_get(WALLBOARD_PATH, wallboard_page, name="wallboard")
    app.router.add_get(EVENTS_PATH, wallboard_events, name="wallboard_events")


async def _stream(
    request: web.Request, hub: SnapshotHub, closing: asyncio.Event,
    view: Callable[[Snapshot], Mapping[str, Any]],
) -> web.StreamResponse:
    """Send the view of the current snapshot, then of each newer one, resending it at
    least every heartbeat."""
    response = web.StreamResponse(headers=_STREAM_HEADERS)
    try:
        await response.prepare(request)
        await response.write(f"retry: {RECONNECT_MILLISECONDS}\n\n".encode())
        sent_version = hub.version
        message = sse_message(view(hub.shown(SNAPSHOT_STALE_SECONDS)))
        while not closing.is_set():
            await response.write(message)
            sent_version = await hub.wait_newer(sent_version, HEARTBEAT_SECONDS)
            # read again: readiness and age change without a new snapshot
            message = sse_message(view(hub.shown(SNAPSHOT_STALE_SECONDS)))
    except ConnectionResetError:
        pass  # the display went away; nothing to tell anyone
    return response


def sse_message(view: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``view`` as compact JSON (never multi-line)."""
    data = json.dumps(view, separators=(",", ":"), allow_nan=False)
    return f"data: {data}\n\n".encode()


def parse_queue_filter(text: str) -> frozenset[str] | None:
    """``"sales, support"`` -> those ids; ``None`` (every queue) when none is named."""
    queue_ids = frozenset(part.strip() for part in text.split(",") if part.strip())
    return queue_ids or None


def wallboard_view(snapshot: Snapshot, queue_ids: frozenset[str] | None = None) -> dict[str, Any]:
    """The part of ``snapshot`` the page shows, field by field, for the queues asked for."""
    queues = [
        _queue_view(queue)
        for queue in _mappings(snapshot.get("queues"))
        if _token(queue.get("queue_id")) and (queue_ids is None or queue["queue_id"] in queue_ids)
    ]
    ts = snapshot.get("ts")
    return {
        "ts": ts if isinstance(ts, str) and len(ts) <= 40 else None,
        "ready": snapshot.get("ready") is True,
        "queues": queues,
    }


def _queue_view(queue: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"queue_id": queue["queue_id"]}
    view.update(_numbers(queue, _QUEUE_NUMBERS))
    view["agents"] = _numbers(_mapping(queue.get("agents")), AGENT_STATES)
    view["policy"] = _numbers(_mapping(queue.get("policy")), _POLICY_NUMBERS)
    view["windows"] = {
        label: _numbers(_mapping(window), _WINDOW_NUMBERS)
        for label, window in _mapping(queue.get("windows")).items()
        if _token(label)
    }
    if "callbacks" in queue:
        callbacks = _mapping(queue["callbacks"])
        view["callbacks"] = _numbers(callbacks, ("pending",)) | {
            "results": _numbers(_mapping(callbacks.get("results")), ("reached",))}
    trend = _mapping(queue.get("trend"))
    view["trend"] = {name: _series(trend.get(name)) for name in _TRENDS}
    if "journeys" in queue:
        view["journeys"] = _numbers(_mapping(queue["journeys"]), _JOURNEY_NUMBERS)
    if "alerts" in queue:
        view["alerts"] = [_alert_view(alert) for alert in _mappings(queue["alerts"])]
    return view


def agents_view(snapshot: Snapshot, queue_id: str | None = None) -> dict[str, Any]:
    """The agents the team lead's view shows (those serving ``queue_id``, or all)."""
    agents = [
        _agent_view(agent)
        for agent in _mappings(snapshot.get("agents"))
        if _token(agent.get("agent_id")) and _token(agent.get("state"))
        and (queue_id is None or queue_id in _tokens(agent.get("queues")))
    ]
    ts = snapshot.get("ts")
    return {
        "ts": ts if isinstance(ts, str) and len(ts) <= 40 else None,
        "ready": snapshot.get("ready") is True,
        "queue": queue_id if _token(queue_id) else None,
        "agents": agents,
    }


def _agent_view(agent: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "agent_id": agent["agent_id"],
        "state": agent["state"],
        "state_seconds": _number(agent.get("state_seconds")),
        "queues": _tokens(agent.get("queues")),
        "windows": {
            label: _numbers(_mapping(window), ("answered", "aht_seconds", "occupancy"))
            for label, window in _mapping(agent.get("windows")).items()
            if _token(label)
        },
    }


def _tokens(value: Any) -> list[str]:
    return [item for item in value if _token(item)] if isinstance(value, list) else []


def _alert_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        key: alert[key] for key in ("kind", "status", "window") if _token(alert.get(key))
    }
    view.update(_numbers(alert, _ALERT_NUMBERS))
    return view


def _series(value: Any) -> list[tuple[float | int, float | int | None]]:
    """A sparkline's points: (time, value) pairs of numbers, at most ``_TREND_POINTS``."""
    if not isinstance(value, list | tuple):
        return []
    points = [(t, _number(v)) for t, v in (p for p in value if isinstance(p, list | tuple)
                                             and len(p) == 2)
              if _number(t) is not None]
    return points[-_TREND_POINTS:]


def _numbers(source: Mapping[str, Any], keys: Iterable[str]) -> dict[str, float | int | None]:
    """Each key of ``keys`` as a finite number, or ``None`` where absent or not a number."""
    return {key: _number(source.get(key)) for key in keys}


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _token(value: Any) -> bool:
    return isinstance(value, str) and bool(_TOKEN_RE.match(value))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
