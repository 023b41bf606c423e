"""EWT (contract §2): the arithmetic, and its accuracy against the waits of simulated callers.

The accuracy check runs the simulator in-process and, at every arrival, computes the EWT
from the figures callstream would show at that instant (calls waiting, agents by state,
the 15 m window's AHT, ASA and counts), then compares it with the wait that caller really
had. Abandoners are measured by their *virtual* wait: the wait they would have had had they
stayed (the time until an agent would have reached them in first-come-first-served order,
given what everyone else did); for answered callers that is their real wait. bench/ewt_study.py
prints the table of docs/ewt.md with the same helper.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from stream.figures.queue import (
    caller_patience_seconds,
    estimated_wait_seconds,
    window_figures,
)
from stream.tools.simulate import AgentConfig, QueueConfig, SimulationConfig, timeline

START = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
SLA_SECONDS = 20.0
SHORT_ABANDON_SECONDS = 5.0
#: The windows a method may read, as callstream keeps them (the staffing window among them).
WINDOWS = (300, 900)

# -- the arithmetic --------------------------------------------------------------------------


def test_without_abandonment_the_calls_ahead_are_served_by_the_staffed_agents() -> None:
    agents = {"available": 0, "busy": 4, "wrapup": 1}
    waits = [estimated_wait_seconds(n, agents, 200.0) for n in range(4)]
    assert waits == [40.0, 80.0, 120.0, 160.0]
    assert estimated_wait_seconds(3, agents, 200.0, math.inf) == 160.0
    assert estimated_wait_seconds(2, {"available": 3, "busy": 2}, 200.0, 60.0) == 0.0


def test_callers_ahead_who_hang_up_shorten_the_wait() -> None:
    agents = {"busy": 5}
    between, patience = 200.0 / 5, 60.0
    for ahead in (0, 1, 7, 99, 100, 101, 2000):
        expected = math.fsum(1 / (1 / between + j / patience) for j in range(ahead + 1))
        assert estimated_wait_seconds(ahead, agents, 200.0, patience) == pytest.approx(
            expected, rel=1e-9)
    assert estimated_wait_seconds(5, agents, 200.0, 60.0) < estimated_wait_seconds(5, agents, 200.0)
    assert (estimated_wait_seconds(5, agents, 200.0, 30.0)
            < estimated_wait_seconds(5, agents, 200.0, 60.0))


def test_a_queue_of_any_length_takes_bounded_time() -> None:
    began = time.perf_counter()
    for waiting in (10**3, 10**6, 10**12):
        wait = estimated_wait_seconds(waiting, {"busy": 3}, 100.0, 60.0)
        assert wait is not None and math.isfinite(wait)
    assert time.perf_counter() - began < 0.01


@pytest.mark.parametrize(
    ("agents", "aht"),
    [({}, 180.0), ({"away": 3, "offline": 2}, 180.0), ({"available": 2, "busy": 1}, None)],
)
def test_absent_while_no_agent_is_staffed_or_aht_is_unknown(agents: dict[str, int],
                                                             aht: float | None) -> None:
    assert estimated_wait_seconds(3, agents, aht, 60.0) is None


def test_patience_is_the_time_spent_waiting_per_abandon() -> None:
    figures = window_figures({"answered": 30, "answered_waited": 30, "wait_ms": 600_000,
                              "abandoned": 10, "abandoned_waited": 10})
    assert caller_patience_seconds(figures) == pytest.approx((30 + 10) * 20.0 / 10)
    no_abandon = window_figures({"answered": 30, "answered_waited": 30, "wait_ms": 600_000})
    assert caller_patience_seconds(no_abandon) is None
    nobody_answered = window_figures({"abandoned": 3, "abandoned_waited": 3})
    assert caller_patience_seconds(nobody_answered) is None
    never_waited = window_figures({"answered": 5, "answered_waited": 5, "abandoned": 1})
    assert caller_patience_seconds(never_waited) is None


# -- accuracy against simulated callers ----------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What callstream shows for the queue at one instant (contract §2)."""

    waiting: int
    agents: dict[str, int]
    #: ``window_figures`` of each of WINDOWS, by length in seconds.
    windows: dict[int, dict[str, Any]]


