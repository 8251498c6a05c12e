"""Progress of a bulk send: a bar on a terminal, plain lines otherwise.

On a terminal one line is redrawn in place: a bar, the count, the rate and
the time left, fitted to the terminal's width (asked at each redraw, so a
resized window is followed): a line that wrapped could not be redrawn by a
carriage return and would leave a trail. Elsewhere (a pipe, a log file,
cron) each message gets a line of its own, which ``grep`` and ``tail -f`` read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import IO

__all__ = ["ProgressBar", "terminal_columns"]

#: The bar's width at most (and on a wide terminal).
WIDTH = 24
#: A bar narrower than this says nothing: the count alone is shown.
MIN_BAR = 5
#: Erase to the end of the line (ECMA-48 EL): a shorter redraw leaves no trail.
ERASE_LINE = "\x1b[K"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def terminal_columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` writes to; 80 when it cannot be asked."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


class ProgressBar:
    """Counts messages done out of ``total`` and shows it on ``stream``."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.done = 0
        self._clock = clock
        self._columns = columns or (lambda: terminal_columns(stream))
        self._start = clock()
        self._drawn = 0.0

    def rate(self) -> float:
        elapsed = self._clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, columns: int = 80) -> str:
        """The bar as text, at most ``columns - 1`` characters (the last column
        is left free: writing there makes some terminals wrap):
        ``[#####-----] 50/100  50%  12.5 msg/s  ETA 0:04``. On a narrow
        terminal the bar shrinks, then the rate and the time left go."""
        fraction = self.done / self.total if self.total else 1.0
        rate = self.rate()
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "--:--"
        room = max(columns - 1, 1)
        parts = [f"{self.done}/{self.total} {fraction:4.0%}", f"{rate:6.1f} msg/s", f"ETA {eta}"]
        while True:
            tail = "  ".join(parts)
            width = min(WIDTH, room - len(tail) - 3)  # "[" + bar + "] "
            if width >= MIN_BAR or len(parts) == 1:
                break
            parts.pop(1 if len(parts) == 3 else -1)  # the rate first, then the ETA
        if width < MIN_BAR:
            return tail[:room]
        filled = int(width * fraction)
        return f"[{'#' * filled}{'-' * (width - filled)}] {tail}"

    def _draw(self, end: str = "") -> None:
        self.stream.write("\r" + self.line(self._columns()) + ERASE_LINE + end)
        self.stream.flush()

    def advance(self, note: str) -> None:
        """One more message done; ``note`` says what became of it (plain mode)."""
        self.done += 1
        if not self.tty:
            self.stream.write(f"{self.done}/{self.total} {note}\n")
            self.stream.flush()
            return
        now = self._clock()
        # Redraw at most 20 times a second: drawing must not slow the sending.
        if now - self._drawn >= 0.05 or self.done == self.total:
            self._drawn = now
            self._draw()

    def finish(self) -> None:
        if self.tty:
            self._draw("\n")
