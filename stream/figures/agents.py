"""Pure arithmetic of contract §2 "Per agent": from stored sums to the team lead's figures.

Calls answered and handle times are counted per agent in each queue's window buckets, so
they are summed over the queues here. Time in a staffed state (available, busy, wrapup) is
counted when the state ends, split over the buckets at their edges; the state still open
is closed at ``now`` here, counting from the later of its start and the window's old edge
(the edge of the first bucket the window reads, as for every windowed figure).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stream.config import format_duration
from stream.figures.queue import ratio
from stream.vocabulary import STAFFED_STATES

#: agent_id -> (state, queues served, since: ts in ms of the event that began the state)
AgentStates = Mapping[str, tuple[str, list[str], int]]
#: window_s -> agent_id -> staffed state -> ms spent in it (states already ended)
StateMs = Mapping[int, Mapping[str, Mapping[str, int]]]
#: queue_id -> window_s (as read) -> figure -> sum, the queues' raw window sums
QueueWindows = Mapping[str, Mapping[str, Mapping[str, float]]]
#: The per-agent fields in a queue's buckets (see apply_queue.lua).
_AGENT_FIELDS = ("answered", "handled", "handle_ms")


def calls_by_agent(queue_windows: QueueWindows) -> dict[int, dict[str, dict[str, float]]]:
    """window_s -> agent_id -> answered/handled/handle_ms, summed over the queues."""
    sums: dict[int, dict[str, dict[str, float]]] = {}
    for windows in queue_windows.values():
        for window, figures in windows.items():
            per_agent = sums.setdefault(int(window), {})
            for field, amount in figures.items():
                name, _, agent = field.partition("|")
                if agent and name in _AGENT_FIELDS:
                    mine = per_agent.setdefault(agent, {})
                    mine[name] = mine.get(name, 0) + amount
    return sums


def window_start_ms(now_ms: int, window_s: int, bucket_s: int) -> int:
    """The old edge of a window: the start of the bucket holding now - window."""
    return int((now_ms / 1000 - window_s) // bucket_s) * bucket_s * 1000


def occupancy(state_ms: Mapping[str, float]) -> float | None:
    """(busy + wrapup) / (available + busy + wrapup); absent while the divisor is 0."""
    working = state_ms.get("busy", 0) + state_ms.get("wrapup", 0)
    return ratio(working, working + state_ms.get("available", 0))


def agent_snapshots(states: AgentStates, state_ms: StateMs, queue_windows: QueueWindows,
                    windows: list[tuple[int, int]], shown: list[int], now_ms: int,
                    format_ts: Callable[[int], str]) -> list[dict[str, Any]]:
    """Each tracked agent's live figures (the shape of ``/api/agents/{id}``), by id.

    ``windows`` are the (window_s, bucket_s) pairs the state was read with; ``shown``
    the windows to report.
    """
    calls = calls_by_agent(queue_windows)
    bucket_of = dict(windows)
    # Worked out once per refresh, not per agent: it runs twice a second for every agent.
    edges = [(format_duration(window), calls.get(window, {}), state_ms.get(window, {}),
              window_start_ms(now_ms, window, bucket_of[window])) for window in shown]
    agents = []
    for agent_id in sorted(states):
        state, queues, since = states[agent_id]
        per_window = {}
        for label, window_calls, window_ms, edge in edges:
            mine = window_calls.get(agent_id, {})
            timed = dict(window_ms.get(agent_id, {}))
            if state in STAFFED_STATES:
                timed[state] = timed.get(state, 0) + max(0, now_ms - max(since, edge))
            aht_ms = ratio(mine.get("handle_ms", 0), mine.get("handled", 0))
            per_window[label] = {
                "answered": int(mine.get("answered", 0)),
                "aht_seconds": None if aht_ms is None else aht_ms / 1000,
                "occupancy": occupancy(timed),
                "state_seconds": {s: timed.get(s, 0) / 1000 for s in STAFFED_STATES},
            }
        agents.append({
            "agent_id": agent_id,
            "state": state,
            "since": format_ts(since),
            "state_seconds": max(0.0, (now_ms - since) / 1000),
            "queues": queues,
            "windows": per_window,
        })
    return agents
