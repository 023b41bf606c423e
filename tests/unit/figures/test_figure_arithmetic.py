"""Contract §2 arithmetic: window figures, EWT, the queue snapshot, agents, window buckets."""

from __future__ import annotations

from typing import Any

import pytest

from stream.config import QueuePolicy
from stream.figures.queue import (
    AGENT_STATES,
    OUTCOMES,
    agents_by_queue,
    estimated_wait_seconds,
    queue_snapshot,
    ratio,
    window_figures,
)
from stream.figures.windows import bucket_windows
from stream.parse.events import CallQueued, parse
from stream.timefmt import rfc3339 as iso

NOW_MS = 1_795_342_530_250

#: One window's stored sums: 2 answered and 1 abandoned leg are orphans (no known wait).
SUMS: dict[str, float] = {
    "offered": 20,
    "answered": 12,
    "answered_in_sla": 9,
    "abandoned": 5,
    "short_abandoned": 1,
    "callback_offered": 2,
    "callback_accepted": 1,
    "transferred_out": 3,
    "answered_waited": 10,
    "abandoned_waited": 4,
    "wait_ms": 150_000,
    "handled": 8,
    "handle_ms": 1_440_000,
}


# --- ratio ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numerator", "divisor", "expected"),
    [(1, 2, 0.5), (3, 3, 1.0), (0, 5, 0.0), (1, 0, None), (0, 0, None), (7.5, 2.5, 3.0)],
)
def test_ratio(numerator: float, divisor: float, expected: float | None) -> None:
    assert ratio(numerator, divisor) == expected


# --- window_figures ---------------------------------------------------------------------------


def test_window_figures_definitions() -> None:
    figures = window_figures(SUMS)
    assert {outcome: figures[outcome] for outcome in OUTCOMES} == {
        "offered": 20,
        "answered": 12,
        "answered_in_sla": 9,
        "abandoned": 5,
        "short_abandoned": 1,
        "callback_offered": 2,
        "callback_accepted": 1,
        "transferred_out": 3,
    }
    # answered_in_sla / (answered_waited + abandoned_waited - short): orphans left out.
    assert figures["service_level"] == pytest.approx(9 / 13)
    # (abandoned - short) / (answered + abandoned - short): orphans counted.
    assert figures["abandon_ratio"] == pytest.approx(4 / 16)
    assert figures["asa_seconds"] == pytest.approx(15.0)
    assert figures["aht_seconds"] == pytest.approx(180.0)


def test_window_figures_outcomes_are_the_contracts() -> None:
    assert OUTCOMES == (
        "offered",
        "answered",
        "answered_in_sla",
        "abandoned",
        "short_abandoned",
        "callback_offered",
        "callback_accepted",
        "transferred_out",
    )


def test_counts_are_integers_even_from_float_sums() -> None:
    figures = window_figures({key: float(value) for key, value in SUMS.items()})
    for outcome in OUTCOMES:
        assert type(figures[outcome]) is int
    assert figures["service_level"] == pytest.approx(9 / 13)


def test_empty_window_has_zero_counts_and_no_ratios() -> None:
    figures = window_figures({})
    assert all(figures[outcome] == 0 for outcome in OUTCOMES)
    assert figures["service_level"] is None
    assert figures["abandon_ratio"] is None
    assert figures["asa_seconds"] is None
    assert figures["aht_seconds"] is None


def test_orphan_abandons_only_have_an_abandon_ratio() -> None:
    figures = window_figures({"offered": 0, "abandoned": 2})
    assert figures["service_level"] is None
    assert figures["abandon_ratio"] == 1.0
    assert figures["asa_seconds"] is None


def test_only_short_abandons_have_no_ratios() -> None:
    figures = window_figures(
        {"offered": 3, "abandoned": 3, "short_abandoned": 3, "abandoned_waited": 3}
    )
    assert figures["abandoned"] == 3
    assert figures["service_level"] is None
    assert figures["abandon_ratio"] is None


def test_all_answered_in_sla() -> None:
    figures = window_figures(
        {"answered": 4, "answered_in_sla": 4, "answered_waited": 4, "wait_ms": 8_000}
    )
    assert figures["service_level"] == 1.0
    assert figures["abandon_ratio"] == 0.0
    assert figures["asa_seconds"] == 2.0


def test_orphan_answers_have_no_asa_but_count_as_answered() -> None:
    figures = window_figures({"answered": 3, "handled": 1, "handle_ms": 60_500})
    assert figures["answered"] == 3
    assert figures["asa_seconds"] is None
    assert figures["service_level"] is None
    assert figures["abandon_ratio"] == 0.0
    assert figures["aht_seconds"] == 60.5


