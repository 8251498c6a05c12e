"""The outbox in PostgreSQL, drained by workers on many machines (psycopg 3).

The records are those of the folder store (:mod:`~smtpmail.outbox.record`):
a row per message in ``smtpmail_messages``, a row per recipient in
``smtpmail_recipients``, and the message itself, stored once, in 256 KiB
rows of ``smtpmail_chunks``, written as it is read and read back chunk by
chunk while it is sent (never whole in a worker's memory).

Claiming: ``SELECT ... FOR UPDATE SKIP LOCKED`` over a batch of due messages,
then a lease on each (``lease_owner``, ``lease_until``), renewed by a
heartbeat thread while the worker holds it and by every save. A worker that
dies or is cut off for longer than the lease loses it; the next claimer finds
the message's in-flight mark (written, as in the folder store, just before
the final dot: :mod:`~smtpmail.outbox.endmark`), if any, and records it as
possibly delivered with the same rule,
:func:`~smtpmail.outbox.outcome.apply_abandoned`. A save by a worker whose
lease was taken over fails (:class:`~smtpmail.errors.OutboxError`): it must
not overwrite the new holder's state.

``Outbox.add`` sends ``NOTIFY smtpmail_outbox`` in its transaction, which
wakes ``queue run --watch`` (LISTEN) at once on every machine.

The schema is created and upgraded by :meth:`PostgresOutbox.migrate`
(``smtpmail queue migrate``); a database at another version is refused.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from smtpmail._log import Logger
from smtpmail.errors import OutboxError
from smtpmail.outbox.box import Claim, Due, Outbox
from smtpmail.outbox.events import tell
from smtpmail.outbox.outcome import apply_abandoned
from smtpmail.outbox.postgres.schema import LATEST, MIGRATIONS
from smtpmail.outbox.postgres.states import write_states
from smtpmail.outbox.record import QueuedMessage, RecipientState, State
from smtpmail.outbox.schedule import RetrySchedule

if TYPE_CHECKING:
    import psycopg

    from smtpmail.outbox.postgres.limits import DatabaseLimits

__all__ = ["CHUNK_SIZE", "PostgresClaim", "PostgresOutbox"]

log = Logger("smtpmail.outbox")

#: The size of each stored piece of a message (the last one may be shorter).
CHUNK_SIZE = 256 * 1024
#: A message up to this size comes with its claim (read with the batch's rows,
#: not by a query of its own when it is sent): at most ``batch`` times this
#: is held at once.
PREFETCH_SIZE = 64 * 1024
CHANNEL = "smtpmail_outbox"
_LOCK_ID = 0x736D7470  # pg_advisory_xact_lock key for migrations ("smtp")

_MESSAGE_COLUMNS = (
    "id", "sender", "created", "next_attempt", "attempts", "size", "message_id", "subject",
    "server", "notify", "ret", "envid", "requiretls", "inflight", "possible_duplicates",
    "last_error", "finished", "key",
)  # fmt: skip
_JSON_COLUMNS = frozenset({"notify", "inflight"})
_RECIPIENT_COLUMNS = (
    "address", "state", "attempts", "reply", "code", "updated", "possibly_delivered",
    "next_attempt",
)  # fmt: skip
#: The records and their leases: the owner, and the seconds the lease has left by
#: the database's clock (negative once it ended), made a time of this machine's.
_SELECT = (
    "SELECT " + ", ".join(_MESSAGE_COLUMNS) + ", lease_owner,"
    " extract(epoch FROM lease_until - now()) FROM smtpmail_messages"
)
_FREE = "(lease_until IS NULL OR lease_until < now())"
_SELECT_RECIPIENTS = (
    "SELECT message, " + ", ".join(_RECIPIENT_COLUMNS) + " FROM smtpmail_recipients"
)
_BY_POSITION = "ORDER BY message, position"
#: Lease those of %(ids)s that are pending, due by %(due_by)s (or left in
#: flight) and held by nobody, skipping rows another worker is claiming (and
#: locking in order of id); returns their records, each one's previous lease
#: owner (an expired lease taken over), its recipients (JSON, by position)
#: and, if it is small, its first chunk: one statement.
_CLAIM = (
    "WITH taken AS (SELECT id, lease_owner FROM smtpmail_messages"
    f" WHERE id = ANY(%(ids)s) AND NOT done AND {_FREE}"
    " AND (next_attempt <= %(due_by)s OR inflight IS NOT NULL)"
    " ORDER BY id FOR UPDATE SKIP LOCKED)"
    " UPDATE smtpmail_messages AS m SET lease_owner = %(owner)s,"
    " lease_until = now() + make_interval(secs => %(lease)s) FROM taken"
    # (the list again: the rows to update are found by the primary key, whatever
    # the planner thinks of taken's size)
    " WHERE m.id = taken.id AND m.id = ANY(%(ids)s) RETURNING "
    + ", ".join(f"m.{c}" for c in _MESSAGE_COLUMNS)
    + ", taken.lease_owner, (SELECT json_agg(json_build_array("
    + ", ".join(_RECIPIENT_COLUMNS)
    + ") ORDER BY position) FROM smtpmail_recipients WHERE message = m.id),"
    " (SELECT data FROM smtpmail_chunks WHERE message = m.id AND seq = 0"
    " AND m.size <= %(prefetch)s)"
)


def _driver() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise OutboxError(
            "the PostgreSQL outbox needs psycopg 3: pip install 'smtpmail[postgres]'"
        ) from exc
    return psycopg


def _hidden_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _ChunkReader(io.RawIOBase):
    """The stored message as a seekable binary file, read one chunk at a time."""

    def __init__(
        self, outbox: PostgresOutbox, msg_id: str, size: int, first: bytes | None = None
    ) -> None:
        self._outbox = outbox
        self._id = msg_id
        self._size = size
        self._pos = 0
        self._seq = -1 if first is None else 0
        self._chunk = first or b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        seq, offset = divmod(self._pos, CHUNK_SIZE)
        if seq != self._seq:
            try:
                self._chunk = self._outbox.read_chunk(self._id, seq)
            except OutboxError as exc:  # a read error of the queued copy: deferred, not failed
                raise OSError(str(exc)) from exc
            self._seq = seq
        piece = self._chunk[offset : offset + len(buffer)]
        if not piece:
            raise OSError(f"message {self._id}: chunk {seq} is missing or short")
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


class PostgresClaim(Claim):
    """A message this worker holds the lease on."""

    def __init__(
        self, outbox: PostgresOutbox, message: QueuedMessage, first: bytes | None = None
    ) -> None:
        """``first``: the message's first chunk, when it was read with the claim."""
        raw = _ChunkReader(outbox, message.id, message.size, first)
        reader = io.BufferedReader(raw, CHUNK_SIZE)
        super().__init__(message, reader)
        self.outbox = outbox
        self._leased = True

    def save(self, *, sync_dir: bool = True) -> None:
        self.outbox.save(self.message)

    def finish(self, *, sync_dir: bool = True) -> None:
        (error,) = self.outbox.finish_many([self])
        if error is not None:
            raise error

    def given_back(self) -> None:
        """The lease went with the saved outcome: close the content, nothing more."""
        self._leased = False
        self.release()

    def release(self) -> None:
        if self.content.closed:
            return
        self.content.close()
        if self._leased:
            self.outbox.release(self.message.id)


