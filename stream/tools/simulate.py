"""``callstream simulate``: a synthetic call centre that produces contract events.

A seeded discrete-event simulation (a heap of timed actions) of Poisson arrivals shaped by a
time-of-day profile, skilled agents with shifts, breaks and wrap-up, impatient callers
(Erlang A), transfers, overflows, callbacks, repeat callers and staffing incidents.
``generate`` is the pure core; ``produce`` paces its events into Kafka or a JSON-lines file.
The same seed and start give the same events, ids included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import random
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.config import Settings, is_valid_id
from stream.errors import ConfigError, ServiceUnavailable
from stream.ingest.kafka import ensure_topics, make_producer

Event = dict[str, Any]
HandleTime = Literal["exponential", "lognormal"]

DAY_SECONDS = 86_400
#: Arrival multiplier per UTC hour: the same all day.
FLAT_PROFILE: tuple[float, ...] = (1.0,) * 24
#: Arrival multiplier per UTC hour of an office-hours centre; the peak hour is 1.
OFFICE_PROFILE: tuple[float, ...] = (
    0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2,  # 00-07
    0.6, 0.9, 1.0, 0.95, 0.75, 0.8, 0.9, 0.85,  # 08-15
    0.7, 0.5, 0.3, 0.15, 0.08, 0.05, 0.03, 0.02,  # 16-23
)  # fmt: skip
PROFILES = {"flat": FLAT_PROFILE, "office": OFFICE_PROFILE}
#: Staggered eight-hour shifts (UTC hours) dealt round-robin to agents with the office profile.
OFFICE_SHIFTS = ((7, 15), (8, 16), (9, 17), (10, 18), (11, 19), (12, 20))

#: Sends awaited together: one round trip per chunk, not per event.
SEND_CHUNK = 1000
#: How long a transferred call rings a free agent before it is answered.
TRANSFER_RING_SECONDS = 0.001
#: Seconds between progress updates on stderr: redrawn in place, or logged as lines.
IN_PLACE_PROGRESS_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
#: A paced run's progress says it is fast-forwarding while its events are this far behind.
CATCHING_UP_SECONDS = 5.0


@dataclass(frozen=True)
class QueueConfig:
    """One queue: its id, its mean arrival rate before the profile, its mean handle time."""

    queue_id: str
    arrival_rate_per_s: float
    aht_seconds: float


@dataclass(frozen=True)
class AgentConfig:
    """One agent: the queues it serves (its skills) and its daily shift.

    ``shift`` is ``(start, end)`` in seconds of the UTC day, start < end; None: always on.
    """

    agent_id: str
    queues: tuple[str, ...]
    shift: tuple[float, float] | None = None


@dataclass(frozen=True)
class Incident:
    """From ``start_seconds`` of simulated time, for ``duration_seconds``, a fraction of the
    agents (chosen by the seed) goes away, each after finishing its current call."""

    start_seconds: float
    duration_seconds: float
    fraction_away: float


@dataclass(frozen=True)
class SimulationConfig:
    """Everything the simulated centre does. The defaults switch every extra off, which
    leaves a plain M/M/c queue per queue; the CLI turns them on.

    Times are seconds. Fractions are per call (``vip``, ``transfer``, ``overflow``,
    ``callback``) or per abandon (``repeat``). A call waits at most until its caller's
    patience runs out; a callback taker leaves after ``callback_after_seconds`` of waiting,
    an overflowing call moves to the next queue after ``overflow_after_seconds``.
    """

    queues: tuple[QueueConfig, ...]
    agents: tuple[AgentConfig, ...]
    seed: int = 0
    duration_seconds: float | None = None
    hourly_profile: tuple[float, ...] = FLAT_PROFILE
    handle_time: HandleTime = "exponential"
    handle_sigma: float = 0.6
    wrapup_seconds: float = 0.0
    patience_seconds: float = math.inf
    vip_fraction: float = 0.0
    transfer_fraction: float = 0.0
    overflow_after_seconds: float = math.inf
    overflow_fraction: float = 0.0
    callback_after_seconds: float = math.inf
    callback_fraction: float = 0.0
    repeat_fraction: float = 0.0
    repeat_delay_seconds: float = 300.0
    break_every_seconds: float = math.inf
    break_seconds: float = 0.0
    incidents: tuple[Incident, ...] = ()

    def __post_init__(self) -> None:
        queue_ids = [q.queue_id for q in self.queues]
        if not queue_ids:
            raise ConfigError("simulate: at least one queue is needed")
        if len(set(queue_ids)) != len(queue_ids):
            raise ConfigError(f"simulate: queue ids repeat: {queue_ids}")
        for queue in self.queues:
            _require(
                is_valid_id(queue.queue_id),
                f"queue id {queue.queue_id!r} is not 1-64 chars of [A-Za-z0-9_.:-]",
            )
            _require(queue.arrival_rate_per_s >= 0, "--arrival-rate must be >= 0")
            _require(queue.aht_seconds > 0, "--aht must be > 0")
        for agent in self.agents:
            _require(
                is_valid_id(agent.agent_id),
                f"agent id {agent.agent_id!r} is not 1-64 chars of [A-Za-z0-9_.:-]",
            )
            _require(
                bool(agent.queues) and set(agent.queues) <= set(queue_ids),
                f"agent {agent.agent_id} must serve some of the queues {queue_ids}",
            )
            if agent.shift is not None:
                start, end = agent.shift
                _require(
                    0 <= start < end <= DAY_SECONDS,
                    f"agent {agent.agent_id}: a shift is (start, end) within one day",
                )
        _require(
            len(self.hourly_profile) == 24 and min(self.hourly_profile) >= 0,
            "the hourly profile needs 24 multipliers >= 0",
        )
        _require(
            self.duration_seconds is None or self.duration_seconds > 0, "--duration must be > 0"
        )
        _require(self.handle_sigma > 0, "--handle-sigma must be > 0")
        for name in ("vip", "transfer", "overflow", "callback", "repeat"):
            value = getattr(self, f"{name}_fraction")
            _require(0 <= value <= 1, f"--{name}-fraction must be between 0 and 1")
        for option, value in (
            ("--patience", self.patience_seconds),
            ("--overflow-after", self.overflow_after_seconds),
            ("--callback-after", self.callback_after_seconds),
            ("--repeat-delay", self.repeat_delay_seconds),
            ("--break-every", self.break_every_seconds),
        ):
            _require(value > 0, f"{option} must be > 0")
        _require(self.wrapup_seconds >= 0, "--wrapup must be >= 0")
        _require(
            math.isinf(self.break_every_seconds) or self.break_seconds > 0,
            "--break-length must be > 0 when agents take breaks",
        )
        for incident in self.incidents:
            _require(
                incident.start_seconds >= 0
                and incident.duration_seconds > 0
                and 0 <= incident.fraction_away <= 1,
                "--incident is START:LENGTH:FRACTION with START >= 0, LENGTH > 0 "
                "and FRACTION between 0 and 1",
            )


def generate(config: SimulationConfig, start: datetime) -> Iterator[Event]:
    """The events of the simulated centre, in ``ts`` order, starting at ``start``.

    Runs for ``config.duration_seconds`` of simulated time, or forever when that is None.
    """
    return (event for _, event in timeline(config, start))


def timeline(config: SimulationConfig, start: datetime) -> Iterator[tuple[float, Event]]:
    """Like ``generate``, with each event's simulated time: ``(seconds since start, event)``."""
    return _CallCentre(config, start).timeline()


