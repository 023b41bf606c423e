"""Pure arithmetic of contract §2: from stored sums to the figures people read.

Nothing here does I/O, so every definition is unit-tested from plain numbers.
"""

from __future__ import annotations

import math
from typing import Any

from stream.config import STAFFING_WINDOW_SECONDS, QueuePolicy, format_duration
from stream.figures.erlang import agents_required
from stream.vocabulary import (
    AGENT_STATES,
    CALLBACK_KINDS,
    CALLBACK_REFUSALS,
    CALLBACK_RESULTS,
    OUTCOMES,
    STAFFED_STATES,
)


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


#: Queues up to this long are summed term by term; longer ones in closed form.
_EWT_TERMS_SUMMED = 100


def estimated_wait_seconds(waiting: int, agents: dict[str, int], aht_seconds: float | None,
                           patience_seconds: float | None = None) -> float | None:
    """EWT for a caller with ``waiting`` calls ahead (a caller joining now: every waiting call).

    Erlang A's expected wait given the queue (docs/ewt.md): free agents take the first
    calls at once; the ``n = max(0, waiting + 1 - available)`` calls left, this caller's
    own included, move up as staffed agents finish calls (one every ``AHT / staffed``
    seconds) and as callers ahead hang up (each at the rate ``1 / patience``). With ``j``
    callers ahead, the next move comes after ``1 / (staffed / AHT + j / patience)`` on
    average, so ``EWT = sum(1 / (staffed / AHT + j / patience) for j in range(n))``: with
    no patience known (nobody hangs up), ``n * AHT / staffed``. Computed in bounded time
    whatever ``waiting`` is. Absent while no agent is staffed or AHT is unknown.
    """
    staffed = sum(agents.get(state, 0) for state in STAFFED_STATES)
    if staffed == 0 or aht_seconds is None:
        return None
    ahead = max(0, waiting + 1 - agents.get("available", 0))
    between_answers = aht_seconds / staffed
    if patience_seconds is None or math.isinf(patience_seconds) or between_answers == 0:
        return ahead * between_answers
    # Sum of between / (1 + j * step): exact for short queues, else by the digamma function.
    step = between_answers / patience_seconds
    if ahead <= _EWT_TERMS_SUMMED:
        return sum(between_answers / (1 + j * step) for j in range(ahead))
    return (_digamma(1 / step + ahead) - _digamma(1 / step)) * patience_seconds


def _digamma(x: float) -> float:
    """ψ(x) for x > 0, to about 1e-12: the recurrence up to 10, then the asymptotic series."""
    shift = 0.0
    while x < 10:
        shift -= 1 / x
        x += 1
    inverse_square = 1 / (x * x)
    series = inverse_square * (1 / 12 - inverse_square * (1 / 120 - inverse_square * (
        1 / 252 - inverse_square * (1 / 240 - inverse_square / 132))))
    return shift + math.log(x) - 0.5 / x - series


def caller_patience_seconds(figures: dict[str, Any]) -> float | None:
    """Mean caller patience measured over one window's figures (``window_figures``).

    With exponential patience its estimate is the time callers spent waiting ÷ the calls
    abandoned. Callstream keeps the waits of answered calls (ASA) but not of abandoned
    ones, which are taken to have waited as long on average:
    ``(answered + abandoned) × ASA ÷ abandoned``. None (nobody hangs up, as far as is
    known) while nothing was abandoned or no answered call's wait is known.
    """
    abandoned = figures["abandoned"]
    asa = figures["asa_seconds"]
    if abandoned <= 0 or asa is None or asa <= 0:
        return None
    return float((figures["answered"] + abandoned) * asa / abandoned)


def caller_ewt_seconds(position: int, agents: dict[str, int], staffing: dict[str, Any]
                       ) -> float | None:
    """EWT of the caller at ``position`` in a queue (1: answered next; a caller joining now
    is at ``waiting + 1``), from the queue's agents by state and its figures over the 15 m
    staffing window (``window_figures``): the calls ahead of it are ``position - 1``."""
    return estimated_wait_seconds(position - 1, agents, staffing["aht_seconds"],
                                  caller_patience_seconds(staffing))


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
        "ewt_seconds": caller_ewt_seconds(waiting + 1, agents, staffing),
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
        "callbacks": callback_figures(raw.get("callbacks", {}), int(raw.get("offers_open", 0))),
        "trend": trend_figures(raw.get("trend") or [], raw.get("waited") or {}, now_ms),
    }


def trend_figures(buckets: list[list[Any]], waited: dict[str, float], now_ms: int
                  ) -> dict[str, list[tuple[int, float | None]]]:
    """Where the queue went over the last hour, for the wallboard's sparklines: service
    level per bucket of the 1 h window (None where no call ended), calls waiting per
    minute; (epoch seconds, value), oldest first."""
    since_minute = now_ms // 60_000 - 60
    service_level = [(int(start), window_figures(sums)["service_level"])
                     for start, sums in buckets]
    waiting = sorted((int(minute) * 60, n) for minute, n in waited.items()
                     if int(minute) > since_minute)
    return {"service_level": service_level, "waiting": waiting}


def callback_figures(counts: dict[str, float], pending: int) -> dict[str, Any]:
    """Offers made by kind, closed by result, refused by reason, and open now."""
    def group(prefix: str, names: tuple[str, ...]) -> dict[str, int]:
        return {name: int(counts.get(f"{prefix}:{name}", 0)) for name in names}

    return {"pending": pending, "offered": group("offered", CALLBACK_KINDS),
            "results": group("result", CALLBACK_RESULTS),
            "refusals": group("refused", CALLBACK_REFUSALS)}


def agents_by_queue(states: dict[str, tuple[str, list[str], int]]
                    ) -> dict[str, dict[str, int]]:
    """Agents per state per queue; an agent counts in every queue it lists."""
    counts: dict[str, dict[str, int]] = {}
    for state, queues, _since in states.values():
        for queue_id in queues:
            per_state = counts.setdefault(queue_id, {})
            per_state[state] = per_state.get(state, 0) + 1
    return counts
