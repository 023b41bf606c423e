"""The simulator: reproducible, contract-valid events, and figures that match queueing theory.

The validation tests measure service level and abandon ratio from the events exactly as the
contract defines them (section 2) and compare them with Erlang A / Erlang C. Tolerance: R
independent replications (different seeds, empty start, a warm-up discarded); the mean of
the R measured ratios must lie within 4 standard errors of the prediction, and the standard
error must be small enough for that to mean something (a bias of 2-3 % in service level
fails). The seeds are fixed, so the tests are deterministic; were the seeds drawn afresh, a
correct simulator would fail one of the four checks in about 1 run in 300.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stream.config import Settings
from stream.errors import ConfigError
from stream.figures.erlang import asa, erlang_a
from stream.tools import simulate
from stream.tools.simulate import (
    AgentConfig,
    Incident,
    QueueConfig,
    SimulationConfig,
    command_from_args,
    generate,
    produce,
)

START = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
SLA_SECONDS = 20.0
SHORT_ABANDON_SECONDS = 5.0

ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
CALL_FIELDS = {
    "call.queued": ({"call_id", "queue_id"}, {"caller", "priority"}),
    "call.answered": ({"call_id", "queue_id", "agent_id"}, set()),
    "call.abandoned": ({"call_id", "queue_id"}, set()),
    "call.callback_accepted": ({"call_id", "queue_id"}, set()),
    "call.transferred": ({"call_id", "queue_id", "to_queue_id"}, {"agent_id"}),
    "call.ended": ({"call_id", "queue_id"}, {"agent_id"}),
    "agent.state": ({"agent_id", "state", "queues"}, set()),
}
AGENT_STATES = {"available", "busy", "wrapup", "away", "offline"}


# -- measuring figures from events, as the contract defines them -------------------------


def epoch_ms(ts: str) -> int:
    return round(datetime.fromisoformat(ts).timestamp() * 1000)


@dataclass
class Figures:
    """Contract section 2 counts over legs whose wait started in the measured span."""

    answered: int = 0
    answered_in_sla: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answered_wait_seconds: float = 0.0
    unfinished: int = 0

    @property
    def divisor(self) -> int:
        return self.answered + self.abandoned - self.short_abandoned

    @property
    def service_level(self) -> float:
        return self.answered_in_sla / self.divisor

    @property
    def abandon_ratio(self) -> float:
        return (self.abandoned - self.short_abandoned) / self.divisor

    @property
    def asa(self) -> float:
        return self.answered_wait_seconds / self.answered


def measure(events: Iterable[dict[str, Any]], since: float, until: float) -> Figures:
    """Figures of the legs queued between ``since`` and ``until`` seconds after START.

    Only legs opened by ``call.queued`` count: the validation runs have no transfers.
    """
    origin = epoch_ms(START.isoformat())
    queued: dict[tuple[str, str], int] = {}
    figures = Figures()
    for event in events:
        kind = event["type"]
        if kind == "agent.state":
            continue
        leg = (event["call_id"], event["queue_id"])
        at = epoch_ms(event["ts"])
        if kind == "call.queued":
            if since * 1000 <= at - origin < until * 1000:
                queued[leg] = at
            continue
        started = queued.pop(leg, None)
        if started is None:
            continue
        wait = (at - started) / 1000
        if kind == "call.answered":
            figures.answered += 1
            figures.answered_in_sla += wait <= SLA_SECONDS
            figures.answered_wait_seconds += wait
        elif kind == "call.abandoned":
            figures.abandoned += 1
            figures.short_abandoned += wait < SHORT_ABANDON_SECONDS
    figures.unfinished = len(queued)
    return figures


def single_queue(
    agents: int, rate: float, aht: float, patience: float, seed: int, duration: float
) -> SimulationConfig:
    """A stationary M/M/c+M queue: no transfers, breaks, repeats or callbacks."""
    return SimulationConfig(
        queues=(QueueConfig("q", rate, aht),),
        agents=tuple(AgentConfig(f"a{i}", ("q",)) for i in range(agents)),
        seed=seed,
        duration_seconds=duration,
        patience_seconds=patience,
    )


@dataclass(frozen=True)
class Replicated:
    mean: float
    standard_error: float

    def agrees_with(self, predicted: float, k: float = 4.0) -> bool:
        return abs(self.mean - predicted) <= k * self.standard_error


def replicate(
    make: Callable[[int, float], SimulationConfig],
    seeds: Iterable[int],
    warm_up: float,
    measured: float,
    drain: float,
) -> dict[str, Replicated]:
    """Mean ± standard error over independent runs of each figure."""
    samples: dict[str, list[float]] = {"service_level": [], "abandon_ratio": [], "asa": []}
    for seed in seeds:
        config = make(seed, warm_up + measured + drain)
        figures = measure(generate(config, START), warm_up, warm_up + measured)
        assert figures.unfinished == 0, "the drain time is too short to finish every call"
        for name, values in samples.items():
            values.append(getattr(figures, name))
    return {
        name: Replicated(statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values)))
        for name, values in samples.items()
    }


# -- validation against queueing theory ------------------------------------------------------

REPLICATIONS = 20
WARM_UP = 600.0
MEASURED = 100_000.0
DRAIN = 1_200.0


def test_stationary_queue_matches_erlang_a() -> None:
    agents, rate, aht, patience = 5, 0.075, 60.0, 60.0  # 4.5 Erlangs, ~11 % abandon
    predicted = erlang_a(agents, rate, aht, patience, SLA_SECONDS, SHORT_ABANDON_SECONDS)
    measured = replicate(
        lambda seed, duration: single_queue(agents, rate, aht, patience, seed, duration),
        range(REPLICATIONS),
        WARM_UP,
        MEASURED,
        DRAIN,
    )
    service_level, abandon_ratio = measured["service_level"], measured["abandon_ratio"]
    assert service_level.standard_error < 0.005 and abandon_ratio.standard_error < 0.0025
    assert service_level.agrees_with(predicted.service_level), (service_level, predicted)
    assert abandon_ratio.agrees_with(predicted.abandon_ratio), (abandon_ratio, predicted)


def test_patient_callers_match_erlang_c() -> None:
    agents, rate, aht = 7, 5 / 60, 60.0  # 5 Erlangs on 7 agents, nobody hangs up
    load = rate * aht
    predicted = erlang_a(agents, rate, aht, math.inf, SLA_SECONDS, SHORT_ABANDON_SECONDS)
    measured = replicate(
        lambda seed, duration: single_queue(agents, rate, aht, math.inf, seed, duration),
        range(100, 100 + REPLICATIONS),
        WARM_UP,
        MEASURED,
        DRAIN,
    )
    assert measured["abandon_ratio"].mean == 0.0
    service_level, mean_wait = measured["service_level"], measured["asa"]
    assert service_level.standard_error < 0.006
    assert service_level.agrees_with(predicted.service_level), (service_level, predicted)
    assert mean_wait.agrees_with(asa(agents, load, aht)), (mean_wait, asa(agents, load, aht))


# -- reproducibility and the contract's event rules --------------------------------------------


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callstream")
    simulate.register(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


def featured(seed: int = 7) -> SimulationConfig:
    """Every feature on (the CLI defaults), office hours, a morning with an incident."""
    argv = f"--seed {seed} --duration 10800 --out x.jsonl --profile office --arrival-rate 0.03"
    argv += " --break-every 3600 --incident 5400:1200:0.5"
    return command_from_args(cli_args(*argv.split())).config


@pytest.fixture(scope="module")
def featured_events() -> list[dict[str, Any]]:
    return list(generate(featured(), START))


def test_same_seed_same_events(featured_events: list[dict[str, Any]]) -> None:
    assert list(generate(featured(), START)) == featured_events
    other_seed = list(generate(featured(8), START))
    assert other_seed[:50] != featured_events[:50]
    later = list(generate(featured(), START + timedelta(days=1)))
    assert not {e["event_id"] for e in later} & {e["event_id"] for e in featured_events}


def test_every_event_follows_the_contract(featured_events: list[dict[str, Any]]) -> None:
    seen_ids: set[str] = set()
    last_ts = ""
    for event in featured_events:
        required, optional = CALL_FIELDS[event["type"]]
        assert required <= event.keys() <= required | optional | {"event_id", "type", "ts"}
        assert isinstance(event["event_id"], str) and 1 <= len(event["event_id"]) <= 128
        assert event["event_id"] not in seen_ids
        seen_ids.add(event["event_id"])
        assert TS_RE.match(event["ts"]) and event["ts"] >= last_ts
        last_ts = event["ts"]
        for name in ("queue_id", "agent_id", "to_queue_id"):
            assert name not in event or ID_RE.match(event[name])
        if "call_id" in event:
            assert 1 <= len(event["call_id"]) <= 128 and event["call_id"].isprintable()
        if "caller" in event:
            assert E164_RE.match(event["caller"])
        if "priority" in event:
            assert type(event["priority"]) is int
        if event["type"] == "agent.state":
            assert event["state"] in AGENT_STATES
            assert event["queues"] and all(ID_RE.match(q) for q in event["queues"])
    assert epoch_ms(featured_events[0]["ts"]) == epoch_ms(START.isoformat())
    assert json.loads(json.dumps(featured_events)) == featured_events


def test_legs_agents_and_routing_are_consistent(featured_events: list[dict[str, Any]]) -> None:
    """Replays the events through the contract's leg rules: no conflicts, no orphans, agents
    busy with one call at a time, and each answer takes the best waiting call (priority,
    then longest waiting) of the answering agent's queues."""
    legs: dict[tuple[str, str], str] = {}
    waiting_since: dict[tuple[str, str], tuple[int, int]] = {}
    priority: dict[str, int] = {}
    skills: dict[str, list[str]] = {}
    state: dict[str, str] = {}
    holding: dict[str, tuple[str, str] | None] = {}
    for event in featured_events:
        kind, at = event["type"], epoch_ms(event["ts"])
        if kind == "agent.state":
            agent = event["agent_id"]
            skills[agent] = event["queues"]
            state[agent] = event["state"]
            assert (event["state"] == "busy") == (holding.get(agent) is not None)
            continue
        leg = (event["call_id"], event["queue_id"])
        if kind == "call.queued":
            assert leg not in legs
            priority[event["call_id"]] = event.get("priority", 0)
            legs[leg] = "waiting"
            waiting_since[leg] = (-priority[event["call_id"]], at)
        elif kind == "call.answered":
            agent = event["agent_id"]
            assert legs[leg] == "waiting"
            assert state[agent] == "available" and holding.get(agent) is None
            assert event["queue_id"] in skills[agent]
            chosen = waiting_since.pop(leg)
            rivals = [
                since for (call, queue), since in waiting_since.items() if queue in skills[agent]
            ]
            assert all(chosen <= rival for rival in rivals)
            legs[leg] = "answered"
            holding[agent] = leg
        elif kind in ("call.abandoned", "call.callback_accepted"):
            assert legs.pop(leg) == "waiting"
            del waiting_since[leg]
        elif kind == "call.transferred":
            target = (event["call_id"], event["to_queue_id"])
            assert target[1] != leg[1] and target not in legs
            if "agent_id" in event:
                assert legs.pop(leg) == "answered" and holding[event["agent_id"]] == leg
                holding[event["agent_id"]] = None
                waiting_since[target] = (-priority[event["call_id"]], at)
            else:
                assert legs.pop(leg) == "waiting"
                waiting_since[target] = waiting_since.pop(leg)
            legs[target] = "waiting"
        elif kind == "call.ended":
            assert legs.pop(leg) == "answered" and holding[event["agent_id"]] == leg
            holding[event["agent_id"]] = None