def test_aht_absent_until_a_leg_has_ended() -> None:
    figures = window_figures({"answered": 2, "answered_waited": 2, "wait_ms": 4_000})
    assert figures["asa_seconds"] == 2.0
    assert figures["aht_seconds"] is None


# --- EWT --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "agents", "aht", "expected"),
    [
        # free agents take the new caller at once
        (0, {"available": 2, "busy": 1}, 180.0, 0.0),
        (1, {"available": 2}, 180.0, 0.0),
        # (waiting + 1 - available) * AHT / staffed
        (0, {"busy": 2}, 180.0, 90.0),
        (4, {"available": 1, "busy": 3, "wrapup": 1}, 180.0, 144.0),
        (9, {"busy": 4, "away": 3, "offline": 5}, 120.0, 300.0),
        (2, {"wrapup": 1}, 30.0, 90.0),
    ],
)
def test_estimated_wait(waiting: int, agents: dict[str, int], aht: float, expected: float) -> None:
    assert estimated_wait_seconds(waiting, agents, aht) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("agents", "aht"),
    [
        ({}, 180.0),
        ({"away": 3, "offline": 2}, 180.0),
        ({"available": 0, "busy": 0, "wrapup": 0}, 180.0),
        ({"available": 2, "busy": 1}, None),
    ],
)
def test_estimated_wait_absent(agents: dict[str, int], aht: float | None) -> None:
    assert estimated_wait_seconds(3, agents, aht) is None


def test_estimated_wait_grows_with_the_queue_and_shrinks_with_staff() -> None:
    agents = {"available": 0, "busy": 5}
    waits = [estimated_wait_seconds(n, agents, 200.0) or 0.0 for n in range(5)]
    assert waits == [40.0, 80.0, 120.0, 160.0, 200.0]
    more_staff = estimated_wait_seconds(4, {"busy": 10}, 200.0)
    less_staff = estimated_wait_seconds(4, {"busy": 5}, 200.0)
    assert more_staff is not None and less_staff is not None
    assert more_staff < less_staff


# --- queue_snapshot ---------------------------------------------------------------------------


def raw_queue(
    waiting: int = 3, oldest_ms: int = NOW_MS - 42_500, offered_15m: float = 50
) -> dict[str, Any]:
    """What read_queue.lua returns: window keys are seconds as JSON strings."""
    staffing = {
        "offered": offered_15m,
        "answered": 40,
        "answered_in_sla": 30,
        "answered_waited": 40,
        "wait_ms": 400_000,
        "handled": 10,
        "handle_ms": 1_800_000,  # AHT 180 s
    }
    return {
        "waiting": waiting,
        "oldest_ms": oldest_ms,
        "totals": {"offered": 500, "answered": 450, "abandoned": 20},
        "windows": {"300": SUMS, "900": staffing, "3600": {}},
    }


def test_queue_snapshot() -> None:
    snapshot = queue_snapshot(
        "sales", raw_queue(), {"available": 1, "busy": 2}, QueuePolicy(), [300, 900, 3600], NOW_MS
    )
    assert snapshot["queue_id"] == "sales"
    assert snapshot["waiting"] == 3
    assert snapshot["longest_wait_seconds"] == pytest.approx(42.5)
    # EWT from the 15 m AHT: (3 + 1 - 1) * 180 / 3
    assert snapshot["ewt_seconds"] == pytest.approx(180.0)
    assert snapshot["agents"] == {
        "available": 1,
        "busy": 2,
        "wrapup": 0,
        "away": 0,
        "offline": 0,
    }
    # 50 calls in 15 m (100 per 30 min), AHT 180 s, 80 % in 20 s: the textbook 14 agents.
    assert snapshot["agents_required"] == 14
    assert snapshot["policy"] == {
        "sla_seconds": 20,
        "short_abandon_seconds": 5,
        "service_level_target": 0.8,
        "callback_wait_seconds": 120,
    }
    assert list(snapshot["windows"]) == ["5m", "15m", "1h"]
    assert snapshot["windows"]["5m"] == window_figures(SUMS)
    assert snapshot["windows"]["15m"]["aht_seconds"] == pytest.approx(180.0)
    assert snapshot["windows"]["1h"]["service_level"] is None
    assert snapshot["totals"] == {
        outcome: {"offered": 500, "answered": 450, "abandoned": 20}.get(outcome, 0)
        for outcome in OUTCOMES
    }
    assert list(snapshot["agents"]) == list(AGENT_STATES)


