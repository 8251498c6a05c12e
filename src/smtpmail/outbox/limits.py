"""Pacing for the worker: a global rate limit and per-server connection slots.

The rate limit spaces message starts evenly (``rate`` per second) across all
connections; it is shared by the worker's threads. Routes count their open
connections and remember when a server asked us to back off (421, 4.7.x).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RateLimiter", "Route"]


class RateLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced, for every thread."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for the next slot; False when ``stop`` was set meanwhile."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            self._sleep(delay)
        return stop is None or not stop.is_set()


@dataclass
class Route:
    """The messages due for one server in this run, and its connection count."""

    host: str
    port: int
    ids: deque[str] = field(default_factory=deque)
    active: int = 0
    #: The server asked us to slow down: no new attempt before this (time.time()).
    paused_until: float = 0.0
    busy_signals: int = 0
    #: The connection could not be set up: the rest is deferred with this error.
    dead: BaseException | None = None

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    def pause(self, base: float, now: float) -> float:
        """Back off after a busy signal, doubling each time (capped at an hour)."""
        self.busy_signals += 1
        self.paused_until = now + min(base * 2 ** (self.busy_signals - 1), 3600.0)
        return self.paused_until
