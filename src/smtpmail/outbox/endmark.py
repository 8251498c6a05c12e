"""The "end of data sent" mark, written as the last byte is read (RFC 5321 §4.1.1.4).

A worker killed mid-attempt leaves no outcome; what the next worker must
decide is whether the message may have been delivered. It may only once the
final dot (DATA's ``CRLF.CRLF``, or ``BDAT ... LAST``) has left: before that,
a server that loses the connection discards the transaction (RFC 5321
§4.1.1.4, RFC 3030 §2). So the mark goes in just before the final dot, and
never after.

Every path that sends (:class:`~smtpmail.Client` pipelined or not, DATA or
BDAT, and :func:`smtpmail.deliver`) reads the message as a stream and emits
the end of data only once the stream has ended: the DATA encoder holds back
the last piece until it has seen the end, and BDAT reads one chunk ahead to
know which is ``LAST``. :class:`MarkAtEnd` wraps the stored copy so that the
read which finds its end first writes the mark durably (the store's
``Claim.save``: ``fsync`` for the folder store, a committed ``UPDATE`` for
PostgreSQL); the protocol layer needs no hook, and the message is never held
whole for it. When a path reads the message to its end earlier (DKIM
signing, an 8-bit downgrade, :func:`~smtpmail.deliver` which reads it once
for every domain), the mark is earlier too: before the first byte goes out,
never after the final dot.

When the mark cannot be written the read fails (an :class:`OSError`): the
client then closes the connection without the final dot, so the message was
certainly not delivered, and nothing claims otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

__all__ = ["MarkAtEnd"]


class MarkAtEnd(io.RawIOBase):
    """``content`` read from where it stands; ``mark()`` runs (once) when a read
    finds its end, before that empty read returns.

    ``mark`` raises OSError when the mark could not be written. Closing this
    wrapper leaves ``content`` open (its claim owns it).
    """

    def __init__(self, content: IO[bytes], mark: Callable[[], None]) -> None:
        super().__init__()
        self._content = content
        self._mark = mark
        self.marked = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._content.seekable()

    def tell(self) -> int:
        return self._content.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._content.seek(offset, whence)

    def fileno(self) -> int:
        return self._content.fileno()  # (the size, for SIZE=, when it is a file)

    def readinto(self, buffer: Any) -> int:
        data = self._content.read(len(buffer))
        if not data and len(buffer) and not self.marked:
            self._mark()
            self.marked = True
        buffer[: len(data)] = data
        return len(data)
