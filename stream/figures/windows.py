"""The windows the state keeps, each with its bucket length (contract §2: at most W/30)."""

from __future__ import annotations

from collections.abc import Iterable

from stream.config import STAFFING_WINDOW_SECONDS, TREND_WINDOW_SECONDS


def bucket_windows(windows: list[int], also: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Each window (plus the 15 m staffing and the 1 h trend windows, and the series
    features read: ``also``) with its bucket: at most W/30 long."""
    every = set(windows) | {STAFFING_WINDOW_SECONDS, TREND_WINDOW_SECONDS} | set(also)
    return [(w, max(1, w // 30)) for w in sorted(every)]
