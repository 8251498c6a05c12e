"""Per-destination limits kept in PostgreSQL, so that they hold across machines.

* Connections: slot ``i`` of a destination is the session advisory lock
  ``(crc32(destination), i)``, taken with ``pg_try_advisory_lock`` on a
  connection of its own. PostgreSQL drops a session's locks when it ends, so a
  worker killed (or cut off) gives its slots back by itself.
* Rate: ``smtpmail_pace.next_start`` is the next free start for a destination;
  each message start reserves one (``greatest(next_start, now) + 1/rate``) in
  one row-locked statement, and waits for it.
* Backoff after a busy signal (421, 4.7.x): ``smtpmail_pace.paused_until``,
  read by every worker before it uses the destination.
"""

from __future__ import annotations

import threading
import zlib
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from smtpmail._log import Logger
from smtpmail.errors import OutboxError
from smtpmail.outbox.limits import DestinationLimits

if TYPE_CHECKING:
    import psycopg

    from smtpmail.outbox.postgres import PostgresOutbox

__all__ = ["DatabaseLimits"]

log = Logger("smtpmail.outbox")

#: How often a worker waiting for a connection slot asks again (seconds).
SLOT_POLL = 0.05


def _lock_key(destination: str) -> int:
    """crc32 as PostgreSQL's signed int4."""
    key = zlib.crc32(destination.encode("utf-8"))
    return key - (1 << 32) if key >= 1 << 31 else key


class DatabaseLimits(DestinationLimits):
    """The limits of :class:`DestinationLimits`, enforced in the outbox's database."""

    def __init__(self, outbox: PostgresOutbox) -> None:
        super().__init__()
        self.outbox = outbox
        self._slots: psycopg.Connection[Any] | None = None
        self._held: set[tuple[int, int]] = set()

    def connection(self, destination: str, limit: int, stop: threading.Event) -> object | None:
        key = _lock_key(destination)
        while not stop.is_set():
            with self._lock:
                for i in range(limit):
                    if (key, i) in self._held:
                        continue  # (a session may take its own lock again: never count twice)
                    if self._try_lock(key, i):
                        self._held.add((key, i))
                        return (key, i)
            stop.wait(SLOT_POLL)
        return None

    def _try_lock(self, key: int, slot: int) -> bool:
        driver = self.outbox.driver()
        try:
            if self._slots is None or self._slots.closed:
                self._slots = self.outbox.connect()
                self._held.clear()  # a new session holds nothing
            row = self._slots.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, slot)).fetchone()
        except driver.Error as exc:
            log.warning("cannot take a connection slot: %s", exc)
            self._slots = None
            return False
        return bool(row and row[0])

    def release(self, slot: object) -> None:
        if not isinstance(slot, tuple):
            return
        with self._lock:
            if slot not in self._held:
                return
            self._held.discard(slot)
            if self._slots is not None:
                with suppress(Exception):  # a lost session released it already
                    self._slots.execute("SELECT pg_advisory_unlock(%s, %s)", slot)

    def turn(self, destination: str, rate: float, stop: threading.Event) -> bool:
        interval = 1.0 / rate
        try:
            with self.outbox.database("cannot pace messages") as conn:
                row = conn.execute(
                    "INSERT INTO smtpmail_pace (destination, next_start)"
                    " VALUES (%(d)s, clock_timestamp() + make_interval(secs => %(i)s))"
                    " ON CONFLICT (destination) DO UPDATE SET next_start ="
                    " greatest(smtpmail_pace.next_start, clock_timestamp())"
                    " + make_interval(secs => %(i)s)"
                    " RETURNING extract(epoch FROM next_start - clock_timestamp()) - %(i)s",
                    {"d": destination, "i": interval},
                ).fetchone()
        except OutboxError as exc:  # pacing must not stop the run
            log.warning("%s", exc)
            return not stop.wait(interval)
        wait = float(row[0]) if row is not None else 0.0
        if wait > 0:
            return not stop.wait(wait)
        return not stop.is_set()

    def pause(self, destination: str, until: float) -> None:
        super().pause(destination, until)
        try:
            with self.outbox.database("cannot share a backoff") as conn:
                conn.execute(
                    "INSERT INTO smtpmail_pace (destination, next_start, paused_until)"
                    " VALUES (%(d)s, now(), to_timestamp(%(u)s))"
                    " ON CONFLICT (destination) DO UPDATE SET paused_until ="
                    " greatest(smtpmail_pace.paused_until, to_timestamp(%(u)s))",
                    {"d": destination, "u": until},
                )
        except OutboxError as exc:
            log.warning("%s", exc)

    def paused_until(self, destination: str) -> float:
        local = super().paused_until(destination)
        try:
            with self.outbox.database("cannot read a backoff") as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM paused_until) FROM smtpmail_pace"
                    " WHERE destination = %s",
                    (destination,),
                ).fetchone()
        except OutboxError as exc:
            log.warning("%s", exc)
            return local
        shared = float(row[0]) if row is not None and row[0] is not None else 0.0
        return max(local, shared)

    def close(self) -> None:
        with self._lock:
            if self._slots is not None:
                with suppress(Exception):
                    self._slots.close()
            self._slots = None
            self._held.clear()
