"""The contract's time format, written in one place."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds, ``2026-11-22T10:15:30.250Z``."""
    return rfc3339_of(datetime.fromtimestamp(ms / 1000, UTC))


def rfc3339_of(moment: datetime) -> str:
    """A UTC datetime in the contract's format (sub-millisecond digits dropped)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
