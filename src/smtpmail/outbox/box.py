"""The outbox's store interface, and what every store shares (RFC 5321 §4.5.4).

Two stores keep the same records (:mod:`~smtpmail.outbox.record`), follow the
same retry schedule and the same "possibly delivered" rule
(:func:`~smtpmail.outbox.outcome.apply_abandoned`), and are drained by the same
:class:`~smtpmail.outbox.worker.Worker`; only persistence and claiming differ:

* :class:`~smtpmail.outbox.store.FolderOutbox` (a path): files, ``flock``,
  atomic rename; one machine, nothing to run.
* :class:`~smtpmail.outbox.postgres.PostgresOutbox` (a ``postgresql://`` URL):
  rows, ``FOR UPDATE SKIP LOCKED`` and leases; workers on many machines.

``Outbox(location)`` picks the store by the location's form, as
:class:`pathlib.Path` picks its flavour. What happens to a message before it
is stored (the envelope, the Bcc rule, the Message-ID) is done here, once.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any

from smtpmail._log import Logger
from smtpmail.errors import InvalidArgument, OutboxError
from smtpmail.message.content import MessageInput, as_content, envelope_from_headers
from smtpmail.outbox.events import Observer
from smtpmail.outbox.limits import DestinationLimits
from smtpmail.outbox.record import QueuedMessage, RecipientState, State
from smtpmail.outbox.schedule import RetrySchedule
from smtpmail.protocol.envelope import Envelope

__all__ = ["Claim", "Due", "Outbox", "is_database_url"]

log = Logger("smtpmail.outbox")  # logging itself is imported when needed (_log)

_HEAD_LIMIT = 64 * 1024
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:", re.IGNORECASE | re.MULTILINE)
_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(location: object) -> bool:
    """True for a PostgreSQL URL (the database store), False for a folder."""
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


@dataclass(frozen=True, slots=True)
class Due:
    """What a worker routes a due message by (:meth:`Outbox.due_for_routing`)."""

    id: str
    #: The message's own server (HOST:PORT), if it has one.
    server: str | None
    #: The first recipient due (else the first pending): direct delivery routes
    #: by its domain.
    recipient: str


class Claim:
    """A message this worker holds (a lock or a lease) until :meth:`release`.

    ``content`` is the stored message opened for reading, from its start.
    ``recovered`` says the previous attempt's worker died mid-attempt.
    ``due_by``: when it was claimed; an attempt goes to the recipients due by
    then (:meth:`QueuedMessage.due`), the others wait for their own time.
    """

    def __init__(self, message: QueuedMessage, content: IO[bytes]) -> None:
        self.message = message
        self.content = content
        self.recovered = False
        self.due_by = time.time()
        #: Set by the worker: where the attempt goes (when claimed for a server),
        #: and when the message went out (monotonic; None if it never did).
        self.destination: str | None = None
        self.started: float | None = None

    def save(self, *, sync_dir: bool = True) -> None:
        """Store the message's state durably (``sync_dir``: see FolderOutbox.save)."""
        raise NotImplementedError

    def release(self) -> None:
        if not self.content.closed:
            self.content.close()

    def finish(self, *, sync_dir: bool = True) -> None:
        """Save the state, then release the claim (in one step where the store can);
        released even when the save fails."""
        try:
            self.save(sync_dir=sync_dir)
        finally:
            self.release()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Outbox:
    """A durable queue of messages: a folder, or a PostgreSQL database.

    ``Outbox("~/outbox")`` is a :class:`~smtpmail.outbox.store.FolderOutbox`,
    ``Outbox("postgresql://...")`` a :class:`~smtpmail.outbox.postgres.PostgresOutbox`.
    """

    schedule: RetrySchedule
    #: Who claims, in inflight marks and leases (the database store: host, pid, nonce).
    owner: str | None = None
    #: Told of every attempt, abandoned attempt and lease expiry (metrics hook in here).
    observer: Observer = Observer()

    def __new__(cls, location: Any = None, *args: Any, **kwargs: Any) -> Outbox:
        if cls is Outbox:
            if is_database_url(location):
                from smtpmail.outbox.postgres import PostgresOutbox

                return super().__new__(PostgresOutbox)
            from smtpmail.outbox.store import FolderOutbox

            return super().__new__(FolderOutbox)
        return super().__new__(cls)

    # -- what each store implements --------------------------------------------

    def where(self, msg_id: str | None = None) -> str:
        """Where the outbox (or one message) is kept, for people."""
        raise NotImplementedError

    def load(self, msg_id: str) -> QueuedMessage:
        """The message's state; KeyError when it is not (or no longer) queued."""
        raise NotImplementedError

    def ids(self) -> list[str]:
        """The ids of every queued message, oldest first."""
        raise NotImplementedError

    def claim(self, msg_id: str, *, due_by: float | None = None) -> Claim | None:
        """Hold a message for sending; None when another worker holds it, it is
        done or gone, or (with ``due_by``) its next attempt is later. A message
        left in flight by a dead worker is recorded as possibly delivered
        (:func:`~smtpmail.outbox.outcome.apply_abandoned`) and claimed at once."""
        raise NotImplementedError

    def purge(self, ids: Iterable[str] | None = None, *, everything: bool = False) -> int:
        """Remove done messages (``ids``: those; ``everything``: pending ones too);
        never one a worker holds. Returns how many went."""
        raise NotImplementedError

    def keys(self) -> dict[str, str | None]:
        """Every key given to :meth:`add`: key -> the message's id while it is
        queued, None once it was done and purged (the ``keys`` ledger)."""
        raise NotImplementedError

    def _store(self, record: QueuedMessage, content: Iterator[bytes]) -> None:
        """Store a new message durably (its ``size`` set from ``content``)."""
        raise NotImplementedError

    # -- what stores may do better ---------------------------------------------

    def messages(self, ids: Iterable[str] | None = None) -> Iterator[QueuedMessage]:
        """Every queued message (or those of ``ids`` still queued), oldest first."""
        for msg_id in self.ids() if ids is None else ids:
            try:
                yield self.load(msg_id)
            except KeyError:
                continue  # purged meanwhile
            except ValueError as exc:  # a hand-edited or foreign record: skip it, loudly
                where = self.where()
                log.error("%s: message %s: unreadable state, skipped: %s", where, msg_id, exc)

    def due(self, now: float, ids: Iterable[str] | None = None) -> Iterator[QueuedMessage]:
        """The messages a worker should try now: pending and due, or left in flight."""
        for message in self.messages(ids):
            if not message.done and (message.next_attempt <= now or message.inflight is not None):
                yield message

    def due_for_routing(self, now: float, ids: Iterable[str] | None = None) -> Iterator[Due]:
        """What a worker needs of each message :meth:`due` yields to route it; the
        database store reads only that (every worker scans the whole queue)."""
        for message in self.due(now, ids):
            # The first recipient due now; one left in flight by a dead worker may have none.
            first = (message.due(now) or message.pending)[0]
            yield Due(message.id, message.server, first.address)

    def claim_many(self, ids: list[str], *, due_by: float | None = None) -> list[Claim]:
        """:meth:`claim` for several messages (those held elsewhere are skipped)."""
        claims: list[Claim] = []
        for msg_id in ids:
            claim = self.claim(msg_id, due_by=due_by)
            if claim is not None:
                claims.append(claim)
        return claims

    def finish_many(
        self, finished: Sequence[Claim], *, mark: Claim | None = None
    ) -> list[OutboxError | None]:
        """Store the outcomes of ``finished`` (their attempts are over) and release
        them; then, if given, store ``mark``'s end-of-data mark durably (it must be
        stored before that message's final dot). When an outcome cannot be
        stored, neither is the mark: the worker stops, and sends nothing more.

        Returns the error of each write, None where it was stored: one per claim
        of ``finished``, then one for ``mark``. The folder store writes a file for
        each; the database store writes them all in one transaction (one commit
        for a message's mark and the outcomes of those before it).
        """
        errors: list[OutboxError | None] = []
        for claim in finished:
            # If a power cut loses this rename, the previous durable state comes
            # back: the inflight mark when the message went out (retried as
            # possibly delivered), else a pending state (retried). Never a lost
            # message; so one directory fsync per attempt (the mark's), not two.
            try:
                claim.finish(sync_dir=False)
                errors.append(None)
            except OutboxError as exc:
                errors.append(exc)
        if mark is not None:
            failed = next((exc for exc in errors if exc is not None), None)
            try:
                if failed is not None:
                    raise failed  # the run stops: nothing more goes out
                mark.save()
                errors.append(None)
            except OutboxError as exc:
                errors.append(exc)
        return errors

    def next_due(self) -> float | None:
        """When the earliest pending message falls due; None when none is pending."""
        return min((m.next_attempt for m in self.messages() if not m.done), default=None)

    def depth(self) -> dict[str, int]:
        """How many messages are in each state (their ``status``), for metrics."""
        counts = {state.value: 0 for state in State}
        for message in self.messages():
            counts[message.status] += 1
        return counts

    def wait_for_mail(self, timeout: float, stop: threading.Event) -> None:
        """Sleep up to ``timeout`` seconds, or until ``stop`` is set (or, where the
        store can tell, until a message is added)."""
        stop.wait(timeout)

    def limits(self) -> DestinationLimits:
        """The per-destination limits every worker of this outbox shares."""
        return DestinationLimits()

    def migrate(self) -> str:
        """Bring the store's schema up to date; says what was done."""
        return "a folder outbox has no schema to migrate"

    def close(self) -> None:
        """Let go of what the store holds open (connections)."""

    # -- shared ----------------------------------------------------------------

    def find(self, prefix: str) -> QueuedMessage:
        """The message whose id starts with ``prefix`` (as git abbreviates commits).

        KeyError when none does, or its state cannot be read (as
        :meth:`messages` skips it), saying which and where."""
        found = [i for i in self.ids() if i.startswith(prefix)]
        if len(found) != 1:
            what = "no message" if not found else f"{len(found)} messages"
            raise KeyError(f"{what} with id {prefix!r}")
        try:
            return self.load(found[0])
        except ValueError as exc:
            where = self.where()
            raise KeyError(f"{where}: message {found[0]}: unreadable state: {exc}") from exc

    def envelope(self, message: QueuedMessage, due_by: float | None = None) -> Envelope:
        """The envelope for the next attempt: only the recipients still pending
        (with ``due_by``, those of them due by then)."""
        recipients = message.pending if due_by is None else message.due(due_by)
        return Envelope(
            message.sender,
            [r.address for r in recipients],
            notify=message.notify,
            ret=message.ret,
            envid=message.envid,
            requiretls=message.requiretls,
        )

    def retry(self, ids: Iterable[str] | None = None) -> int:
        """Make deferred messages due now; returns how many."""
        count = 0
        for msg_id in ids if ids is not None else self.ids():
            claim = self.claim(msg_id)
            if claim is None:
                continue
            with claim:
                claim.message.next_attempt = 0.0
                for r in claim.message.pending:
                    r.next_attempt = 0.0
                claim.save()
                count += 1
        return count

    def add(
        self,
        message: MessageInput,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
        server: str | None = None,
        not_before: float | None = None,
        keep_bcc: bool = False,
        key: str | None = None,
    ) -> QueuedMessage:
        """Queue a message; it is durable when this returns.

        The envelope comes from the arguments or, failing that, from the
        headers (Resent-*, From/Sender, To/Cc/Bcc). A Message-ID is added when
        the message has none, so that every attempt, and any duplicate a
        lost reply may cause, carries the same one. Raises OutboxError when
        it cannot be stored (nothing is queued then).

        The Bcc and Resent-Bcc fields are removed before the message is stored
        (unless ``keep_bcc``): the stored copy is what goes on the wire, so
        nothing private is kept and the worker sends it as it is.

        ``key``: the caller's idempotency key, kept with the message and, once
        it is done and purged, in the ``keys`` ledger (see :meth:`keys`).
        """
        if key is not None and (not key or "\n" in key or not key.isascii()):
            raise InvalidArgument(f"outbox key {key!r}: one line of ASCII")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if isinstance(message, bytearray | memoryview):
            message = bytes(message)
        if envelope is None:
            envelope = _envelope(message, sender, recipients)
        if server is not None:
            _check_server(server)
        msg_id = f"{time.time_ns() // 1000:x}-{secrets.token_hex(4)}"
        # The message's transforms (the Bcc rule) happen here, once, rather than
        # at each attempt: the queue then holds no blind copies' addresses, and
        # the choice of keep_bcc needs no field in the record.
        chunks = iter(as_content(message, keep_bcc=keep_bcc).chunks)
        head, message_id, subject = _read_head(chunks, msg_id, envelope.sender)
        now = time.time()
        first = max(now, not_before or 0.0)
        record = QueuedMessage(
            id=msg_id,
            sender=envelope.sender,
            recipients=[RecipientState(a, next_attempt=first) for a in envelope.recipients],
            created=now,
            next_attempt=first,
            message_id=message_id,
            subject=subject,
            server=server,
            notify=list(envelope.notify) if envelope.notify else None,
            ret=envelope.ret,
            envid=envelope.envid,
            requiretls=envelope.requiretls,
            key=key,
        )
        self._store(record, _chain(head, chunks))
        log.info(
            "queued %s from <%s> to %d recipient(s)",
            msg_id,
            record.sender,
            len(envelope.recipients),
        )
        return record

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _envelope(
    message: MessageInput, sender: str | None, recipients: Iterable[str] | str | None
) -> Envelope:
    if sender is not None and recipients is not None:
        return Envelope(sender, recipients)
    parsed = message if isinstance(message, Message) else None
    if parsed is None and isinstance(message, bytes):
        parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            _header_block(message[:_HEAD_LIMIT]), headersonly=True
        )
    if parsed is None:
        from smtpmail.message.content import resolve_envelope

        return resolve_envelope(message, sender, recipients)
    return envelope_from_headers(parsed, sender, recipients)


