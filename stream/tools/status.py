"""One status line on stderr, as simulate, replay and follow show their progress."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TextIO

#: Seconds between updates unless told otherwise (replay and follow): in place, as log lines.
IN_PLACE_SECONDS = 0.25
LOG_SECONDS = 5.0


class StatusLine:
    """Redrawn in place (on a terminal, or when asked), else logged as a line now and then."""

    def __init__(
        self,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        *,
        in_place: bool | None = None,
        every: tuple[float, float] = (IN_PLACE_SECONDS, LOG_SECONDS),
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._in_place = stream.isatty() if in_place is None else in_place
        self._every = every[0] if self._in_place else every[1]
        self._next = clock() + self._every
        self._width = 0

    def due(self) -> bool:
        """Whether the last update is old enough for another: cheap to ask per line."""
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._every
        return True

    def show(self, text: str) -> None:
        """Draw ``text`` in place of the previous status."""
        if self._in_place:
            # Spaces rub out the rest of a longer previous line.
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self, text: str) -> None:
        """Leave ``text`` as the last status, its line ended."""
        self.show(text)
        if self._in_place:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0

    def note(self, message: str) -> None:
        """A message on a line of its own, clear of the status line."""
        self.close()
        self._stream.write(message + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Erase the status line of a terminal."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def clock_time(seconds: float) -> str:
    """``H:MM:SS``, or ``?`` for a time not known (an infinite ETA)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
