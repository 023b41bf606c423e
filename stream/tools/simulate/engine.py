"""The simulated centre: a seeded discrete-event simulation, a heap of timed actions.

``generate`` and ``timeline`` run it: the pure core of ``callstream simulate``, in which the
same seed and start give the same events, ids included.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from stream.tools.simulate.model import (
    DAY_SECONDS,
    AgentConfig,
    AgentDay,
    Event,
    Incident,
    QueueConfig,
    SimulationConfig,
    require,
)

#: How long a transferred call rings a free agent before it is answered.
TRANSFER_RING_SECONDS = 0.001


def generate(config: SimulationConfig, start: datetime) -> Iterator[Event]:
    """The events of the simulated centre, in ``ts`` order, starting at ``start``.

    Runs for ``config.duration_seconds`` of simulated time, or forever when that is None.
    """
    return (event for _, event in timeline(config, start))


def timeline(config: SimulationConfig, start: datetime) -> Iterator[tuple[float, Event]]:
    """Like ``generate``, with each event's simulated time: ``(seconds since start, event)``."""
    return _CallCentre(config, start).timeline()


def generate_with_record(config: SimulationConfig, start: datetime
                         ) -> tuple[list[Event], dict[str, AgentDay]]:
    """The events of a finite simulation, and each agent's day as the simulator lived it."""
    require(config.duration_seconds is not None, "a record needs a finite duration")
    centre = _CallCentre(config, start)
    events = [event for _, event in centre.timeline()]
    return events, centre.agent_days


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
