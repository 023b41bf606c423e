"""``callstream simulate``: its options, checked into a simulation, and the run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream.config import Settings
from stream.errors import ConfigError
from stream.tools.simulate.model import (
    OFFICE_SHIFTS,
    PROFILES,
    AgentConfig,
    Incident,
    QueueConfig,
    SimulationConfig,
    require,
)
from stream.tools.simulate.sinks import produce


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
    _centre_options(parser)
    _load_options(parser)
    _waiting_options(parser)
    _return_options(parser)
    _day_options(parser)
    _run_options(parser)
    parser.set_defaults(func=run)


def _centre_options(parser: argparse.ArgumentParser) -> None:
    """The centre: its queues and its agents' skills."""
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


def _load_options(parser: argparse.ArgumentParser) -> None:
    """The calls: how many come, and how long they take to handle."""
    add = parser.add_argument
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


def _waiting_options(parser: argparse.ArgumentParser) -> None:
    """How callers wait: their patience, their priority, the queues their calls move to."""
    add = parser.add_argument
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


def _return_options(parser: argparse.ArgumentParser) -> None:
    """Callers who give up waiting: some take a callback, some call again later."""
    add = parser.add_argument
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


def _day_options(parser: argparse.ArgumentParser) -> None:
    """The day: agents' breaks, arrivals by the hour, staffing incidents."""
    add = parser.add_argument
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


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The run itself: seed, pace, length, where the events go and when they start."""
    add = parser.add_argument
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


def command_from_args(args: argparse.Namespace) -> SimulateCommand:
    """Turn the parsed options into a checked simulation; ConfigError names what to fix."""
    queue_ids = [q.strip() for q in args.queues.split(",") if q.strip()]
    rates = _per_queue(args.arrival_rate, queue_ids, "--arrival-rate")
    ahts = _per_queue(args.aht, queue_ids, "--aht")
    require(args.agents >= 1, "--agents must be at least 1")
    require(0 <= args.multi_skill <= 1, "--multi-skill must be between 0 and 1")
    speed = args.speed if args.speed is not None else (0.0 if args.out else 1.0)
    require(speed >= 0, "--speed must be >= 0")
    require(
        args.duration is not None or (speed > 0 and not args.out),
        "--duration is needed with --out or --speed 0",
    )
    require(args.start is None or speed == 0, "--start needs --speed 0")
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