Method = Callable[[Live], float | None]


def callstream_ewt(live: Live) -> float | None:
    """The EWT callstream publishes, from its live figures."""
    staffing = live.windows[900]
    return estimated_wait_seconds(live.waiting, live.agents, staffing["aht_seconds"],
                                  caller_patience_seconds(staffing))


@dataclass(frozen=True)
class Load:
    """A stationary single queue: ``agents`` agents at ``utilisation``, the simulator's
    default call (log-normal handle time, AHT 240 s, 15 s wrap-up), mean patience or inf."""

    utilisation: float
    patience_seconds: float
    agents: int = 20
    aht_seconds: float = 240.0
    wrapup_seconds: float = 15.0

    def config(self, seed: int, duration: float) -> SimulationConfig:
        # Utilisation counts wrap-up: the share of an agent's time spent on calls.
        rate = self.utilisation * self.agents / (self.aht_seconds + self.wrapup_seconds)
        return SimulationConfig(
            queues=(QueueConfig("q", rate, self.aht_seconds),),
            agents=tuple(AgentConfig(f"a{i}", ("q",)) for i in range(self.agents)),
            seed=seed,
            duration_seconds=duration,
            handle_time="lognormal",
            wrapup_seconds=self.wrapup_seconds,
            patience_seconds=self.patience_seconds,
        )


@dataclass
class Errors:
    """EWT − wait, summed over callers: all (virtual waits) and answered ones (real waits)."""

    callers: int = 0
    absolute: float = 0.0
    signed: float = 0.0
    answered: int = 0
    answered_absolute: float = 0.0
    answered_signed: float = 0.0

    @property
    def mae(self) -> float:
        return self.absolute / self.callers

    @property
    def bias(self) -> float:
        return self.signed / self.callers

    @property
    def answered_mae(self) -> float:
        return self.answered_absolute / self.answered

    @property
    def answered_bias(self) -> float:
        return self.answered_signed / self.answered


@dataclass
class Study:
    """Per method, the errors of its EWT; and the callers' mean (virtual) wait."""

    errors: dict[str, Errors]
    callers: int = 0
    total_wait: float = 0.0
    abandoned: int = 0
    #: Callers left out because no EWT could be given (no AHT yet): none after the warm-up.
    unannounced: int = 0

    @property
    def mean_wait(self) -> float:
        return self.total_wait / self.callers


class _Window:
    """Exact rolling sums over ``(now − length, now]``, in the stored sums' names."""

    def __init__(self, length: float) -> None:
        self.length = length
        self._entries: deque[tuple[float, str, float]] = deque()
        self._sums: dict[str, float] = {}

    def add(self, at: float, name: str, value: float = 1.0) -> None:
        self._entries.append((at, name, value))
        self._sums[name] = self._sums.get(name, 0.0) + value

    def figures(self, now: float) -> dict[str, Any]:
        while self._entries and self._entries[0][0] <= now - self.length:
            _, name, value = self._entries.popleft()
            self._sums[name] -= value
        return window_figures(self._sums)


def study(load: Load, seeds: Iterable[int], methods: dict[str, Method], warm_up: float,
          measured: float, drain: float = 3000.0) -> Study:
    """Run ``load`` once per seed; score each method on the callers who arrive in
    ``[warm_up, warm_up + measured)``."""
    result = Study({name: Errors() for name in methods})
    for seed in seeds:
        _score(load.config(seed, warm_up + measured + drain), methods, warm_up,
               warm_up + measured, result)
    return result


