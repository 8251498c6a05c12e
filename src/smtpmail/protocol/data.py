"""The message-data encoder: line endings normalised, dot-stuffed, terminated.

RFC 5321 §2.3.8 and §4.5.2: on the wire every line ends in CRLF and a line
that starts with "." gets a second one; the data ends with ``CRLF.CRLF``.
A bare CR or LF must never reach the wire: servers that disagree on what it
means are how SMTP smuggling works. So CRLF, a lone CR and a lone LF each
become one CRLF. The encoder keeps a little state between chunks (a pending
CR, whether the next byte starts a line) so that any chunking of the input
gives the same output bytes, and it never holds more than one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["DataEncoder", "encode_data"]


class DataEncoder:
    """Encodes message data chunk by chunk.

    With ``dot_stuff=False`` (BDAT, RFC 3030) lines are only normalised.
    """

    __slots__ = ("_at_line_start", "_dot_stuff", "_pending_cr", "octets_in")

    def __init__(self, *, dot_stuff: bool = True) -> None:
        self._dot_stuff = dot_stuff
        self._pending_cr = False
        self._at_line_start = True
        self.octets_in = 0

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self.octets_in += len(chunk)
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk[-1] == 0x0D:
            # It may be the first half of a CRLF split across chunks: decide later.
            chunk = chunk[:-1]
            self._pending_cr = True
            if not chunk:
                return b""
        # Most content already ends every line in CRLF. Counting (no copies) proves
        # it, and then the replace() passes that normalise line ends are skipped.
        lf = chunk.count(b"\n")
        canonical = chunk.count(b"\r") == lf and chunk.count(b"\r\n") == lf
        if not canonical:
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            chunk = chunk.replace(b"\n", b"\r\n")
        # "." is a fast one-byte scan (base64 has none); "\r\n." a faster search than
        # "\n." and, every LF being part of a CRLF by now, the same test.
        if self._dot_stuff and b"." in chunk:
            if b"\r\n." in chunk:
                chunk = chunk.replace(b"\r\n.", b"\r\n..")
            if self._at_line_start and chunk[0] == 0x2E:
                chunk = b"." + chunk
        self._at_line_start = chunk[-1] == 0x0A
        return chunk

    def end(self) -> bytes:
        """What finishes the data: the last line's CRLF if missing, and the terminator."""
        tail = b""
        if self._pending_cr:
            self._pending_cr = False
            tail = b"\r\n"
        elif not self._at_line_start:
            tail = b"\r\n"
        self._at_line_start = True
        return tail + b".\r\n" if self._dot_stuff else tail


def encode_data(chunks: Iterable[bytes], *, dot_stuff: bool = True) -> Iterator[bytes]:
    """Encode a whole message; the last chunk yielded carries the ending."""
    encoder = DataEncoder(dot_stuff=dot_stuff)
    previous: bytes | None = None
    for chunk in chunks:
        out = encoder.feed(chunk)
        if out:
            if previous is not None:
                yield previous
            previous = out
    tail = encoder.end()
    yield (previous or b"") + tail