def _header_block(head: bytes) -> bytes:
    cut = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(cut)] if cut else head


def _check_server(server: str) -> None:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"server must be HOST:PORT, not {server!r}")


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def _read_head(
    chunks: Iterator[bytes], msg_id: str, sender: str
) -> tuple[bytes, str | None, str | None]:
    """The first block of the message, with a Message-ID added when it has none;
    also the Message-ID and the Subject (for listings)."""
    head = bytearray()
    for chunk in chunks:
        head += chunk
        if len(head) >= _HEAD_LIMIT or b"\n\n" in head or b"\r\n\r\n" in head:
            break
    block = _header_block(bytes(head[:_HEAD_LIMIT]))
    parsed = email.parser.BytesParser(policy=email.policy.default).parse(
        io.BytesIO(block + b"\r\n\r\n"), headersonly=True
    )
    subject = str(parsed.get("Subject", "")) or None
    message_id = str(parsed.get("Message-ID", "")).strip() or None
    if not _MESSAGE_ID.search(block):
        domain = sender.rpartition("@")[2] or "smtpmail.invalid"
        message_id = f"<{msg_id}@{domain}>"
        eol = b"\r\n" if b"\r\n" in head else b"\n"
        head[0:0] = b"Message-ID: " + message_id.encode("utf-8") + eol
    return bytes(head), message_id, subject