def test_the_featured_run_shows_every_behaviour(featured_events: list[dict[str, Any]]) -> None:
    kinds = Counter(e["type"] for e in featured_events)
    assert set(kinds) == set(CALL_FIELDS)
    assert {e["state"] for e in featured_events if e["type"] == "agent.state"} == AGENT_STATES
    transfers = [e for e in featured_events if e["type"] == "call.transferred"]
    assert any("agent_id" in e for e in transfers) and any("agent_id" not in e for e in transfers)
    assert any(e.get("priority") == 1 for e in featured_events)
    # Repeat callers: a caller who abandoned calls again, same number, new call id.
    abandoned = {e["call_id"] for e in featured_events if e["type"] == "call.abandoned"}
    calls_by_caller: dict[str, list[str]] = {}
    for event in featured_events:
        if event["type"] == "call.queued":
            calls_by_caller.setdefault(event["caller"], []).append(event["call_id"])
    repeats = [calls for calls in calls_by_caller.values() if len(calls) > 1]
    assert repeats and all(calls[0] in abandoned for calls in repeats)
    # Office hours: before 07:00 nobody is on shift.
    at_start = [e for e in featured_events if e["ts"] == featured_events[0]["ts"]]
    assert {e["state"] for e in at_start} == {"offline"} and len(at_start) == 20