@dataclass
class AgentDay:
    """The simulator's own record of one agent's day, kept from its model rather than
    read back from the events: the reference the per-agent figures are tested against."""

    #: epoch ms of each call the agent answered
    answered_ms: list[int] = field(default_factory=list)
    #: (epoch ms the handle time ended, its length in ms) of each call it finished
    handled: list[tuple[int, int]] = field(default_factory=list)
    #: (epoch ms, state) of each state it showed, in order
    states: list[tuple[int, str]] = field(default_factory=list)


def generate_with_record(config: SimulationConfig, start: datetime
                         ) -> tuple[list[Event], dict[str, AgentDay]]:
    """The events of a finite simulation, and each agent's day as the simulator lived it."""
    _require(config.duration_seconds is not None, "a record needs a finite duration")
    centre = _CallCentre(config, start)
    events = [event for _, event in centre.timeline()]
    return events, centre.agent_days


def format_ts(epoch_ms: int) -> str:
    """Unix milliseconds -> RFC 3339 UTC with milliseconds, ``2026-11-22T10:15:30.250Z``."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(f"simulate: {message}")


# -- the simulated centre ----------------------------------------------------------------

AgentActivity = Literal["idle", "busy", "wrapup"]


@dataclass(eq=False)
class _Agent:
    config: AgentConfig
    skills: frozenset[str]
    on_shift: bool = True
    on_break: bool = False
    break_due: bool = False
    incident_away: bool = False
    activity: AgentActivity = "idle"
    #: The state last sent; "" before the first.
    state: str = ""

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    def wanted_state(self) -> str:
        """Work in hand shows first; availability only when nothing keeps the agent away."""
        if self.activity != "idle":
            return self.activity
        if not self.on_shift:
            return "offline"
        if self.on_break or self.incident_away:
            return "away"
        return "available"


@dataclass(eq=False)
class _Call:
    call_id: str
    caller: str
    #: The queue the caller dialled, where a repeat call goes.
    dialled: str
    priority: int
    queue_id: str
    patience: float
    handle_seconds: float
    transfer_to: str | None
    overflows: bool
    takes_callback: bool
    repeats: bool
    #: When the current wait began: a transfer after an answer starts a new one, an
    #: overflow does not (the caller has been waiting all along).
    wait_since: float = 0.0
    #: Bumped per wait and per queue entered, so stale timers and queue entries are ignored.
    wait_token: int = 0
    leg_token: int = 0
    waiting: bool = False


class _CallCentre:
    """The simulation state and its actions; ``timeline`` runs it."""

    def __init__(self, config: SimulationConfig, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.config = config
        self._start_ms = math.floor(start.timestamp() * 1000)
        self._prefix = f"sim{config.seed}-{self._start_ms // 1000}"
        seed = config.seed
        # Separate streams: arrivals and caller traits stay the same whatever the agents do,
        # so two runs that differ only in staffing (an incident) see the same callers.
        self._arrival_rng = {
            q.queue_id: random.Random(f"{seed}:arrivals:{q.queue_id}") for q in config.queues
        }
        self._caller_rng = {
            q.queue_id: random.Random(f"{seed}:callers:{q.queue_id}") for q in config.queues
        }
        self._dynamic_rng = random.Random(f"{seed}:dynamic")
        self._queues = {q.queue_id: q for q in config.queues}
        self._queue_order = [q.queue_id for q in config.queues]
        self._peak = max(config.hourly_profile)
        self._agents = [_Agent(a, frozenset(a.queues)) for a in config.agents]
        self.agent_days = {a.agent_id: AgentDay() for a in config.agents}
        #: Available agents in the order they became available: the longest idle first.
        self._idle: dict[str, _Agent] = {}
        self._waiting: dict[str, list[tuple[int, float, int, int, _Call]]] = {
            q: [] for q in self._queue_order
        }
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0
        self._calls = 0
        self._events = 0
        self._now = 0.0
        self._out: list[Event] = []
        self._last_second = -1
        self._second_text = ""

    def timeline(self) -> Iterator[tuple[float, Event]]:
        """``(simulated seconds, event)`` pairs in time order."""
        self._begin()
        end = self.config.duration_seconds
        while True:
            yield from self._drain()
            if not self._heap or (end is not None and self._heap[0][0] > end):
                return
            self._now, _, action = heapq.heappop(self._heap)
            action()

    def _drain(self) -> Iterator[tuple[float, Event]]:
        events, self._out = self._out, []
        for event in events:
            yield self._now, event

    def _at(self, when: float, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, action))

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events += 1
        epoch_ms = self._epoch_ms()
        second, millis = divmod(epoch_ms, 1000)
        if second != self._last_second:
            self._last_second = second
            self._second_text = f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}"
        event: Event = {
            "event_id": f"{self._prefix}-e{self._events}",
            "type": kind,
            "ts": f"{self._second_text}.{millis:03d}Z",
        }
        event.update(fields)
        self._out.append(event)

    def _epoch_ms(self) -> int:
        return self._start_ms + round(self._now * 1000)

    def _day_ms(self, when: float) -> int:
        """Milliseconds since UTC midnight at simulated time ``when``: exact, for shift edges."""
        return (self._start_ms + round(when * 1000)) % (DAY_SECONDS * 1000)

    # -- start ---------------------------------------------------------------------------

    def _begin(self) -> None:
        config = self.config
        for agent in self._agents:
            if agent.config.shift is not None:
                agent.on_shift = self._in_shift(agent, 0.0)
                self._at(self._next_shift_edge(agent, 0.0), partial(self._shift, agent))
            if math.isfinite(config.break_every_seconds):
                first = config.break_every_seconds * self._dynamic_rng.uniform(0.25, 1.0)
                self._at(first, partial(self._break_due, agent))
            self._settle(agent)
        for incident in config.incidents:
            self._at(incident.start_seconds, partial(self._start_incident, incident))
        for queue in config.queues:
            self._next_arrival(queue)

    # -- arrivals and callers ------------------------------------------------------------

    def _next_arrival(self, queue: QueueConfig) -> None:
        """Poisson arrivals thinned by the hourly profile (exact for a piecewise rate)."""
        top_rate = queue.arrival_rate_per_s * self._peak
        if top_rate <= 0:
            return
        rng = self._arrival_rng[queue.queue_id]
        when = self._now + rng.expovariate(top_rate)
        hour = self._day_ms(when) // 3_600_000
        accepted = rng.random() * self._peak < self.config.hourly_profile[hour]
        self._at(when, lambda: self._arrive(queue, accepted))

    def _arrive(self, queue: QueueConfig, accepted: bool) -> None:
        self._next_arrival(queue)
        if accepted:
            rng = self._caller_rng[queue.queue_id]
            self._new_call(queue.queue_id, f"+4420{rng.randrange(10**8):08d}", rng)

    def _new_call(self, queue_id: str, caller: str, rng: random.Random) -> None:
        config = self.config
        self._calls += 1
        others = [q for q in self._queue_order if q != queue_id]
        transfer = rng.random() < config.transfer_fraction
        call = _Call(
            call_id=f"{self._prefix}-c{self._calls}",
            caller=caller,
            dialled=queue_id,
            priority=1 if rng.random() < config.vip_fraction else 0,
            queue_id=queue_id,
            patience=self._patience(rng),
            handle_seconds=self._handle_time(queue_id, rng),
            transfer_to=rng.choice(others) if transfer and others else None,
            overflows=bool(others) and rng.random() < config.overflow_fraction,
            takes_callback=rng.random() < config.callback_fraction,
            repeats=rng.random() < config.repeat_fraction,
        )
        fields: dict[str, Any] = {"call_id": call.call_id, "queue_id": queue_id, "caller": caller}
        if call.priority:
            fields["priority"] = call.priority
        self._emit("call.queued", **fields)
        self._start_wait(call)

    def _patience(self, rng: random.Random) -> float:
        mean = self.config.patience_seconds
        return math.inf if math.isinf(mean) else rng.expovariate(1 / mean)

    def _handle_time(self, queue_id: str, rng: random.Random) -> float:
        mean = self._queues[queue_id].aht_seconds
        if self.config.handle_time == "exponential":
            return rng.expovariate(1 / mean)
        sigma = self.config.handle_sigma
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    def _start_wait(self, call: _Call, transferred: bool = False) -> None:
        """A new wait: the caller's patience and the callback and overflow clocks start."""
        config = self.config
        call.wait_since = self._now
        call.wait_token += 1
        token = call.wait_token
        if math.isfinite(call.patience):
            self._at(self._now + call.patience, lambda: self._abandon(call, token))
        if call.takes_callback and math.isfinite(config.callback_after_seconds):
            self._at(
                self._now + config.callback_after_seconds, lambda: self._take_callback(call, token)
            )
        if call.overflows and math.isfinite(config.overflow_after_seconds):
            self._at(self._now + config.overflow_after_seconds, lambda: self._overflow(call, token))
        self._enter_queue(call, transferred)

    def _enter_queue(self, call: _Call, transferred: bool = False) -> None:
        """Straight to the longest-idle skilled agent, or into the queue's waiting list.

        A transferred call rings its agent for a millisecond: its ``call.answered`` (keyed by
        the new queue) then comes after the ``call.transferred`` (keyed by the old one) in
        time, whichever of the two a consumer applies first (contract §1: a transfer in
        that is not earlier than the leg's answer would start a new visit).
        """
        call.leg_token += 1
        agent = next((a for a in self._idle.values() if call.queue_id in a.skills), None)
        if agent is not None and transferred:
            self._idle.pop(agent.agent_id)
            agent.activity = "busy"  # taken: nothing else may start for it meanwhile
            self._at(self._now + TRANSFER_RING_SECONDS, lambda: self._answer(call, agent))
            return
        if agent is not None:
            self._answer(call, agent)
            return
        call.waiting = True
        self._sequence += 1
        entry = (-call.priority, call.wait_since, self._sequence, call.leg_token, call)
        heapq.heappush(self._waiting[call.queue_id], entry)

    def _leave_queue(self, call: _Call, token: int) -> bool:
        """Take the call out of the live queue if this timer still applies to it."""
        if not call.waiting or call.wait_token != token:
            return False
        call.waiting = False
        return True

    def _abandon(self, call: _Call, token: int) -> None:
        if not self._leave_queue(call, token):
            return
        self._emit("call.abandoned", call_id=call.call_id, queue_id=call.queue_id)
        if call.repeats:
            delay = self._dynamic_rng.expovariate(1 / self.config.repeat_delay_seconds)
            self._at(
                self._now + delay,
                lambda: self._new_call(call.dialled, call.caller, self._dynamic_rng),
            )

    def _take_callback(self, call: _Call, token: int) -> None:
        if self._leave_queue(call, token):
            self._emit("call.callback_accepted", call_id=call.call_id, queue_id=call.queue_id)

    def _overflow(self, call: _Call, token: int) -> None:
        if not self._leave_queue(call, token):
            return
        index = self._queue_order.index(call.queue_id)
        target = self._queue_order[(index + 1) % len(self._queue_order)]
        self._emit(
            "call.transferred", call_id=call.call_id, queue_id=call.queue_id, to_queue_id=target
        )
        call.queue_id = target
        self._enter_queue(call, transferred=True)

    # -- answering -----------------------------------------------------------------------

    def _next_call(self, agent: _Agent) -> _Call | None:
        """Of the calls the agent may take: priority first, then the longest waiting."""
        best: tuple[int, float, int, int, _Call] | None = None
        for queue_id in agent.config.queues:
            waiting = self._waiting[queue_id]
            while waiting and not _still_waiting(waiting[0], queue_id):
                heapq.heappop(waiting)
            if waiting and (best is None or waiting[0][:3] < best[:3]):
                best = waiting[0]
        if best is None:
            return None
        heapq.heappop(self._waiting[best[4].queue_id])
        best[4].waiting = False
        return best[4]

    def _answer(self, call: _Call, agent: _Agent) -> None:
        self._idle.pop(agent.agent_id, None)
        agent.activity = "busy"
        self._emit(
            "call.answered", call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id
        )
        self.agent_days[agent.agent_id].answered_ms.append(self._epoch_ms())
        self._send_state(agent)
        self._at(self._now + call.handle_seconds, lambda: self._hang_up(call, agent))

    def _hang_up(self, call: _Call, agent: _Agent) -> None:
        self.agent_days[agent.agent_id].handled.append(
            (self._epoch_ms(), round(call.handle_seconds * 1000)))
        if call.transfer_to is not None:
            target, call.transfer_to = call.transfer_to, None
            self._emit(
                "call.transferred",
                call_id=call.call_id,
                queue_id=call.queue_id,
                to_queue_id=target,
                agent_id=agent.agent_id,
            )
            call.queue_id = target
            call.patience = self._patience(self._dynamic_rng)
            call.handle_seconds = self._handle_time(target, self._dynamic_rng)
            self._start_wait(call, transferred=True)
        else:
            self._emit(
                "call.ended", call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id
            )
        if self.config.wrapup_seconds > 0:
            agent.activity = "wrapup"
            self._send_state(agent)
            self._at(self._now + self.config.wrapup_seconds, lambda: self._free(agent))
        else:
            self._free(agent)

    def _free(self, agent: _Agent) -> None:
        agent.activity = "idle"
        self._settle(agent)

    # -- agent availability --------------------------------------------------------------

    def _settle(self, agent: _Agent) -> None:
        """After any change to a free agent: start a due break, show the state, take work."""
        if agent.activity != "idle":
            return
        if agent.break_due:
            agent.break_due = False
            if agent.on_shift:
                agent.on_break = True
                self._at(self._now + self.config.break_seconds, lambda: self._break_over(agent))
            else:
                self._schedule_break(agent)
        # Shown available first, even for an instant: only available agents take calls.
        self._send_state(agent)
        if agent.state != "available":
            self._idle.pop(agent.agent_id, None)
            return
        call = self._next_call(agent)
        if call is not None:
            self._answer(call, agent)
        else:
            self._idle.setdefault(agent.agent_id, agent)

    def _send_state(self, agent: _Agent) -> None:
        state = agent.wanted_state()
        if state != agent.state:
            agent.state = state
            self.agent_days[agent.agent_id].states.append((self._epoch_ms(), state))
            self._emit(
                "agent.state",
                agent_id=agent.agent_id,
                state=state,
                queues=list(agent.config.queues),
            )

    def _break_due(self, agent: _Agent) -> None:
        """A break starts once the agent is free; one that falls due off shift is skipped."""
        agent.break_due = True
        self._settle(agent)

    def _break_over(self, agent: _Agent) -> None:
        agent.on_break = False
        self._schedule_break(agent)
        self._settle(agent)

    def _schedule_break(self, agent: _Agent) -> None:
        gap = self.config.break_every_seconds * self._dynamic_rng.uniform(0.75, 1.25)
        self._at(self._now + gap, lambda: self._break_due(agent))

    def _shift(self, agent: _Agent) -> None:
        agent.on_shift = self._in_shift(agent, self._now)
        self._at(self._next_shift_edge(agent, self._now), lambda: self._shift(agent))
        self._settle(agent)

    def _in_shift(self, agent: _Agent, when: float) -> bool:
        assert agent.config.shift is not None
        start, end = agent.config.shift
        return start * 1000 <= self._day_ms(when) < end * 1000

    def _next_shift_edge(self, agent: _Agent, when: float) -> float:
        """Simulated time of the agent's next shift start or end strictly after ``when``."""
        assert agent.config.shift is not None
        day_ms = DAY_SECONDS * 1000
        now = self._day_ms(when)
        gaps = [(round(edge * 1000) - now) % day_ms or day_ms for edge in agent.config.shift]
        return when + min(gaps) / 1000

    def _start_incident(self, incident: Incident) -> None:
        chosen = self._dynamic_rng.sample(
            self._agents, round(incident.fraction_away * len(self._agents))
        )
        self._at(self._now + incident.duration_seconds, lambda: self._end_incident(chosen))
        for agent in chosen:
            agent.incident_away = True
            self._settle(agent)

    def _end_incident(self, chosen: list[_Agent]) -> None:
        for agent in chosen:
            agent.incident_away = False
            self._settle(agent)


