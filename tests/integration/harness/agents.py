"""The simulator's centre (breaks, wrap-up, transfers, two skills) and the check of every
agent's figures against the simulator's own record of what each agent did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from harness.centre import WINDOWS
from harness.probes import http_json, wait_until
from stream.figures.agents import window_start_ms
from stream.figures.windows import bucket_windows
from stream.tools.simulate import (
    AgentConfig,
    AgentDay,
    QueueConfig,
    SimulationConfig,
    generate_with_record,
)


def expected_from_record(day: AgentDay, since_ms: int, now_ms: int) -> dict[str, Any]:
    """Answered, AHT and occupancy over (since_ms, now_ms] from the simulator's record."""
    handles = [ms for end, ms in day.handled if since_ms <= end <= now_ms]
    timed = {"available": 0, "busy": 0, "wrapup": 0}
    for (start, state), (end, _) in zip(day.states, [*day.states[1:], (now_ms, "")],
                                        strict=True):
        if state in timed:
            timed[state] += max(0, min(end, now_ms) - max(start, since_ms))
    staffed = sum(timed.values())
    return {
        "answered": sum(since_ms <= at <= now_ms for at in day.answered_ms),
        "aht_seconds": sum(handles) / len(handles) / 1000 if handles else None,
        "occupancy": (timed["busy"] + timed["wrapup"]) / staffed if staffed else None,
    }


def simulated_centre(start_ms: int, seconds: float) -> tuple[list[dict[str, Any]],
                                                             dict[str, AgentDay]]:
    """The simulator's centre (breaks, wrap-up, transfers, two skills) from ``start_ms``."""
    config = SimulationConfig(
        queues=(QueueConfig("sales", 0.06, 150.0), QueueConfig("support", 0.04, 200.0)),
        agents=tuple(AgentConfig(f"agent-{i}", ("sales", "support") if i % 3 == 0
                                 else (("sales",) if i % 2 else ("support",)))
                     for i in range(12)),
        seed=7, duration_seconds=seconds, wrapup_seconds=15.0, patience_seconds=90.0,
        transfer_fraction=0.1, break_every_seconds=1200.0, break_seconds=180.0,
    )
    return generate_with_record(config, datetime.fromtimestamp(start_ms / 1000, UTC))


def assert_as_recorded(figures: dict[str, dict[str, Any]], days: dict[str, AgentDay],
                       now_ms: int) -> int:
    """Every agent's answered, AHT and occupancy in every window as the record has them;
    returns the calls answered in the longest window."""
    assert set(figures) == set(days)
    checked = 0
    for agent_id, day in days.items():
        for window, (seconds, bucket) in zip(("5m", "15m", "1h"), bucket_windows(WINDOWS),
                                             strict=True):
            expected = expected_from_record(day, window_start_ms(now_ms, seconds, bucket),
                                            now_ms)
            got = figures[agent_id]["windows"][window]
            assert got["answered"] == expected["answered"], (agent_id, window)
            for key in ("aht_seconds", "occupancy"):
                if expected[key] is None:
                    assert got[key] is None, (agent_id, window, key)
                else:  # event times and the record's handle lengths are each rounded
                    # to the ms: a mean handle time may differ by up to 1 ms
                    tolerance = 1.0001e-3 if key == "aht_seconds" else 1e-12
                    assert got[key] == pytest.approx(expected[key], abs=tolerance), (
                        agent_id, window, key)
        checked += expected["answered"]
    return checked


async def api_agents_as_recorded(url: str, days: dict[str, AgentDay]) -> None:
    """Wait until ``/api/agents`` has every call of the record, then check every figure
    at the snapshot's own now."""
    recorded = {agent_id: len(day.answered_ms) for agent_id, day in days.items()}

    async def all_applied() -> bool:
        body = await http_json(url + "/api/agents")
        return {a["agent_id"]: a["windows"]["1h"]["answered"]
                for a in body["agents"]} == recorded

    await wait_until(all_applied, timeout=60)
    body = await http_json(url + "/api/agents")
    at = int(datetime.fromisoformat(body["ts"]).timestamp() * 1000)
    assert assert_as_recorded({a["agent_id"]: a for a in body["agents"]}, days, at) > 100
