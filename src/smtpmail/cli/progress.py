"""Progress of a bulk send: a bar on a terminal, plain lines otherwise.

On a terminal one line is redrawn in place: a bar, the count, the rate and
the time left. Elsewhere (a pipe, a log file, cron) each message gets a line
of its own, which ``grep`` and ``tail -f`` read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

__all__ = ["ProgressBar"]

WIDTH = 24


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Counts messages done out of ``total`` and shows it on ``stream``."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.done = 0
        self._clock = clock
        self._start = clock()
        self._drawn = 0.0

    def rate(self) -> float:
        elapsed = self._clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The bar as text: ``[#####-----] 50/100  50%  12.5 msg/s  ETA 0:04``."""
        fraction = self.done / self.total if self.total else 1.0
        filled = int(WIDTH * fraction)
        rate = self.rate()
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "--:--"
        bar = "#" * filled + "-" * (WIDTH - filled)
        return f"[{bar}] {self.done}/{self.total} {fraction:4.0%}  {rate:6.1f} msg/s  ETA {eta}"

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
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
