"""The `callstream` command: run, simulate, replay, demo, optout."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from pydantic import ValidationError

from stream import __version__
from stream.app import demo, optout
from stream.app.run import run_processor
from stream.config import Settings, load_policy
from stream.errors import CallstreamError
from stream.signals import run_until_signalled
from stream.tools import replay, simulate


def _run(args: argparse.Namespace) -> int:
    settings = Settings()
    policy = load_policy(settings.policy_file)
    stop = asyncio.Event()
    run_until_signalled(run_processor(settings, policy, stop), stop)
    return 0


def _register_run(sub: Any) -> None:
    parser = sub.add_parser(
        "run", help="run the processor (Kafka -> Redis -> metrics, API, wallboard)",
        description="Consume call events from Kafka into shared Redis state and serve "
                    "/metrics, /api/queues and /wallboard. Configured by CALLSTREAM_* "
                    "environment variables (or .env); see the README.")
    parser.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callstream",
        description="Real-time contact-centre figures, callback offers and alerts "
                    "from a Kafka stream of call events.")
    parser.add_argument("--version", action="version", version=f"callstream {__version__}")
    parser.add_argument("--log-level", default=None,
                        help="DEBUG, INFO, WARNING or ERROR (default: CALLSTREAM_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_run(sub)
    simulate.register(sub)
    replay.register(sub)
    demo.register(sub)
    optout.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        level = args.log_level or Settings().log_level
    except ValidationError as exc:
        print(f"callstream: bad setting: {_settings_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        result: int = args.func(args)
        return result
    except CallstreamError as exc:
        print(f"callstream: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"callstream: bad setting: {_settings_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _settings_error(exc: ValidationError) -> str:
    """One line naming each bad variable and what is wrong with it."""
    problems = []
    for err in exc.errors():
        name = f"CALLSTREAM_{str(err['loc'][0]).upper()}" if err["loc"] else "settings"
        message = str(err["msg"]).removeprefix("Value error, ").removeprefix(f"{name} ")
        problems.append(f"{name}: {message}")
    return "; ".join(problems)


if __name__ == "__main__":
    sys.exit(main())