def _still_waiting(entry: tuple[int, float, int, int, _Call], queue_id: str) -> bool:
    call = entry[4]
    return call.waiting and call.queue_id == queue_id and call.leg_token == entry[3]


# -- producing -----------------------------------------------------------------------------


async def produce(
    settings: Settings,
    config: SimulationConfig,
    speed: float,
    out_path: str | None,
    start: datetime | None = None,
    progress_in_place: bool | None = None,
) -> int:
    """Send the simulated events to ``out_path`` (JSON lines) or Kafka; return how many.

    Kafka messages go to ``settings.topic_events`` keyed by queue (``call.*``) or agent
    (``agent.*``). ``speed`` 1 is real time, 10 ten times faster, 0 as fast as possible.
    At a speed above 0 the simulated clock starts at ``start`` (default: now) and every
    ``ts`` is the wall-clock time its event is due, so ``clock=wall`` windows see live data;
    faster than real time this is a time-lapse, in which durations shrink by ``speed``. A
    ``start`` in the past fast-forwards: the events already due go at once, with their past
    ``ts``, and the run then goes on live. At speed 0 the run ends now (it starts
    ``duration`` ago) unless ``start`` is given. Progress goes to stderr, redrawn in place
    on one line if ``progress_in_place`` (default: when stderr is a terminal).
    """
    sink: _Sink = _FileSink(out_path, speed > 0) if out_path else await _KafkaSink.open(settings)
    progress = _Progress(sys.stderr, progress_in_place, paced=speed > 0)
    try:
        anchor = start or _default_start(speed, config.duration_seconds)
        async for event in _paced(config, anchor, speed):
            await sink.send(event)
            progress.count(event)
    finally:
        await sink.close()
        progress.close()
    return progress.events


