"""Pacing for the worker: a global rate limit and per-server connection slots.

The rate limit spaces message starts evenly (``rate`` per second) across all
connections; it is shared by the worker's threads. Routes count their open
connections and remember when a server asked us to back off (421, 4.7.x).

Limits per destination (a server, or an MX domain) that hold for every
worker sharing the outbox are :class:`DestinationLimits`: here, for the
folder store, within this process; the PostgreSQL store keeps them in the
database, so that they hold across machines
(:mod:`smtpmail.outbox.postgres.limits`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DestinationLimits", "RateLimiter", "Route"]


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


class DestinationLimits:
    """Per-destination limits shared by every worker of an outbox (here: the threads
    of this process; the worker's ``per_server`` count already bounds connections).

    * :meth:`connection`: wait for one of ``limit`` connection slots;
    * :meth:`turn`: wait for the next of ``rate`` message starts per second;
    * :meth:`pause` / :meth:`paused_until`: a backoff after a busy signal.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, RateLimiter] = {}
        self._paused: dict[str, float] = {}

    def connection(self, destination: str, limit: int, stop: threading.Event) -> object | None:
        """A held slot (give it to :meth:`release`); None when ``stop`` was set."""
        return None if stop.is_set() else destination

    def release(self, slot: object) -> None:
        """Give a connection slot back."""

    def turn(self, destination: str, rate: float, stop: threading.Event) -> bool:
        """Wait for this destination's next message start; False when ``stop`` was set."""
        with self._lock:
            limiter = self._rates.get(destination)
            if limiter is None:
                limiter = self._rates[destination] = RateLimiter(rate)
        return limiter.acquire(stop)

    def pause(self, destination: str, until: float) -> None:
        with self._lock:
            self._paused[destination] = max(self._paused.get(destination, 0.0), until)

    def paused_until(self, destination: str) -> float:
        with self._lock:
            return self._paused.get(destination, 0.0)

    def close(self) -> None:
        """Let go of what the limits hold open."""