def test_incident_raises_abandonment() -> None:
    def centre(incidents: tuple[Incident, ...]) -> SimulationConfig:
        return SimulationConfig(
            queues=(QueueConfig("sales", 0.04, 180), QueueConfig("support", 0.04, 180)),
            agents=tuple(AgentConfig(f"a{i}", ("sales", "support")) for i in range(20)),
            seed=3,
            duration_seconds=5400,
            patience_seconds=120,
            wrapup_seconds=10,
            incidents=incidents,
        )

    quiet = measure(generate(centre(()), START), 1800, 3600)
    incident = measure(generate(centre((Incident(1800, 1800, 0.5),)), START), 1800, 3600)
    assert quiet.abandon_ratio < 0.1
    assert incident.abandon_ratio > 0.25 and incident.abandon_ratio > 3 * quiet.abandon_ratio


# -- producing and the command line ----------------------------------------------------------


async def test_produce_writes_the_generated_events(tmp_path: Path) -> None:
    config = single_queue(3, 0.05, 60, 60, seed=1, duration=1800)
    out = tmp_path / "events.jsonl"
    count = await produce(Settings(), config, 0, str(out), start=START)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert count == len(lines) and lines == list(generate(config, START))


async def test_paced_run_stamps_wall_clock_time(tmp_path: Path) -> None:
    config = single_queue(3, 0.05, 60, 60, seed=1, duration=600)
    out = tmp_path / "events.jsonl"
    before = datetime.now(UTC)
    await produce(Settings(), config, 2000, str(out))
    after = datetime.now(UTC)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    stamps = [datetime.fromisoformat(e["ts"]) for e in lines]
    # A time-lapse: 600 simulated seconds at 2000x are 0.3 s of wall clock, sent as they come.
    assert before - timedelta(milliseconds=1) <= stamps[0] <= stamps[-1] <= after
    assert stamps == sorted(stamps)
    # Same events as the pure core (flat profile: the start changes only ids and stamps).
    assert [outline(e) for e in lines] == [outline(e) for e in generate(config, START)]


