"""`callstream optout add|remove|list NUMBER`: the callback opt-out list, kept in Redis."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from redis.exceptions import RedisError

from stream.config import Settings
from stream.errors import ConfigError, ServiceUnavailable
from stream.parse.events import mask_caller, normalise_caller
from stream.state.client import connect_redis
from stream.state.keys import KeySpace
from stream.state.optout import OptOutList
from stream.urls import display_url


async def _change(action: str, number: str | None) -> list[str]:
    settings = Settings()
    try:
        return await _change_in(settings.redis_url, KeySpace(settings.redis_prefix), action,
                                number)
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"Redis does not answer at {display_url(settings.redis_url)} ({type(exc).__name__}: "
            f"{exc}); start it or check CALLSTREAM_REDIS_URL") from None


async def _change_in(url: str, keys: KeySpace, action: str, number: str | None) -> list[str]:
    client = await connect_redis(url)
    try:
        listed = OptOutList(client, keys)
        if action == "list":
            return await listed.numbers()
        assert number is not None
        normalised = normalise_caller(number)
        if normalised is None:
            raise ConfigError(f"{number!r} is not a phone number: 1 to 20 digits, with "
                              f"+, spaces, -, . and ( ) allowed around them")
        await (listed.add if action == "add" else listed.remove)(normalised)
        return [normalised]
    finally:
        await client.aclose()


def _run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.number:
        raise ConfigError(f"optout {args.action} needs a NUMBER")
    numbers = asyncio.run(_change(args.action, args.number))
    if args.action == "list":
        shown = numbers if args.show else [mask_caller(n) for n in numbers]
        print("\n".join(shown) if shown else "(the opt-out list is empty)")
    else:
        print(f"{'added' if args.action == 'add' else 'removed'}: {numbers[0]}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "optout", help="manage the callback opt-out list (kept in Redis)",
        description="Callers on the opt-out list never get a callback offer. Numbers are "
                    "normalised as the contract says (+, spaces, -, . and ( ) dropped), so "
                    "'+44 20 7946 0000' and 442079460000 are the same caller. 'list' masks "
                    "all but the last 4 digits unless --show is given.")
    parser.add_argument("action", choices=("add", "remove", "list"))
    parser.add_argument("number", nargs="?", help="the phone number (E.164 or national)")
    parser.add_argument("--show", action="store_true",
                        help="list: show whole numbers (personal data: mind who is watching)")
    parser.set_defaults(func=_run)