class PostgresOutbox(Outbox):
    """The outbox in a PostgreSQL database (``postgresql://user@host/db``).

    ``lease``: how long a claim holds without a heartbeat, in seconds; a worker
    cut off for longer loses its messages to the others.
    """

    #: This worker's name in its leases (and marks): host, pid, nonce.
    owner: str

    def __init__(
        self,
        url: str,
        *,
        schedule: RetrySchedule | None = None,
        lease: float = 60.0,
        owner: str | None = None,
    ) -> None:
        if lease <= 0:
            raise ValueError("the lease must be positive")
        self.url = url
        self.schedule = schedule or RetrySchedule()
        self.lease = lease
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._closed = threading.Event()
        self._heartbeat: threading.Thread | None = None
        #: The schema was found at LATEST (checked once, before the first use).
        self._checked = False

    def __repr__(self) -> str:
        return f"<Outbox {_hidden_password(self.url)!r}>"

    def where(self, msg_id: str | None = None) -> str:
        url = _hidden_password(self.url)
        return url if msg_id is None else f"{url} (message {msg_id})"

    # -- connections -----------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = _driver().connect(
            self.url, autocommit=True, connect_timeout=10
        )
        return conn

    def driver(self) -> Any:
        """The psycopg module (imported when first needed)."""
        return _driver()

    def limits(self) -> DatabaseLimits:
        from smtpmail.outbox.postgres.limits import DatabaseLimits

        return DatabaseLimits(self)

    @contextmanager
    def database(self, what: str, *, check: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """The store's connection (made, and the schema checked, when needed), with
        any database error turned into an OutboxError naming ``what`` failed."""
        driver = _driver()
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                    # The store's statements are few and fixed, and their lists
                    # (ids, states) vary in length: a custom plan for each length
                    # would plan the state write (0.3 ms of the server's CPU) at
                    # every message; one generic plan each (index lookups) is made
                    # once per connection.
                    self._conn.execute("SET plan_cache_mode = force_generic_plan")
                if check and not self._checked:
                    self._check_schema(self._conn)
                    self._checked = True
                yield self._conn
            except driver.Error as exc:
                if isinstance(exc, driver.OperationalError) and self._conn is not None:
                    with suppress(Exception):
                        self._conn.close()
                    self._conn = None  # reconnect on the next call (a restart, a cut)
                raise OutboxError(f"{what}: {exc}".rstrip()) from exc

    def _check_schema(self, conn: psycopg.Connection[Any]) -> None:
        version = _schema_version(conn)
        if version != LATEST:
            conn.close()
            self._conn = None
            raise OutboxError(_schema_problem(version, _hidden_password(self.url)))

    def migrate(self, target: int = LATEST) -> str:
        """Create or upgrade the schema (to ``target``); refuse a newer one."""
        what = "cannot migrate the outbox's schema"
        with self.database(what, check=False) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS smtpmail_schema (version integer)")
            version = _schema_version(conn) or 0
            if version > LATEST:
                raise OutboxError(_schema_problem(version, _hidden_password(self.url)))
            steps = [(v, sql) for v, sql in MIGRATIONS if version < v <= target]
            for _, statements in steps:
                for statement in statements:
                    conn.execute(statement)
            if steps:
                conn.execute("DELETE FROM smtpmail_schema")
                conn.execute("INSERT INTO smtpmail_schema VALUES (%s)", (steps[-1][0],))
        self._checked = False
        if not steps:
            return f"the schema is at version {version}, nothing to do"
        return f"the schema went from version {version} to {steps[-1][0]}"

    def close(self) -> None:
        """Close the connections and stop the heartbeat (leases held then run out):
        the end of this outbox object; open another to go on."""
        self._closed.set()
        with self._lock:
            for conn in (self._conn, self._listener):
                if conn is not None:
                    with suppress(Exception):
                        conn.close()
            self._conn = self._listener = None

    # -- reading ---------------------------------------------------------------

    def _select(self, where: str, params: Any, what: str) -> list[QueuedMessage]:
        with self.database(what) as conn:
            rows = conn.execute(f"{_SELECT} WHERE {where} ORDER BY id", params).fetchall()
            recipients = conn.execute(
                f"{_SELECT_RECIPIENTS} WHERE message = ANY(%s) {_BY_POSITION}",
                ([row[0] for row in rows],),
            ).fetchall()
            records = _records(rows, recipients)
        now = time.time()
        for record, row in zip(records, rows, strict=True):
            owner, left = row[len(_MESSAGE_COLUMNS) :]
            if owner is not None and left is not None:
                record.lease_owner, record.lease_until = owner, now + float(left)
        return records

    def load(self, msg_id: str) -> QueuedMessage:
        found = self._select("id = %s", (msg_id,), f"cannot read message {msg_id}")
        if not found:
            raise KeyError(msg_id)
        return found[0]

    def ids(self) -> list[str]:
        with self.database("cannot list the outbox") as conn:
            return [r[0] for r in conn.execute("SELECT id FROM smtpmail_messages ORDER BY id")]

    def messages(self, ids: Iterable[str] | None = None) -> Iterator[QueuedMessage]:
        if ids is None:
            yield from self._select("true", (), "cannot list the outbox")
        else:
            yield from self._select("id = ANY(%s)", (list(ids),), "cannot list the outbox")

    def due(self, now: float, ids: Iterable[str] | None = None) -> Iterator[QueuedMessage]:
        where = f"NOT done AND (next_attempt <= %s OR inflight IS NOT NULL) AND {_FREE}"
        params: tuple[Any, ...] = (now,)
        if ids is not None:
            where += " AND id = ANY(%s)"
            params += (list(ids),)
        yield from self._select(where, params, "cannot list the messages due")

    def due_for_routing(self, now: float, ids: Iterable[str] | None = None) -> Iterator[Due]:
        # Three columns, not whole records: each worker of a run scans the queue.
        where = f"NOT done AND (next_attempt <= %s OR inflight IS NOT NULL) AND {_FREE}"
        params: tuple[Any, ...] = (now,)
        if ids is not None:
            where += " AND id = ANY(%s)"
            params += (list(ids),)
        final = [state.value for state in State if state.final]
        with self.database("cannot list the messages due") as conn:
            rows = conn.execute(
                # The first recipient due now, else the first pending (as QueuedMessage.due).
                "SELECT id, server, (SELECT address FROM smtpmail_recipients"
                " WHERE message = smtpmail_messages.id AND state <> ALL(%s)"
                " ORDER BY next_attempt > %s, position LIMIT 1)"
                f" FROM smtpmail_messages WHERE {where} ORDER BY id",
                (final, now, *params),
            ).fetchall()
        for msg_id, server, recipient in rows:
            if recipient is not None:  # (not done, so it has one)
                yield Due(msg_id, server, recipient)

    def next_due(self) -> float | None:
        with self.database("cannot read the outbox") as conn:
            row = conn.execute(
                "SELECT min(next_attempt) FROM smtpmail_messages WHERE NOT done"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def depth(self) -> dict[str, int]:
        # QueuedMessage.status in SQL: the least final recipient state wins.
        counts = {state.value: 0 for state in State}
        with self.database("cannot count the outbox") as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM (SELECT CASE"
                " WHEN bool_or(state = 'deferred') THEN 'deferred'"
                " WHEN bool_or(state = 'queued') THEN 'queued'"
                " WHEN bool_or(state = 'failed') THEN 'failed'"
                " ELSE 'delivered' END AS status"
                " FROM smtpmail_recipients GROUP BY message) AS m GROUP BY status"
            ).fetchall()
        counts.update({status: int(n) for status, n in rows})
        return counts

    def read_chunk(self, msg_id: str, seq: int) -> bytes:
        with self.database(f"cannot read message {msg_id}") as conn:
            row = conn.execute(
                "SELECT data FROM smtpmail_chunks WHERE message = %s AND seq = %s", (msg_id, seq)
            ).fetchone()
        return b"" if row is None else bytes(row[0])

    def keys(self) -> dict[str, str | None]:
        with self.database("cannot read the keys") as conn:
            found: dict[str, str | None] = {
                r[0]: None for r in conn.execute("SELECT key FROM smtpmail_keys")
            }
            found.update(
                (r[0], r[1])
                for r in conn.execute(
                    "SELECT key, id FROM smtpmail_messages WHERE key IS NOT NULL ORDER BY id"
                )
            )
        return found

    # -- writing ---------------------------------------------------------------

    def _store(self, record: QueuedMessage, content: Iterator[bytes]) -> None:
        with self.database(f"cannot queue message {record.id}") as conn, conn.transaction():
            self._insert(conn, record)
            size = 0
            for seq, chunk in enumerate(_fixed_chunks(content)):
                conn.execute(
                    "INSERT INTO smtpmail_chunks (message, seq, data) VALUES (%s, %s, %s)",
                    (record.id, seq, chunk),
                )
                size += len(chunk)
            record.size = size
            conn.execute("UPDATE smtpmail_messages SET size = %s WHERE id = %s", (size, record.id))
            conn.execute(f"NOTIFY {CHANNEL}")

    def _insert(self, conn: psycopg.Connection[Any], record: QueuedMessage) -> None:
        values = _message_values(record)
        names = ", ".join((*_MESSAGE_COLUMNS, "done"))
        marks = ", ".join(["%s"] * (len(_MESSAGE_COLUMNS) + 1))
        conn.execute(f"INSERT INTO smtpmail_messages ({names}) VALUES ({marks})", values)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO smtpmail_recipients (message, position, "
                + ", ".join(_RECIPIENT_COLUMNS)
                + ") VALUES (%s, %s, "
                + ", ".join(["%s"] * len(_RECIPIENT_COLUMNS))
                + ")",
                [(record.id, i, *_recipient_values(r)) for i, r in enumerate(record.recipients)],
            )

    def save(self, message: QueuedMessage) -> None:
        """Store the state of a message this worker holds, renewing its lease.

        Raises OutboxError when the lease was lost to another worker meanwhile.
        """
        with self.database(f"cannot save message {message.id}") as conn:
            if not write_states(conn, self.owner, self.lease, [message]):
                raise _lease_lost(message.id)

    def finish_many(
        self, finished: Sequence[Claim], *, mark: Claim | None = None
    ) -> list[OutboxError | None]:
        """One statement (one round trip, one commit) stores the outcomes of
        ``finished``, gives their leases back, and stores ``mark``'s end-of-data
        mark: the worker writes each message's outcome with the next message's
        mark, so a message costs one commit rather than two. An outcome whose
        lease was lost is not stored, and then neither is the mark; when the
        database fails, nothing is stored. Each of ``finished`` not stored keeps
        its previous state (its mark, if it went out: retried as possibly
        delivered)."""
        held = [claim for claim in finished if isinstance(claim, PostgresClaim)]
        assert len(held) == len(finished), "claims of another store"
        ids = [c.message.id for c in (*held, *([mark] if mark is not None else []))]
        what = f"cannot save message{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
        try:
            with self.database(what) as conn:
                stored = write_states(
                    conn,
                    self.owner,
                    self.lease,
                    [c.message for c in held],
                    release=True,
                    mark=None if mark is None else mark.message,
                )
        except OutboxError as exc:
            for claim in held:
                claim.release()  # (the lease: given back by a statement of its own)
            return [exc] * len(ids)
        with self._lock:
            self._held.difference_update(c.message.id for c in held)
        errors: list[OutboxError | None] = []
        for claim in held:  # (stored: the lease went with it; lost: not ours to give)
            claim.given_back()
            errors.append(None if claim.message.id in stored else _lease_lost(claim.message.id))
        if mark is not None:
            lost = next((c.message.id for c in held if c.message.id not in stored), None)
            if mark.message.id in stored:
                errors.append(None)
            elif lost is not None:
                errors.append(
                    OutboxError(f"message {mark.message.id}: not marked: {lost} was not saved")
                )
            else:
                errors.append(_lease_lost(mark.message.id))
        return errors

    # -- claiming --------------------------------------------------------------

    def claim(self, msg_id: str, *, due_by: float | None = None) -> Claim | None:
        claims = self.claim_many([msg_id], due_by=due_by)
        return claims[0] if claims else None

    def claim_many(self, ids: list[str], *, due_by: float | None = None) -> list[Claim]:
        """Lease the messages of ``ids`` that are pending, due (or left in flight)
        and held by nobody, skipping rows another worker is claiming: one statement."""
        params = {
            "ids": ids,
            "due_by": float("inf") if due_by is None else due_by,
            "owner": self.owner,
            "lease": self.lease,
            "prefetch": PREFETCH_SIZE,
        }
        with self.database("cannot claim messages") as conn:
            rows = sorted(conn.execute(_CLAIM, params).fetchall(), key=lambda row: str(row[0]))
        if not rows:
            return []
        size = len(_MESSAGE_COLUMNS) + 1  # (and the previous lease owner)
        recipients = [(row[0], *r) for row in rows for r in row[size] or ()]
        records = _records([row[:size] for row in rows], recipients)
        claims: list[Claim] = []
        abandoned: list[QueuedMessage] = []
        for row, message in zip(rows, records, strict=True):
            first = None if row[size + 1] is None else bytes(row[size + 1])
            claim = PostgresClaim(self, message, first)
            if row[size - 1] is not None:
                log.warning("%s: the lease of %s expired; taken over", message.id, row[size - 1])
                tell(self.observer, "lease_expired", message, row[size - 1])
            if message.inflight is not None:
                apply_abandoned(message)
                abandoned.append(message)
                claim.recovered = True
            claims.append(claim)
        if abandoned:
            try:
                with self.database("cannot record a message left in flight") as conn:
                    stored = write_states(conn, self.owner, self.lease, abandoned)
                lost = [m.id for m in abandoned if m.id not in stored]
                if lost:
                    raise _lease_lost(lost[0])
            except OutboxError:
                for taken_id in (row[0] for row in rows):
                    self.release(taken_id)
                raise
            for message in abandoned:
                tell(self.observer, "attempt_abandoned", message)
        with self._lock:
            self._held.update(row[0] for row in rows)
        self._start_heartbeat()
        return claims

    def release(self, msg_id: str) -> None:
        """Give the lease back (a failure only logs: the lease then expires)."""
        with self._lock:
            self._held.discard(msg_id)
        try:
            with self.database(f"cannot release message {msg_id}") as conn:
                conn.execute(
                    "UPDATE smtpmail_messages SET lease_owner = NULL, lease_until = NULL"
                    " WHERE id = %s AND lease_owner = %s",
                    (msg_id, self.owner),
                )
        except OutboxError as exc:
            log.warning("%s; its lease expires in %gs", exc, self.lease)

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(
                target=self._beat, name="smtpmail-outbox-lease", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        """Renew the leases held, on a connection of its own, every third of a lease."""
        driver = _driver()
        conn: psycopg.Connection[Any] | None = None
        while not self._closed.wait(self.lease / 3):
            with self._lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                conn.execute(
                    "UPDATE smtpmail_messages SET lease_until = now() + make_interval(secs => %s)"
                    " WHERE lease_owner = %s AND id = ANY(%s)",
                    (self.lease, self.owner, held),
                )
            except driver.Error as exc:
                log.warning("cannot renew the leases of %d message(s): %s", len(held), exc)
                conn = None
        if conn is not None:
            conn.close()

    def purge(self, ids: Iterable[str] | None = None, *, everything: bool = False) -> int:
        where = f"{_FREE}" + ("" if everything else " AND done")
        params: tuple[Any, ...] = ()
        if ids is not None:
            where += " AND id = ANY(%s)"
            params = (list(ids),)
        with self.database("cannot purge the outbox") as conn, conn.transaction():
            rows = conn.execute(
                f"DELETE FROM smtpmail_messages WHERE {where} RETURNING key, done", params
            ).fetchall()
            keys = [(key,) for key, done in rows if key is not None and done]
            if keys:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO smtpmail_keys (key) VALUES (%s) ON CONFLICT DO NOTHING", keys
                    )
        return len(rows)

    # -- waiting ---------------------------------------------------------------

    def wait_for_mail(self, timeout: float, stop: threading.Event) -> None:
        """Sleep until a message is added anywhere (NOTIFY), ``stop``, or ``timeout``."""
        driver = _driver()
        deadline = time.monotonic() + timeout
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self.connect()
                self._listener.execute(f"LISTEN {CHANNEL}")
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for _ in self._listener.notifies(timeout=min(left, 0.5), stop_after=1):
                    return
        except driver.Error as exc:
            log.warning("cannot listen for new mail (%s); polling instead", exc)
            self._listener = None
            stop.wait(max(deadline - time.monotonic(), 0.0))


def _lease_lost(msg_id: str) -> OutboxError:
    return OutboxError(f"message {msg_id}: its lease was lost to another worker")


def _records(rows: list[Any], recipient_rows: list[Any]) -> list[QueuedMessage]:
    """Records from rows of ``_SELECT`` and of ``_SELECT_RECIPIENTS`` (by position);
    recipients of other messages are ignored."""
    recipients: dict[str, list[RecipientState]] = {row[0]: [] for row in rows}
    for row in recipient_rows:
        found = recipients.get(row[0])
        if found is not None:
            found.append(
                RecipientState.from_json(dict(zip(_RECIPIENT_COLUMNS, row[1:], strict=True)))
            )
    records = []
    for row in rows:
        data = dict(zip(_MESSAGE_COLUMNS, row[: len(_MESSAGE_COLUMNS)], strict=True))
        data["recipients"] = []
        record = QueuedMessage.from_json(data)
        record.recipients = recipients[record.id]
        records.append(record)
    return records


def _schema_version(conn: psycopg.Connection[Any]) -> int | None:
    exists = conn.execute("SELECT to_regclass('smtpmail_schema')").fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute("SELECT max(version) FROM smtpmail_schema").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _schema_problem(version: int | None, where: str) -> str:
    if version is None:
        return f"{where} has no outbox yet: run 'smtpmail queue migrate' first"
    if version > LATEST:
        return (
            f"{where}: the outbox's schema is at version {version}, newer than this "
            f"smtpmail knows ({LATEST}): upgrade smtpmail"
        )
    return f"{where}: the outbox's schema is at version {version}: run 'smtpmail queue migrate'"


def _message_values(record: QueuedMessage) -> tuple[Any, ...]:
    from psycopg.types.json import Jsonb

    data = record.to_json()
    values = [
        Jsonb(data[c]) if c in _JSON_COLUMNS and data[c] is not None else data[c]
        for c in _MESSAGE_COLUMNS
    ]
    return (*values, record.done)


def _recipient_values(r: RecipientState) -> tuple[Any, ...]:
    data = r.to_json()
    return tuple(data[c] for c in _RECIPIENT_COLUMNS)


def _fixed_chunks(content: Iterator[bytes]) -> Iterator[bytes]:
    """``content`` cut in CHUNK_SIZE pieces (the reader finds an offset's piece by division)."""
    pending = bytearray()
    for piece in content:
        pending += piece
        while len(pending) >= CHUNK_SIZE:
            yield bytes(pending[:CHUNK_SIZE])
            del pending[:CHUNK_SIZE]
    if pending:
        yield bytes(pending)