def test_queue_snapshot_uses_the_queues_policy() -> None:
    strict = QueuePolicy(service_level_target=0.9, sla_seconds=20)
    snapshot = queue_snapshot("sales", raw_queue(), {}, strict, [300], NOW_MS)
    assert snapshot["agents_required"] == 15
    assert snapshot["policy"]["service_level_target"] == 0.9


def test_queue_snapshot_shows_only_configured_windows() -> None:
    snapshot = queue_snapshot("sales", raw_queue(), {"busy": 1}, QueuePolicy(), [300], NOW_MS)
    assert list(snapshot["windows"]) == ["5m"]
    # the staffing figures still come from the 15 m window
    assert snapshot["agents_required"] == 14
    assert snapshot["ewt_seconds"] == pytest.approx((3 + 1) * 180.0)


def test_queue_snapshot_without_waiting_calls() -> None:
    snapshot = queue_snapshot(
        "sales", raw_queue(waiting=0, oldest_ms=-1), {"available": 2}, QueuePolicy(), [300], NOW_MS
    )
    assert snapshot["waiting"] == 0
    assert snapshot["longest_wait_seconds"] == 0.0
    assert snapshot["ewt_seconds"] == 0.0


def test_longest_wait_never_negative() -> None:
    raw = raw_queue(waiting=1, oldest_ms=NOW_MS + 5_000)
    snapshot = queue_snapshot("sales", raw, {}, QueuePolicy(), [300], NOW_MS)
    assert snapshot["longest_wait_seconds"] == 0.0


def test_queue_snapshot_without_staff_or_calls() -> None:
    snapshot = queue_snapshot(
        "sales", raw_queue(offered_15m=0), {"away": 2}, QueuePolicy(), [300], NOW_MS
    )
    assert snapshot["ewt_seconds"] is None
    assert snapshot["agents_required"] == 0
    assert snapshot["agents"]["away"] == 2


def test_queue_snapshot_without_aht() -> None:
    raw = raw_queue()
    raw["windows"]["900"] = {"offered": 10}
    snapshot = queue_snapshot("sales", raw, {"available": 1}, QueuePolicy(), [300], NOW_MS)
    assert snapshot["ewt_seconds"] is None
    assert snapshot["agents_required"] is None


# --- agents_by_queue --------------------------------------------------------------------------


def test_agents_count_in_every_queue_they_list() -> None:
    states = {
        "SIP:1001": ("available", ["sales", "support"], 0),
        "SIP:1002": ("busy", ["sales"], 0),
        "SIP:1003": ("available", ["sales"], 0),
        "SIP:1004": ("wrapup", ["support"], 0),
        "SIP:1005": ("offline", [], 0),
    }
    assert agents_by_queue(states) == {
        "sales": {"available": 2, "busy": 1},
        "support": {"available": 1, "wrapup": 1},
    }


def test_no_agents() -> None:
    assert agents_by_queue({}) == {}


# --- window buckets ---------------------------------------------------------------------------


def test_default_windows_buckets() -> None:
    assert bucket_windows([300, 900, 3600]) == [(300, 10), (900, 30), (3600, 120)]


@pytest.mark.parametrize(
    "windows",
    [[300, 900, 3600], [60, 3600], [3600, 300], [30], [45, 7200, 86400], [900], [31, 59, 901]],
)
def test_every_bucket_at_most_a_thirtieth_and_staffing_window_present(
    windows: list[int],
) -> None:
    buckets = bucket_windows(windows)
    # the 15 m staffing window and the 1 h trend window are always kept
    assert [window for window, _ in buckets] == sorted(set(windows) | {900, 3600})
    for window, bucket in buckets:
        assert 1 <= bucket <= window / 30


def test_staffing_window_added_once() -> None:
    assert bucket_windows([60, 3600]) == [(60, 2), (900, 30), (3600, 120)]
    assert bucket_windows([900, 900]) == [(900, 30), (3600, 120)]


# --- iso --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (NOW_MS, "2026-11-22T10:15:30.250Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (NOW_MS - 243, "2026-11-22T10:15:30.007Z"),
        (NOW_MS + 749, "2026-11-22T10:15:30.999Z"),
        (NOW_MS + 750, "2026-11-22T10:15:31.000Z"),
    ],
)
def test_iso(ms: int, text: str) -> None:
    assert iso(ms) == text


def test_iso_round_trips_through_the_event_parser() -> None:
    for ms in range(NOW_MS, NOW_MS + 2_000, 7):
        event = parse(
            b'{"event_id":"e","type":"call.queued","ts":"%s","call_id":"c","queue_id":"q"}'
            % iso(ms).encode(),
            NOW_MS + 10_000,
        )
        assert isinstance(event, CallQueued)
        assert event.ts == ms