def _score(config: SimulationConfig, methods: dict[str, Method], since: float, until: float,
           result: Study) -> None:
    windows = [_Window(length) for length in WINDOWS]
    states: dict[str, str] = {}
    queued_at: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    waiting: set[str] = set()
    #: Callers whose virtual wait is still running, in arrival order.
    unserved: deque[tuple[float, str]] = deque()
    virtual: dict[str, float] = {}
    announced: dict[str, dict[str, float]] = {}

    def reached(now: float, through: float) -> None:
        """An agent takes a caller who arrived at ``through``: all arrived by then are reached."""
        while unserved and unserved[0][0] <= through:
            arrived, call_id = unserved.popleft()
            virtual[call_id] = now - arrived

    for now, event in timeline(config, START):
        kind = event["type"]
        if kind == "agent.state":
            states[event["agent_id"]] = event["state"]
            if event["state"] == "available" and not waiting:
                reached(now, math.inf)  # an agent idles: nobody is left ahead
            continue
        call_id = event["call_id"]
        if kind == "call.queued":
            if since <= now < until:
                agents: dict[str, int] = {}
                for state in states.values():
                    agents[state] = agents.get(state, 0) + 1
                live = Live(len(waiting), agents, {w.length: w.figures(now) for w in windows})
                estimates = {name: method(live) for name, method in methods.items()}
                if any(value is None for value in estimates.values()):
                    result.unannounced += 1
                else:
                    announced[call_id] = {
                        name: float(value) for name, value in estimates.items() if value is not None
                    }
            queued_at[call_id] = now
            waiting.add(call_id)
            unserved.append((now, call_id))
            for window in windows:
                window.add(now, "offered")
        elif kind == "call.answered":
            waiting.discard(call_id)
            wait = now - queued_at[call_id]
            answered_at[call_id] = now
            reached(now, queued_at[call_id])
            for window in windows:
                window.add(now, "answered")
                window.add(now, "answered_waited")
                window.add(now, "wait_ms", wait * 1000)
                window.add(now, "answered_in_sla", float(wait <= SLA_SECONDS))
        elif kind == "call.abandoned":
            waiting.discard(call_id)
            wait = now - queued_at[call_id]
            for window in windows:
                window.add(now, "abandoned")
                window.add(now, "abandoned_waited")
                window.add(now, "short_abandoned", float(wait < SHORT_ABANDON_SECONDS))
        elif kind == "call.ended":
            for window in windows:
                window.add(now, "handled")
                window.add(now, "handle_ms", (now - answered_at[call_id]) * 1000)
    for call_id, estimates in announced.items():
        wait = virtual[call_id]  # the drain is long enough to reach every measured caller
        answered = call_id in answered_at
        result.callers += 1
        result.total_wait += wait
        result.abandoned += not answered
        for name, estimate in estimates.items():
            errors = result.errors[name]
            errors.callers += 1
            errors.absolute += abs(estimate - wait)
            errors.signed += estimate - wait
            if answered:
                errors.answered += 1
                errors.answered_absolute += abs(estimate - wait)
                errors.answered_signed += estimate - wait


#: (load, MAE at most, |bias| at most), seconds: the Erlang A column of docs/ewt.md's table
#: (10 seeds) with a margin for one seed: MAE + 10 %, |bias| + 5 % of the mean wait.
ACCURACY = [
    (Load(0.6, math.inf), 0.3, 0.2),
    (Load(0.8, math.inf), 4.2, 1.0),
    (Load(0.95, math.inf), 22.0, 8.5),
    (Load(0.6, 120.0), 0.3, 0.2),
    (Load(0.8, 120.0), 2.0, 0.5),
    (Load(0.95, 120.0), 5.2, 0.7),
    (Load(1.2, 120.0), 11.6, 1.7),
]


@pytest.mark.parametrize(("load", "mae", "bias"), ACCURACY,
                         ids=[f"{load.utilisation}-patience-{load.patience_seconds:g}"
                              for load, _, _ in ACCURACY])
def test_ewt_stays_as_accurate_as_docs_report(load: Load, mae: float, bias: float) -> None:
    measured = study(load, [2026], {"callstream": callstream_ewt}, warm_up=3600.0,
                     measured=100_000.0)
    errors = measured.errors["callstream"]
    assert measured.unannounced == 0 and errors.callers > 3000
    assert errors.mae <= mae and abs(errors.bias) <= bias, (errors.mae, errors.bias)
