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
by SIGKILL, so there are no stale locks to clean up; and an attempt whose
final dot had gone then is found marked ``inflight`` by the next claimer
(:mod:`~smtpmail.outbox.endmark`).

Layout::

    <root>/messages/<id>.eml    the message, exactly as it will be sent
    <root>/messages/<id>.json   envelope + per-recipient state (record.py)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from smtpmail._log import Logger
from smtpmail.errors import OutboxError
from smtpmail.outbox.box import Claim, Outbox
from smtpmail.outbox.events import tell
from smtpmail.outbox.outcome import apply_abandoned
from smtpmail.outbox.record import QueuedMessage
from smtpmail.outbox.schedule import RetrySchedule

__all__ = ["FolderClaim", "FolderOutbox"]

log = Logger("smtpmail.outbox")  # logging itself is imported when needed (_log)

#: Orphans (an .eml without .json, a temporary file) older than this are removed by purge.
ORPHAN_AGE = 3600.0
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


class FolderClaim(Claim):
    """A message this process holds the ``flock`` on (``content`` is its ``.eml``:
    closing it, in :meth:`release`, drops the lock)."""

    def __init__(self, outbox: FolderOutbox, message: QueuedMessage, content: IO[bytes]) -> None:
        super().__init__(message, content)
        self.outbox = outbox

    def save(self, *, sync_dir: bool = True) -> None:
        self.outbox.save(self.message, sync_dir=sync_dir)


class FolderOutbox(Outbox):
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

    def where(self, msg_id: str | None = None) -> str:
        return str(self.root if msg_id is None else self.eml_path(msg_id))

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

    # -- adding ----------------------------------------------------------------

    def _store(self, record: QueuedMessage, content: Iterator[bytes]) -> None:
        # The folder is fsync-ed once, after the .json's rename: that covers both.
        record.size = self._write(self.eml_path(record.id), content, sync_dir=False)
        try:
            self.save(record)
        except BaseException:
            with contextlib.suppress(OSError):
                self.eml_path(record.id).unlink()
            raise

    def keys(self) -> dict[str, str | None]:
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

    # -- claiming --------------------------------------------------------------

    def claim(self, msg_id: str, *, due_by: float | None = None) -> FolderClaim | None:
        """Lock a message for sending (see :meth:`Outbox.claim`).

        Raises OutboxError when the message was left in flight and that cannot
        be recorded; the message is then not claimed.
        """
        claim = self._lock_any(msg_id)
        if claim is None:
            return None
        message = claim.message
        if message.inflight is not None:
            try:
                apply_abandoned(message)
                self.save(message)
                tell(self.observer, "attempt_abandoned", message)
            except BaseException:
                claim.release()
                raise
            claim.recovered = True
        elif message.done or (due_by is not None and message.next_attempt > due_by):
            claim.release()
            return None
        if message.done:
            claim.release()
            return None
        return claim

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
        """Remove done messages (see :meth:`Outbox.purge`); also orphans left
        by a crash during :meth:`add`."""
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

    def _lock_any(self, msg_id: str) -> FolderClaim | None:
        """The message with its ``.eml`` locked, done or not; None when another
        worker holds it, or its state is gone or unreadable.

        A copy that is not the one stored (its ``.eml`` removed by hand, or of
        another size than :meth:`add` wrote: truncated or damaged) is still a
        message owed to its recipients, never one to send as it is now: it is
        held with a copy whose every read fails, so an attempt defers it with
        that reason like any unreadable copy, until the give-up age fails it
        and ``queue report`` names it; ``purge`` removes it once done.
        """
        path = self.eml_path(msg_id)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the claim owns it
        except FileNotFoundError:
            missing = _UnreadableCopy(path, errno.ENOENT, "the queued copy is missing")
            try:
                return FolderClaim(self, self.load(msg_id), cast(IO[bytes], missing))
            except (KeyError, ValueError):
                return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            message = self.load(msg_id)  # read again under the lock
        except (BlockingIOError, KeyError, ValueError):
            f.close()
            return None
        size = os.fstat(f.fileno()).st_size
        if message.size and size != message.size:
            reason = f"the queued copy is {size} octets, not the {message.size} stored"
            damaged = _UnreadableCopy(path, errno.EIO, reason, holding=f)
            return FolderClaim(self, message, cast(IO[bytes], damaged))
        return FolderClaim(self, message, f)

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


class _UnreadableCopy(io.RawIOBase):
    """The stored copy of a message that cannot be sent as it is (gone, or not
    the size stored): every read fails with ``code`` (an errno), so an attempt never
    sends a byte of its data. ``holding``: the ``.eml`` whose lock the claim
    keeps, closed with it."""

    def __init__(
        self, path: Path, code: int, reason: str, *, holding: IO[bytes] | None = None
    ) -> None:
        super().__init__()
        self._error = (code, reason, str(path))
        self._holding = holding

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def readinto(self, buffer: Any) -> int:
        raise OSError(*self._error)  # (ENOENT: a FileNotFoundError)

    def close(self) -> None:
        if self._holding is not None:
            self._holding.close()  # the lock goes with it
        super().close()
