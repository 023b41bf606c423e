"""The simulated centre's configuration, checked, and the record it keeps of each agent's day.

Plain data: the engine runs it, the command line builds it, tests and benches write it by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from stream.config import is_valid_id
from stream.errors import ConfigError

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
            require(
                is_valid_id(queue.queue_id),
                f"queue id {queue.queue_id!r} is not 1-64 chars of [A-Za-z0-9_.:-]",
            )
            require(queue.arrival_rate_per_s >= 0, "--arrival-rate must be >= 0")
            require(queue.aht_seconds > 0, "--aht must be > 0")
        for agent in self.agents:
            require(
                is_valid_id(agent.agent_id),
                f"agent id {agent.agent_id!r} is not 1-64 chars of [A-Za-z0-9_.:-]",
            )
            require(
                bool(agent.queues) and set(agent.queues) <= set(queue_ids),
                f"agent {agent.agent_id} must serve some of the queues {queue_ids}",
            )
            if agent.shift is not None:
                start, end = agent.shift
                require(
                    0 <= start < end <= DAY_SECONDS,
                    f"agent {agent.agent_id}: a shift is (start, end) within one day",
                )
        require(
            len(self.hourly_profile) == 24 and min(self.hourly_profile) >= 0,
            "the hourly profile needs 24 multipliers >= 0",
        )
        require(
            self.duration_seconds is None or self.duration_seconds > 0, "--duration must be > 0"
        )
        require(self.handle_sigma > 0, "--handle-sigma must be > 0")
        for name in ("vip", "transfer", "overflow", "callback", "repeat"):
            value = getattr(self, f"{name}_fraction")
            require(0 <= value <= 1, f"--{name}-fraction must be between 0 and 1")
        for option, value in (
            ("--patience", self.patience_seconds),
            ("--overflow-after", self.overflow_after_seconds),
            ("--callback-after", self.callback_after_seconds),
            ("--repeat-delay", self.repeat_delay_seconds),
            ("--break-every", self.break_every_seconds),
        ):
            require(value > 0, f"{option} must be > 0")
        require(self.wrapup_seconds >= 0, "--wrapup must be >= 0")
        require(
            math.isinf(self.break_every_seconds) or self.break_seconds > 0,
            "--break-length must be > 0 when agents take breaks",
        )
        for incident in self.incidents:
            require(
                incident.start_seconds >= 0
                and incident.duration_seconds > 0
                and 0 <= incident.fraction_away <= 1,
                "--incident is START:LENGTH:FRACTION with START >= 0, LENGTH > 0 "
                "and FRACTION between 0 and 1",
            )


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


def require(condition: bool, message: str) -> None:
    """Refuse a bad configuration with a ConfigError that names the command."""
    if not condition:
        raise ConfigError(f"simulate: {message}")