def _default_start(speed: float, duration: float | None) -> datetime:
    now = datetime.now(UTC)
    if speed == 0 and duration is not None:
        return now - timedelta(seconds=duration)
    return now


async def _paced(config: SimulationConfig, start: datetime, speed: float) -> AsyncIterator[Event]:
    """The events, each released when due by the wall clock at this speed: at once if
    ``start`` is so far back that it is already due."""
    events = timeline(config, start)
    if speed == 0:
        for _, event in events:
            yield event
        return
    loop = asyncio.get_running_loop()
    began = loop.time() - max(0.0, time.time() - start.timestamp())
    start_ms = math.floor(start.timestamp() * 1000)
    for offset, event in events:
        delay = began + offset / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if speed != 1:
            event["ts"] = format_ts(start_ms + round(offset / speed * 1000))
        yield event


def _encode(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


class _Sink:
    """Where events go: a file or Kafka."""

    async def send(self, event: Event) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _FileSink(_Sink):
    def __init__(self, path: str, paced: bool) -> None:
        # Unbuffered while paced (one write per line), so a reader following the file sees
        # each event when it is due.
        self._file = open(path, "wb", buffering=0 if paced else -1)  # noqa: SIM115

    async def send(self, event: Event) -> None:
        self._file.write(_encode(event) + b"\n")

    async def close(self) -> None:
        self._file.close()


class _KafkaSink(_Sink):
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        self._pending: list[asyncio.Future[Any]] = []

    @classmethod
    async def open(cls, settings: Settings) -> _KafkaSink:
        try:
            await ensure_topics(settings, [settings.topic_events])
            producer = make_producer(settings)
            await producer.start()
        except KafkaError as exc:
            raise _unavailable(settings, exc) from exc
        return cls(settings, producer)

    async def send(self, event: Event) -> None:
        key = event["queue_id"] if event["type"].startswith("call.") else event["agent_id"]
        try:
            self._pending.append(
                await self._producer.send(
                    self._settings.topic_events, _encode(event), key=key.encode()
                )
            )
            if len(self._pending) >= SEND_CHUNK:
                await self._settle()
        except KafkaError as exc:
            raise _unavailable(self._settings, exc) from exc

    async def _settle(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def close(self) -> None:
        try:
            await self._settle()
        finally:
            await self._producer.stop()


def _unavailable(settings: Settings, exc: KafkaError) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka at {settings.kafka_bootstrap} (CALLSTREAM_KAFKA_BOOTSTRAP) failed: {exc!r}"
    )


class _Progress:
    """Events sent, their rate and the simulated clock on stderr, and a summary at the end:
    one line redrawn in place (on a terminal, or when asked), else a line every few seconds."""

    def __init__(self, stream: TextIO, in_place: bool | None = None, paced: bool = False
                 ) -> None:
        self.events = 0
        #: Paced runs say when they are fast-forwarding through events already due.
        self._paced = paced
        self._stream = stream
        self._in_place = stream.isatty() if in_place is None else in_place
        self._every = IN_PLACE_PROGRESS_SECONDS if self._in_place else PROGRESS_SECONDS
        self._began = self._last = time.monotonic()
        self._last_events = 0
        self._width = 0

    def count(self, event: Event) -> None:
        """Count ``event`` (just sent); show the progress if the last update is old enough."""
        self.events += 1
        now = time.monotonic()
        if now - self._last < self._every:
            return
        rate = (self.events - self._last_events) / (now - self._last)
        self._last, self._last_events = now, self.events
        ts = event["ts"]
        text = f"simulate: {self.events:,} events, {rate:,.0f} events/s, simulated {ts[11:19]} UTC"
        behind = time.time() - datetime.fromisoformat(ts).timestamp()
        if self._paced and behind > CATCHING_UP_SECONDS:
            text += f", fast-forwarding ({_clock_time(behind)} behind)"
        self._show(text)

    def close(self) -> None:
        elapsed = time.monotonic() - self._began
        self._show(f"simulate: {self.events:,} events in {elapsed:.1f} s")
        if self._in_place:
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, text: str) -> None:
        if self._in_place:
            # Spaces rub out the rest of a longer previous line.
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


