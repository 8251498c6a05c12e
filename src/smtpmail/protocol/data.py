"""The message-data encoder: line endings normalised, dot-stuffed, terminated.

RFC 5321 §2.3.8 and §4.5.2: on the wire every line ends in CRLF and a line
that starts with "." gets a second one; the data ends with ``CRLF.CRLF``.
A bare CR or LF must never reach the wire: servers that disagree on what it
means are how SMTP smuggling works. So CRLF, a lone CR and a lone LF each
become one CRLF. The encoder keeps a little state between chunks (a pending
CR, whether the next byte starts a line) so that any chunking of the input
gives the same output bytes, and it never holds more than one chunk.

A message already whole in memory goes through :func:`encode_buffer`, which
sends the pieces that need no change as views of it (RFC 3030 BDAT uses the
same pieces, normalised only): a 5 MB message is then checked, not copied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = [
    "AS_IS",
    "CHECK",
    "STUFF",
    "DataEncoder",
    "encode_buffer",
    "encode_data",
    "measure",
]

#: Pieces of an in-memory message go out this size: the first ones smaller, so the
#: server has data to read while the client is still checking the rest. Each
#: piece is checked (about 1.1 ms per MiB, two regex passes) while the kernel
#: sends the ones before it, so the kernel must hold at least a piece's
#: checking time of data: with pieces of 1 MiB the socket buffers ran dry and
#: the server waited (5 MB messages to smtp-sink: 340 MB/s; 405 MB/s with
#: these sizes, where smtp-source makes 360 to 390, issue 19).
BLOCK_SIZES = (16 * 1024, 64 * 1024, 256 * 1024)

#: What :func:`measure` found a whole message to need, so that encoding it does
#: not scan again what measuring it proved. CHECK: unknown, or some line ending
#: is a lone CR or LF; each piece is checked (and repaired where needed).
CHECK = 0
#: Every line ends in CRLF; some line begins with ".": only dot-stuffing is left.
STUFF = 1
#: Every line ends in CRLF and none begins with ".": the data goes out as it is.
AS_IS = 2

# These scans decide whether a piece can go out unchanged. Each begins with a
# literal byte, which lets the re module skip ahead to the next CR or LF in C.
# A lookbehind sees bytes before ``pos``: an LF at a piece's start is judged by
# the byte before it. _CR_NOT_BEFORE_TEXT_LINE finds, in one pass, a CR that is
# not followed by LF and a line that begins with "." (it executes about as many
# instructions as _BARE_CR; the alternation rb"\r(?:[^\n]|\n\.)" took half as
# long again). It also stops at a CRLF that ends the scanned range (nothing
# follows it there): _dot_or_bare_cr() and _form() set that one aside.
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"\n(?<!\r\n)")
_LINE_DOT = re.compile(rb"\r\n\.")
_CR_NOT_BEFORE_TEXT_LINE = re.compile(rb"\r(?!\n[^.])")


def _dot_or_bare_cr(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]``, which ends in LF, has a CR not followed by
    LF or a line beginning with "." after a CRLF (not at ``start`` itself).

    The scan also stops at the range's last CRLF, which nothing follows
    within the range: that one is no finding.
    """
    found = _CR_NOT_BEFORE_TEXT_LINE.search(data, start, end)
    return found is not None and found.start() < end - 2


def _form(data: bytes) -> int:
    """What encoding ``data`` needs: CHECK, STUFF or AS_IS (see above)."""
    if not data:
        return AS_IS
    if data[-1] == 0x0D:
        return CHECK  # a lone CR ends it
    found = _CR_NOT_BEFORE_TEXT_LINE.search(data)
    # (A match at the final CRLF is no finding: nothing follows it.)
    if found is not None and (found.start() < len(data) - 2 or data[-1] != 0x0A):
        # A line begins with ".", or a CR is alone: which, from here on? (No lone
        # CR comes before ``found``.)
        if _BARE_CR.search(data, found.start()) is not None:
            return CHECK
        form = STUFF
    else:
        form = STUFF if data[0] == 0x2E else AS_IS
    return CHECK if _BARE_LF.search(data) is not None else form


