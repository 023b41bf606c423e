"""Pure arithmetic of contract §2: from stored sums to the figures people read.

Nothing here does I/O, so every definition is unit-tested from plain numbers.
"""

from __future__ import annotations

from typing import Any

from .config import STAFFING_WINDOW_SECONDS, QueuePolicy, format_duration
from .erlang import agents_required

#: The outcomes of ``callstream_queue_window_calls`` and ``callstream_calls_total``.
OUTCOMES: tuple[str, ...] = (
    "offered",
    "answered",
    "answered_in_sla",
    "abandoned",
    "short_abandoned",
    "callback_offered",
    "callback_accepted",
    "transferred_out",
)
#: The kinds of alert callstream decides (contract §4), for ``callstream_alert_firing``.
ALERT_KINDS: tuple[str, ...] = ("abandonment_spike",)
AGENT_STATES: tuple[str, ...] = ("available", "busy", "wrapup", "away", "offline")
#: Staffed agents can take or are working calls; EWT and Erlang C count only them.
STAFFED_STATES: tuple[str, ...] = ("available", "busy", "wrapup")


def ratio(numerator: float, divisor: float) -> float | None:
    """A ratio or mean, absent (None) while its divisor is 0."""
    return numerator / divisor if divisor > 0 else None


def window_figures(sums: dict[str, float]) -> dict[str, Any]:
    """Counts, service level, abandon ratio, ASA and AHT of one window's sums.

    ``answered_waited``/``abandoned_waited`` count only legs with a known wait: orphans
    are left out of the service level and ASA, but not of the abandon ratio.
    """
    counts = {outcome: int(sums.get(outcome, 0)) for outcome in OUTCOMES}
    short = counts["short_abandoned"]
    waited = sums.get("answered_waited", 0) + sums.get("abandoned_waited", 0) - short
    calls = counts["answered"] + counts["abandoned"] - short
    wait_ms = sums.get("wait_ms", 0)
    handle_ms = sums.get("handle_ms", 0)
    asa = ratio(wait_ms, sums.get("answered_waited", 0))
    aht = ratio(handle_ms, sums.get("handled", 0))
    return counts | {
        "service_level": ratio(counts["answered_in_sla"], waited),
        "abandon_ratio": ratio(counts["abandoned"] - short, calls),
        "asa_seconds": None if asa is None else asa / 1000,
        "aht_seconds": None if aht is None else aht / 1000,
    }


def estimated_wait_seconds(waiting: int, agents: dict[str, int], aht_seconds: float | None
                           ) -> float | None:
    """EWT for a caller joining now: the calls ahead of it, served by the staffed agents.

    A caller who joins finds ``waiting`` calls ahead; free agents take the first of them
    at once, and the rest are served at the rate ``staffed / AHT``:
    ``EWT = max(0, waiting + 1 - available) * AHT / staffed``. Absent while no agent is
    staffed or AHT is unknown.
    """
    staffed = sum(agents.get(state, 0) for state in STAFFED_STATES)
    if staffed == 0 or aht_seconds is None:
        return None
    ahead = max(0, waiting + 1 - agents.get("available", 0))
    return ahead * aht_seconds / staffed


def queue_snapshot(queue_id: str, raw: dict[str, Any], agents: dict[str, int],
                   policy: QueuePolicy, windows: list[int], now_ms: int) -> dict[str, Any]:
    """One queue's live snapshot: the shape of ``/api/queues/{id}`` and the metrics."""
    by_window = {int(w): window_figures(sums) for w, sums in raw["windows"].items()}
    staffing = by_window[STAFFING_WINDOW_SECONDS]
    oldest = raw["oldest_ms"]
    waiting = int(raw["waiting"])
    required = agents_required(
        staffing["offered"] / STAFFING_WINDOW_SECONDS,
        staffing["aht_seconds"],
        policy.sla_seconds,
        policy.service_level_target,
    )
    return {
        "queue_id": queue_id,
        "waiting": waiting,
        "longest_wait_seconds": max(0.0, (now_ms - oldest) / 1000) if waiting else 0.0,
        "ewt_seconds": estimated_wait_seconds(waiting, agents, staffing["aht_seconds"]),
        "agents": {state: agents.get(state, 0) for state in AGENT_STATES},
        "agents_required": required,
        "policy": {
            "sla_seconds": policy.sla_seconds,
            "short_abandon_seconds": policy.short_abandon_seconds,
            "service_level_target": policy.service_level_target,
            "callback_wait_seconds": policy.callback_wait_seconds,
        },
        "windows": {format_duration(w): by_window[w] for w in windows},
        "totals": {outcome: int(raw["totals"].get(outcome, 0)) for outcome in OUTCOMES},
    }


def agents_by_queue(states: dict[str, tuple[str, list[str], int]]
                    ) -> dict[str, dict[str, int]]:
    """Agents per state per queue; an agent counts in every queue it lists."""
    counts: dict[str, dict[str, int]] = {}
    for state, queues, _since in states.values():
        for queue_id in queues:
            per_state = counts.setdefault(queue_id, {})
            per_state[state] = per_state.get(state, 0) + 1
    return counts