# -- command line --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulateCommand:
    """What ``callstream simulate`` was asked to do, checked."""

    config: SimulationConfig
    speed: float
    out_path: str | None
    start: datetime | None


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the ``callstream`` subcommands."""
    parser = subparsers.add_parser(
        "simulate",
        help="a synthetic call centre that produces call events to Kafka or a file",
        description="Simulate a call centre (Poisson arrivals, skilled agents with shifts, "
        "breaks and wrap-up, impatient callers, transfers, overflows, callbacks, "
        "repeat callers) and produce its events to CALLSTREAM_TOPIC_EVENTS, or "
        "write them as JSON lines with --out. The same --seed gives the same "
        "events. Figures of a stationary run match Erlang A.",
    )
    add = parser.add_argument
    add(
        "--queues",
        default="sales,support,billing",
        metavar="IDS",
        help="comma-separated queue ids (default: %(default)s)",
    )
    add(
        "--agents",
        type=int,
        default=20,
        metavar="N",
        help="number of agents; agent i serves queue i mod Q (default: %(default)s)",
    )
    add(
        "--multi-skill",
        type=float,
        default=0.3,
        metavar="FRACTION",
        help="fraction of agents who also serve the next queue (default: %(default)s)",
    )
    add(
        "--arrival-rate",
        default="0.015",
        metavar="RATE[,QUEUE=RATE...]",
        help="calls per second per queue at the profile's peak: one number for every queue "
        "and/or QUEUE=RATE pairs (default: %(default)s)",
    )
    add(
        "--aht",
        default="240",
        metavar="SECONDS[,QUEUE=SECONDS...]",
        help="mean handle time, like --arrival-rate (default: %(default)s)",
    )
    add(
        "--handle-time",
        choices=("exponential", "lognormal"),
        default="lognormal",
        help="handle time distribution (default: %(default)s)",
    )
    add(
        "--handle-sigma",
        type=float,
        default=0.6,
        metavar="SIGMA",
        help="log-normal shape: standard deviation of the log (default: %(default)s)",
    )
    add(
        "--wrapup",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="after-call work per call; 0 for none (default: %(default)s)",
    )
    add(
        "--patience",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="mean caller patience (exponential); 'inf': nobody hangs up (default: %(default)s)",
    )
    add(
        "--vip-fraction",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="calls with priority 1, answered before priority-0 calls (default: %(default)s)",
    )
    add(
        "--transfer-fraction",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="answered calls the agent transfers to another queue (default: %(default)s)",
    )
    add(
        "--overflow-after",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="wait after which an overflowing call moves to the next queue (default: %(default)s)",
    )
    add(
        "--overflow-fraction",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="calls that overflow if still waiting then (default: %(default)s)",
    )
    add(
        "--callback-after",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="wait after which a callback taker accepts a callback and leaves "
        "(default: %(default)s)",
    )
    add(
        "--callback-fraction",
        type=float,
        default=0.15,
        metavar="FRACTION",
        help="callers who take a callback if still waiting then (default: %(default)s)",
    )
    add(
        "--repeat-fraction",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="callers who call again, same number, after abandoning (default: %(default)s)",
    )
    add(
        "--repeat-delay",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="mean delay before such a repeat call (default: %(default)s)",
    )
    add(
        "--break-every",
        type=float,
        default=7200.0,
        metavar="SECONDS",
        help="mean time on shift between an agent's breaks; 0 for no breaks (default: %(default)s)",
    )
    add(
        "--break-length",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="length of a break (default: %(default)s)",
    )
    add(
        "--profile",
        choices=tuple(PROFILES),
        default="flat",
        help="arrivals by UTC hour: flat, or office (a working day's curve; agents then "
        "work staggered 8-hour shifts between 07:00 and 20:00) (default: %(default)s)",
    )
    add(
        "--incident",
        action="append",
        default=[],
        metavar="START:LENGTH:FRACTION",
        help="at simulated second START, for LENGTH seconds, FRACTION of the agents go "
        "away (e.g. 600:600:0.5); may be repeated",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="random seed; the same seed and start give the same events "
        "(default: a random one, printed)",
    )
    add(
        "--speed",
        type=float,
        default=None,
        metavar="FACTOR",
        help="1: real time, 10: ten times faster (a time-lapse: ts are wall-clock send "
        "times), 0: as fast as possible, ending now (default: 1, or 0 with --out)",
    )
    add(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="simulated seconds to run (default: until Ctrl-C; needed with --out or --speed 0)",
    )
    add(
        "--out",
        default=None,
        metavar="FILE.jsonl",
        help="write JSON lines to this file instead of producing to Kafka",
    )
    add(
        "--start",
        default=None,
        metavar="TIME",
        help="RFC 3339 start of simulated time, for a reproducible file (only with "
        "--speed 0; default: now - duration)",
    )
    parser.set_defaults(func=run)


def command_from_args(args: argparse.Namespace) -> SimulateCommand:
    """Turn the parsed options into a checked simulation; ConfigError names what to fix."""
    queue_ids = [q.strip() for q in args.queues.split(",") if q.strip()]
    rates = _per_queue(args.arrival_rate, queue_ids, "--arrival-rate")
    ahts = _per_queue(args.aht, queue_ids, "--aht")
    _require(args.agents >= 1, "--agents must be at least 1")
    _require(0 <= args.multi_skill <= 1, "--multi-skill must be between 0 and 1")
    speed = args.speed if args.speed is not None else (0.0 if args.out else 1.0)
    _require(speed >= 0, "--speed must be >= 0")
    _require(
        args.duration is not None or (speed > 0 and not args.out),
        "--duration is needed with --out or --speed 0",
    )
    _require(args.start is None or speed == 0, "--start needs --speed 0")
    profile = args.profile
    config = SimulationConfig(
        queues=tuple(QueueConfig(q, rates[q], ahts[q]) for q in queue_ids),
        agents=_agents(args.agents, queue_ids, args.multi_skill, profile == "office"),
        seed=args.seed if args.seed is not None else secrets.randbelow(10**6),
        duration_seconds=args.duration,
        hourly_profile=PROFILES[profile],
        handle_time=args.handle_time,
        handle_sigma=args.handle_sigma,
        wrapup_seconds=args.wrapup,
        patience_seconds=args.patience,
        vip_fraction=args.vip_fraction,
        transfer_fraction=args.transfer_fraction,
        overflow_after_seconds=args.overflow_after,
        overflow_fraction=args.overflow_fraction,
        callback_after_seconds=args.callback_after,
        callback_fraction=args.callback_fraction,
        repeat_fraction=args.repeat_fraction,
        repeat_delay_seconds=args.repeat_delay,
        break_every_seconds=args.break_every or math.inf,
        break_seconds=args.break_length,
        incidents=tuple(_incident(text) for text in args.incident),
    )
    return SimulateCommand(config, speed, args.out, _start(args.start))


def run(args: argparse.Namespace) -> int:
    """``callstream simulate``: produce until the duration is over or Ctrl-C."""
    command = command_from_args(args)
    settings = Settings()
    target = (
        command.out_path or f"Kafka topic {settings.topic_events} at {settings.kafka_bootstrap}"
    )
    print(
        f"simulate: seed {command.config.seed}, speed {command.speed:g}, to {target}",
        file=sys.stderr,
    )
    # Ctrl-C is how an open-ended run stops; what was sent has been flushed by then.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            produce(settings, command.config, command.speed, command.out_path, command.start)
        )
    return 0


def _agents(
    count: int, queue_ids: list[str], multi_skill: float, shifts: bool
) -> tuple[AgentConfig, ...]:
    """Agent i serves queue i mod Q; an even spread of ``multi_skill`` also the next one."""
    agents = []
    for i in range(count):
        home = i % len(queue_ids)
        skills = [queue_ids[home]]
        if len(queue_ids) > 1 and math.floor((i + 1) * multi_skill) > math.floor(i * multi_skill):
            skills.append(queue_ids[(home + 1) % len(queue_ids)])
        start_hour, end_hour = OFFICE_SHIFTS[i % len(OFFICE_SHIFTS)]
        shift = (start_hour * 3600.0, end_hour * 3600.0) if shifts else None
        agents.append(AgentConfig(f"agent-{i + 1:03d}", tuple(skills), shift))
    return tuple(agents)


def _per_queue(text: str, queue_ids: list[str], option: str) -> dict[str, float]:
    """``"0.02"`` for every queue, ``"0.02,sales=0.05"`` with an override, and so on."""
    default: float | None = None
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, _, number = part.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(f"simulate: {option} {text!r}: {number!r} is not a number") from None
        if not name:
            default = value
        elif name in queue_ids:
            values[name] = value
        else:
            raise ConfigError(f"simulate: {option}: {name!r} is not one of --queues {queue_ids}")
    if default is not None:
        return {q: values.get(q, default) for q in queue_ids}
    missing = [q for q in queue_ids if q not in values]
    if missing:
        raise ConfigError(f"simulate: {option} gives no value for {missing}")
    return {q: values[q] for q in queue_ids}


def _incident(text: str) -> Incident:
    try:
        start, length, fraction = (float(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(
            f"simulate: --incident {text!r} is not START:LENGTH:FRACTION like 600:600:0.5"
        ) from None
    return Incident(start, length, fraction)


def _start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"simulate: --start {text!r} is not an RFC 3339 time like 2026-11-22T08:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
