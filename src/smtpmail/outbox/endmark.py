"""The "end of data sent" mark, written just before each final dot (RFC 5321 §4.1.1.4).

A worker killed mid-attempt leaves no outcome; what the next worker must
decide is whether the message may have been delivered. It may only once the
final dot (DATA's ``CRLF.CRLF``, or ``BDAT ... LAST``) has left: before that,
a server that loses the connection discards the transaction (RFC 5321
§4.1.1.4, RFC 3030 §2). So the mark goes in just before the final dot, and
never after.

The rule lives in one place, the protocol core: every transaction calls its
content's ``before_end`` hook just before its end of data leaves
(:attr:`smtpmail.protocol.Content.before_end`), once every other octet of the
stream actually sent has been read, whatever read the source before it (DKIM
signing, an 8-bit downgrade, :func:`~smtpmail.deliver` which reads it once for
every domain). The worker hands the stored copy over as a
:class:`~smtpmail.message.content.MarkedMessage` whose hook is an
:class:`EndOfDataMark`; the path that sends (Client.send_many pipelined or
not, DATA or BDAT, several messages' ends in flight on one connection, or
``deliver()`` with one transaction per domain) needs no case of its own.

The mark says who may have the message: each call adds the recipients of the
transaction whose end of data is leaving (those the server accepted), and
writes the mark durably (the store's ``Claim.save``: ``fsync`` for the folder
store, a committed ``UPDATE`` for PostgreSQL). In direct delivery each
domain's final dot adds that domain's recipients: if the worker dies, the
recipients of the domains whose final dot had left are retried as possibly
delivered, and the others (refused at RCPT, or whose final dot never left)
as a plain retry (:func:`~smtpmail.outbox.outcome.apply_abandoned`).

When the mark cannot be written the hook raises OSError: the transaction
fails as a failed read of the message, the client closes the connection
without the final dot, so the message was certainly not delivered, and
nothing claims otherwise.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from smtpmail.errors import OutboxError
from smtpmail.outbox.box import Claim

__all__ = ["EndOfDataMark"]


class EndOfDataMark:
    """The hook of one attempt on ``claim``'s message (``MarkedMessage.before_end``).

    ``save`` stores the claim's message durably, the mark with it (the worker's
    stores the outcomes settled before it in the same write), raising
    OutboxError when it cannot. ``worker`` names who claims (the outbox's
    owner). ``cannot_write`` is told when the mark could not be saved (the
    worker then stops its run); the call then raises OSError. Safe to call
    from several threads at once (:func:`~smtpmail.deliver` sends to its
    domains in parallel).
    """

    def __init__(
        self,
        claim: Claim,
        save: Callable[[], None],
        worker: str | None,
        cannot_write: Callable[[OutboxError], None],
    ) -> None:
        self._claim = claim
        self._save = save
        self._worker = worker
        self._cannot_write = cannot_write
        self._lock = threading.Lock()

    def __call__(self, recipients: tuple[str, ...]) -> None:
        message = self._claim.message
        with self._lock:
            before = message.inflight
            mark: dict[str, Any] = dict(before) if before is not None else _new(self._worker)
            known = {a.lower() for a in mark["recipients"]}
            added = [a for a in recipients if a.lower() not in known]
            mark["recipients"] = [*mark["recipients"], *added]
            message.inflight = mark
            try:
                self._save()
            except OutboxError as exc:
                message.inflight = before
                self._cannot_write(exc)
                raise OSError(exc.errno, f"the end-of-data mark was not written: {exc}") from exc


def _new(worker: str | None) -> dict[str, Any]:
    """A new mark: who, since when; to whom is added by each end of data."""
    mark: dict[str, Any] = {"since": time.time(), "pid": os.getpid(), "recipients": []}
    if worker is not None:
        mark["worker"] = worker
    return mark
