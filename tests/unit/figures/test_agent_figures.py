"""The per-agent arithmetic of contract §2 from plain numbers."""

from __future__ import annotations

import pytest

from stream.figures.agents import agent_snapshots, calls_by_agent, occupancy, window_start_ms


def test_occupancy_is_working_time_over_staffed_time_and_absent_without_it() -> None:
    assert occupancy({"available": 30, "busy": 50, "wrapup": 20}) == pytest.approx(0.7)
    assert occupancy({"available": 10}) == 0.0
    assert occupancy({}) is None


def test_calls_are_summed_over_queues_and_queue_figures_left_alone() -> None:
    queues = {"q": {"300": {"answered": 3, "answered|a1": 2, "handled|a1": 1,
                            "handle_ms|a1": 60_000}},
              "r": {"300": {"answered|a1": 1, "handle_ms|a:b": 5, "handled|a:b": 1}}}
    assert calls_by_agent(queues) == {300: {
        "a1": {"answered": 3, "handled": 1, "handle_ms": 60_000},
        "a:b": {"handle_ms": 5, "handled": 1}}}


def test_a_window_starts_at_the_bucket_holding_its_old_edge() -> None:
    assert window_start_ms(1_000_000, 300, 10) == 700_000
    assert window_start_ms(1_005_500, 300, 10) == 700_000
    assert window_start_ms(1_010_000, 300, 10) == 710_000


def test_the_open_state_counts_from_its_start_or_the_window_edge_up_to_now() -> None:
    states = {"a1": ("busy", ["q"], 900_000), "a2": ("away", [], 0)}
    state_ms = {300: {"a1": {"available": 100_000}}}
    [a1, a2] = agent_snapshots(states, state_ms, {}, [(300, 10)], [300], 1_000_000, str)
    assert a1["state_seconds"] == 100 and a1["since"] == "900000"
    assert a1["windows"]["5m"]["occupancy"] == pytest.approx(0.5)
    assert a2["windows"]["5m"] == {"answered": 0, "aht_seconds": None, "occupancy": None,
                                   "state_seconds": {"available": 0, "busy": 0, "wrapup": 0}}
    [a1, _] = agent_snapshots({**states, "a1": ("busy", ["q"], 0)}, {}, {}, [(300, 10)],
                              [300], 1_000_000, str)
    assert a1["windows"]["5m"]["state_seconds"]["busy"] == 300  # from the edge, 700 s
