"""The outbox on disk: one ``.eml`` and one ``.json`` file per message.

Why files and not SQLite: the message itself is written once and never
changes, so it lives as a plain ``.eml`` that ``cat``, ``less`` or a mail
reader opens, and that the worker streams straight to the socket without
loading it; the small, changing part (envelope and per-recipient state) is a
JSON file that ``jq`` reads. There is no shared database file for several
workers to contend on, and nothing to repair after a crash. (lettre's file
transport and Maildir use the same shape.)

Durability: every file is written to a hidden temporary name in the same
folder, ``fsync``-ed, renamed over its final name (atomic on POSIX), and the
folder is ``fsync``-ed. The ``.eml`` goes first and the ``.json`` last, and a
message exists for the outbox exactly when its ``.json`` does: a crash at any
instant leaves a message either fully queued or not queued (at worst an
orphan ``.eml`` or temporary file, removed by :meth:`Outbox.purge`).

A write that fails (a full disk, an I/O error, a read-only folder) raises
:class:`~smtpmail.errors.OutboxError` and leaves the previous file in place.

Locking: a worker claims a message with a non-blocking ``flock`` on its
``.eml`` (never replaced, unlike the ``.json``) and reads the state again
once it holds the lock. The kernel drops the lock when the process dies, even
by SIGKILL, so there are no stale locks to clean up; and an attempt that
was under way then is found marked ``inflight`` by the next claimer.

Layout::

    <root>/messages/<id>.eml    the message, exactly as it will be sent
    <root>/messages/<id>.json   envelope + per-recipient state (record.py)
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import errno
import fcntl
import io
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from email.message import Message
from pathlib import Path
from typing import IO

from smtpmail._log import Logger
from smtpmail.errors import InvalidArgument, OutboxError
from smtpmail.message.content import MessageInput, as_content, envelope_from_headers
from smtpmail.outbox.record import QueuedMessage, RecipientState
from smtpmail.outbox.schedule import RetrySchedule
from smtpmail.protocol.envelope import Envelope

__all__ = ["Claim", "Outbox"]

log = Logger("smtpmail.outbox")  # logging itself is imported when needed (_log)

#: Orphans (an .eml without .json, a temporary file) older than this are removed by purge.
ORPHAN_AGE = 3600.0
_HEAD_LIMIT = 64 * 1024
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:", re.IGNORECASE | re.MULTILINE)
_ID = re.compile(r"^[0-9a-f]{12,16}-[0-9a-f]{8}$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (or its folder) into an OutboxError."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
        if name:
            reason += f" ({name})"
        raise OutboxError(f"cannot write {path}: {reason}", errno=exc.errno) from exc


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def _header_block(head: bytes) -> bytes:
    cut = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(cut)] if cut else head


class Claim:
    """A message this process holds the lock on; release it with :meth:`release`.

    ``content`` is the ``.eml`` opened for reading (the file the lock is on).
    ``recovered`` says the previous attempt's worker died mid-attempt.
    """

    def __init__(self, outbox: Outbox, message: QueuedMessage, content: IO[bytes]) -> None:
        self.outbox = outbox
        self.message = message
        self.content = content
        self.recovered = False

    def save(self, *, sync_dir: bool = True) -> None:
        self.outbox.save(self.message, sync_dir=sync_dir)

    def release(self) -> None:
        if not self.content.closed:
            self.content.close()  # closing the file drops the flock

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Outbox:
    """A durable queue of messages in a folder; safe for several workers at once."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        schedule: RetrySchedule | None = None,
        fsync: bool = True,
    ) -> None:
        self.root = Path(root)
        self.dir = self.root / "messages"
        self.schedule = schedule or RetrySchedule()
        self.fsync = fsync
        with _writing(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"<Outbox {str(self.root)!r}>"

    # -- paths and files -------------------------------------------------------

    def eml_path(self, msg_id: str) -> Path:
        return self.dir / f"{msg_id}.eml"

    def json_path(self, msg_id: str) -> Path:
        return self.dir / f"{msg_id}.json"

    def _write(self, path: Path, chunks: Iterable[bytes], *, sync_dir: bool = True) -> int:
        # Only the writing is wrapped: an error reading the message (``chunks``)
        # is the caller's input failing, not the outbox, and is raised as it is.
        tmp = _tmp_name(path)
        size = 0
        with _writing(path):
            f = open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")  # noqa: SIM115
        try:
            for chunk in chunks:
                with _writing(path):
                    f.write(chunk)
                size += len(chunk)
            with _writing(path):
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
                f.close()  # NFS may report a failed write only here
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                f.close()  # what its buffer holds cannot be written: the file goes anyway
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if self.fsync and sync_dir:
            with _writing(path):
                _fsync_dir(path.parent)
        return size

    def save(self, message: QueuedMessage, *, sync_dir: bool = True) -> None:
        """Write the message's state atomically (temporary file, fsync, rename).

        The file's contents are always fsync-ed before the rename (else a crash
        could leave an empty file in its place: a lost message). ``sync_dir``
        also makes the rename itself durable; without it a power cut may bring
        back the previous state, which is safe when that state is an
        ``inflight`` mark: the message is then retried as possibly delivered.
        """
        data = json.dumps(message.to_json(), indent=1, ensure_ascii=False).encode("utf-8")
        self._write(self.json_path(message.id), [data], sync_dir=sync_dir)

    def load(self, msg_id: str) -> QueuedMessage:
        """The message's state; KeyError when it is not (or no longer) queued."""
        if not _ID.match(msg_id):
            raise KeyError(msg_id)
        try:
            data = json.loads(self.json_path(msg_id).read_bytes())
        except FileNotFoundError:
            raise KeyError(msg_id) from None
        return QueuedMessage.from_json(data)

    def ids(self) -> list[str]:
        """The ids of every queued message, oldest first."""
        names = (p.name for p in os.scandir(self.dir))
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def messages(self, ids: Iterable[str] | None = None) -> Iterator[QueuedMessage]:
        """Every queued message (or those of ``ids`` still queued), oldest first."""
        for msg_id in self.ids() if ids is None else ids:
            try:
                yield self.load(msg_id)
            except KeyError:
                continue  # purged meanwhile
            except ValueError as exc:  # a hand-edited or foreign file: skip it, loudly
                log.error("%s: unreadable state file, skipped: %s", self.json_path(msg_id), exc)

    def find(self, prefix: str) -> QueuedMessage:
        """The message whose id starts with ``prefix`` (as git abbreviates commits)."""
        found = [i for i in self.ids() if i.startswith(prefix)]
        if len(found) != 1:
            what = "no message" if not found else f"{len(found)} messages"
            raise KeyError(f"{what} with id {prefix!r}")
        return self.load(found[0])

    # -- adding ----------------------------------------------------------------

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
        """Queue a message; it is durable on disk when this returns.

        The envelope comes from the arguments or, failing that, from the
        headers (Resent-*, From/Sender, To/Cc/Bcc). A Message-ID is added when
        the message has none, so that every attempt, and any duplicate a
        lost reply may cause, carries the same one. Raises OutboxError when
        the files cannot be written (nothing is queued then).

        The Bcc and Resent-Bcc fields are removed before the message is stored
        (unless ``keep_bcc``): the stored .eml is what goes on the wire, so
        nothing private sits on disk and the worker sends it as it is.

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
            if sender is not None and recipients is not None:
                envelope = Envelope(sender, recipients)
            else:
                parsed = message if isinstance(message, Message) else None
                if parsed is None and isinstance(message, bytes):
                    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                        _header_block(message[:_HEAD_LIMIT]), headersonly=True
                    )
                if parsed is None:
                    from smtpmail.message.content import resolve_envelope

                    envelope = resolve_envelope(message, sender, recipients)
                else:
                    envelope = envelope_from_headers(parsed, sender)
                    if recipients is not None:
                        envelope = Envelope(envelope.sender, recipients)
        if envelope.requiretls:
            # The queue's record has no field for it yet: refusing beats a silent downgrade.
            raise InvalidArgument("the outbox does not keep REQUIRETLS (RFC 8689); send directly")
        if server is not None:
            _check_server(server)
        msg_id = f"{time.time_ns() // 1000:x}-{secrets.token_hex(4)}"
        # The message's transforms (the Bcc rule) happen here, once, rather than
        # at each attempt: the queue then holds no blind copies' addresses, and
        # the choice of keep_bcc needs no field in the record.
        chunks = iter(as_content(message, keep_bcc=keep_bcc).chunks)
        head, message_id, subject = _read_head(chunks, msg_id, envelope.sender)
        # The folder is fsync-ed once, after the .json's rename: that covers both.
        size = self._write(self.eml_path(msg_id), _chain(head, chunks), sync_dir=False)
        now = time.time()
        record = QueuedMessage(
            id=msg_id,
            sender=envelope.sender,
            recipients=[RecipientState(a) for a in envelope.recipients],
            created=now,
            next_attempt=max(now, not_before or 0.0),
            size=size,
            message_id=message_id,
            subject=subject,
            server=server,
            notify=list(envelope.notify) if envelope.notify else None,
            ret=envelope.ret,
            envid=envelope.envid,
            key=key,
        )
        try:
            self.save(record)
        except BaseException:
            with contextlib.suppress(OSError):
                self.eml_path(msg_id).unlink()
            raise
        log.info(
            "queued %s from <%s> to %d recipient(s)",
            msg_id,
            record.sender,
            len(envelope.recipients),
        )
        return record

    def keys(self) -> dict[str, str | None]:
        """Every key given to :meth:`add`: key -> the message's id while it is
        queued, None once it was done and purged (the ``keys`` ledger)."""
        found: dict[str, str | None] = {}
        try:
            with open(self.root / "keys", encoding="ascii") as f:
                found.update((line.rstrip("\n"), None) for line in f if line.strip())
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutboxError(f"cannot read {self.root / 'keys'}: {exc}") from exc
        found.update((m.key, m.id) for m in self.messages() if m.key is not None)
        return found

    def _remember(self, keys: list[str]) -> None:
        """Append the keys of done messages about to be purged to the ledger."""
        path = self.root / "keys"
        with _writing(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, "".join(k + "\n" for k in keys).encode("ascii"))
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def envelope(self, message: QueuedMessage) -> Envelope:
        """The envelope for the next attempt: only the recipients still pending."""
        return Envelope(
            message.sender,
            [r.address for r in message.pending],
            notify=message.notify,
            ret=message.ret,
            envid=message.envid,
        )

    # -- claiming --------------------------------------------------------------

    def claim(self, msg_id: str, *, due_by: float | None = None) -> Claim | None:
        """Lock a message for sending; None when another worker holds it, it is
        done or gone, or (with ``due_by``) its next attempt is later.

        Raises OutboxError when the message was left in flight and that cannot
        be recorded (see :meth:`_recover`); the message is then not claimed.
        """
        try:
            f = open(self.eml_path(msg_id), "rb")  # noqa: SIM115 - the claim owns it
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        try:
            message = self.load(msg_id)  # read again under the lock
        except (KeyError, ValueError):
            f.close()
            return None
        claim = Claim(self, message, f)
        if message.inflight is not None:
            try:
                self._recover(message)
            except BaseException:
                f.close()
                raise
            claim.recovered = True
        elif message.done or (due_by is not None and message.next_attempt > due_by):
            f.close()
            return None
        if message.done:
            f.close()
            return None
        return claim

    def _recover(self, message: QueuedMessage) -> None:
        """The worker of the last attempt died before recording its outcome: the
        message may have reached the server, so a retry may be a duplicate."""
        inflight = message.inflight or {}
        log.warning(
            "%s: the attempt started by pid %s never finished; retrying (possible duplicate)",
            message.id,
            inflight.get("pid"),
        )
        addresses = {a.lower() for a in inflight.get("recipients", [])}
        for r in message.recipients:
            if r.pending and r.address.lower() in addresses:
                r.possibly_delivered = True
        message.possible_duplicates += 1
        message.inflight = None
        message.next_attempt = 0.0  # nothing failed: try again straight away
        self.save(message)

    def retry(self, ids: Iterable[str] | None = None) -> int:
        """Make deferred messages due now; returns how many."""
        count = 0
        for msg_id in ids if ids is not None else self.ids():
            claim = self.claim(msg_id)
            if claim is None:
                continue
            with claim:
                claim.message.next_attempt = 0.0
                claim.save()
                count += 1
        return count

    # -- removing --------------------------------------------------------------

    def remove(self, msg_id: str) -> None:
        """Delete a message: the .json first, so it is never half there."""
        with _writing(self.dir):
            with contextlib.suppress(FileNotFoundError):
                self.json_path(msg_id).unlink()
            with contextlib.suppress(FileNotFoundError):
                self.eml_path(msg_id).unlink()
            if self.fsync:
                _fsync_dir(self.dir)

    def purge(self, ids: Iterable[str] | None = None, *, everything: bool = False) -> int:
        """Remove done messages (``ids``: those; ``everything``: pending ones too).

        A message a worker is sending is never removed. Also removes orphans
        left by a crash during :meth:`add`. Returns how many messages went.
        """
        removed = 0
        for msg_id in list(ids) if ids is not None else self.ids():
            claim = self._lock_any(msg_id)
            if claim is None:
                continue
            with claim:
                if everything or claim.message.done:
                    if claim.message.done and claim.message.key is not None:
                        # Purged, a done message's key still says "already sent";
                        # a pending one purged with --all may be queued again.
                        self._remember([claim.message.key])
                    self.remove(msg_id)
                    removed += 1
        self._remove_orphans()
        return removed

    def _lock_any(self, msg_id: str) -> Claim | None:
        try:
            f = open(self.eml_path(msg_id), "rb")  # noqa: SIM115 - the claim owns it
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                self.json_path(msg_id).unlink()  # a .json without its message: useless
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return Claim(self, self.load(msg_id), f)
        except (BlockingIOError, KeyError, ValueError):
            f.close()
            return None

    def _remove_orphans(self) -> None:
        cutoff = time.time() - ORPHAN_AGE
        for entry in os.scandir(self.dir):
            name = entry.name
            orphan = name.startswith(".") and name.endswith(".tmp")
            if name.endswith(".eml"):
                orphan = not self.json_path(name[:-4]).exists()
            if orphan and entry.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


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