def measure(data: bytes) -> tuple[int, int]:
    """The size SIZE declares (RFC 1870 §3), and what encoding ``data`` needs.

    Every line ending counts as CRLF: a lone CR or LF becomes CRLF on the wire,
    and an unended last line gets one; dot-stuffing is not counted. RFC 1870
    §5 calls the declared size the client's estimate, but servers refuse a
    MAIL whose SIZE exceeds their limit or free space (Postfix: 552, 452),
    so it is exact, never rounded up. The form (CHECK, STUFF or AS_IS) comes
    with it because the scan that proves the size is the one
    :func:`encode_buffer` would repeat piece by piece: told, it skips it.
    """
    form = _form(data)
    if form != CHECK:
        size = len(data)
    else:
        crlf = data.count(b"\r\n")
        size = len(data) + (data.count(b"\r") - crlf) + (data.count(b"\n") - crlf)
    if data and data[-1:] not in (b"\r", b"\n"):
        size += 2
    return size, form


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
        # Most content already ends every line in CRLF. Two searches (no copies)
        # prove it, and then the replace() passes that normalise line ends are skipped.
        if _BARE_CR.search(chunk) or _BARE_LF.search(chunk):
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            chunk = chunk.replace(b"\n", b"\r\n")
        # "." is a fast one-byte scan (base64 has none); "\r\n." a faster search than
        # "\n." and, every LF being part of a CRLF by now, the same test.
        if self._dot_stuff and b"." in chunk:
            if _LINE_DOT.search(chunk):
                chunk = chunk.replace(b"\r\n.", b"\r\n..")
            if self._at_line_start and chunk[0] == 0x2E:
                chunk = b"." + chunk
        self._at_line_start = chunk[-1] == 0x0A
        return chunk

    def clean(self, data: bytes, start: int, end: int, *, form: int = CHECK) -> bool:
        """Whether ``data[start:end]`` goes on the wire as it is, with no copy.

        True when it needs neither line-ending repair nor dot-stuffing and ends
        a line, so the encoder's state (at a line start, no CR pending) holds.
        Searches take the range: no slice of ``data`` is made. ``form`` is what
        :func:`measure` found the whole of ``data`` to need: with STUFF only
        the dot-stuffing scan is left to do, with AS_IS none.
        """
        if self._pending_cr or not self._at_line_start or data[end - 1] != 0x0A:
            return False
        if form == AS_IS:
            pass
        elif form == STUFF:
            if self._dot_stuff and (data[start] == 0x2E or _LINE_DOT.search(data, start, end)):
                return False
        elif _BARE_LF.search(data, start, end):
            return False
        elif self._dot_stuff:
            if data[start] == 0x2E or _dot_or_bare_cr(data, start, end):
                return False
        elif _BARE_CR.search(data, start, end):
            return False
        self.octets_in += end - start
        return True

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


def encode_buffer(
    data: bytes,
    encoder: DataEncoder,
    sizes: tuple[int, ...] = BLOCK_SIZES,
    *,
    form: int = CHECK,
) -> Iterable[bytes | memoryview]:
    """Encode a message held whole in memory, without copying what needs no change.

    Pieces end at a line end where one is near, so most go out as views of
    ``data``; any other piece goes through ``encoder`` (same output as
    :func:`encode_data`). The ending is left to ``encoder.end()``.
    ``form`` is what :func:`measure` found ``data`` to need (STUFF: only CRLF
    line endings; AS_IS: nor any line beginning with "."): not checked again.
    A message that fits in the first piece (most do) is encoded at once, with
    no generator: its pieces are a tuple.
    """
    size = len(data)
    if size > sizes[0]:
        return _pieces(data, encoder, sizes, form)
    if not size:
        return ()
    if encoder.clean(data, 0, size, form=form):
        return (memoryview(data),)
    out = encoder.feed(data)
    return (out,) if out else ()


def _pieces(
    data: bytes, encoder: DataEncoder, sizes: tuple[int, ...], form: int
) -> Iterator[bytes | memoryview]:
    """:func:`encode_buffer`'s pieces, made as they are asked for."""
    view = memoryview(data)
    size = len(data)
    start = 0
    n = 0
    while start < size:
        end = min(start + sizes[min(n, len(sizes) - 1)], size)
        n += 1
        if end < size:
            cut = data.rfind(b"\n", start, end) + 1
            if cut > start:
                end = cut
        if encoder.clean(data, start, end, form=form):
            yield view[start:end]
        else:
            out = encoder.feed(data[start:end])
            if out:
                yield out
        start = end
