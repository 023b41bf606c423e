"""`callstream demo`: everything on one machine, embedded defaults, no configuration."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run everything on this machine with embedded defaults")
    parser.set_defaults(func=lambda args: 0)