async def test_a_start_in_the_past_fast_forwards_then_goes_on_live(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = single_queue(3, 0.05, 60, 60, seed=1, duration=600.5)
    out = tmp_path / "events.jsonl"
    start = datetime.now(UTC) - timedelta(seconds=600)
    began = time.monotonic()
    await produce(Settings(), config, 1, str(out), start=start, progress_in_place=True)
    # 600 s of past events at once, with their own past stamps; the last half second live.
    assert time.monotonic() - began < 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == list(generate(config, start))
    assert datetime.fromisoformat(lines[0]["ts"]) < start + timedelta(seconds=60)
    # One progress line, redrawn in place with carriage returns, ended once.
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(" s\n") and err.startswith("\rsimulate: ")


def outline(event: dict[str, Any]) -> tuple[str, str, str]:
    """An event without its time and without the run prefix of its ids."""
    return (
        event["type"],
        event["event_id"].rsplit("-", 1)[1],
        event.get("call_id", "-").rsplit("-", 1)[1],
    )


def test_cli_builds_the_configuration() -> None:
    command = command_from_args(
        cli_args(
            "--queues",
            "sales,support",
            "--agents",
            "4",
            "--arrival-rate",
            "0.01,sales=0.05",
            "--aht",
            "200",
            "--patience",
            "inf",
            "--incident",
            "600:600:0.5",
            "--seed",
            "9",
            "--duration",
            "3600",
            "--out",
            "events.jsonl",
            "--break-every",
            "0",
        )
    )
    config = command.config
    assert [(q.queue_id, q.arrival_rate_per_s, q.aht_seconds) for q in config.queues] == [
        ("sales", 0.05, 200.0),
        ("support", 0.01, 200.0),
    ]
    assert [a.queues for a in config.agents] == [
        ("sales",),
        ("support",),
        ("sales",),
        ("support", "sales"),
    ]
    assert config.incidents == (Incident(600, 600, 0.5),)
    assert math.isinf(config.patience_seconds) and math.isinf(config.break_every_seconds)
    assert command.speed == 0 and command.out_path == "events.jsonl" and config.seed == 9
    assert command_from_args(cli_args()).speed == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x.jsonl"], "--duration is needed"),
        (["--speed", "0"], "--duration is needed"),
        (["--incident", "600:0.5"], "START:LENGTH:FRACTION"),
        (["--arrival-rate", "fast"], "--arrival-rate"),
        (["--arrival-rate", "0.1,vip=0.1"], "'vip' is not one of --queues"),
        (["--aht", "sales=100"], "gives no value for"),
        (["--queues", "sales/uk"], "queue id 'sales/uk'"),
        (["--transfer-fraction", "1.5"], "--transfer-fraction"),
        (["--start", "2026-01-01T00:00:00Z"], "--start needs --speed 0"),
    ],
)
def test_cli_refuses_bad_options(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        command_from_args(cli_args(*argv))


def test_cli_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_args("--help")
    text = capsys.readouterr().out
    for option in (
        "--queues",
        "--agents",
        "--arrival-rate",
        "--aht",
        "--patience",
        "--seed",
        "--speed",
        "--duration",
        "--out",
        "--incident",
        "--profile",
    ):
        assert option in text
