"""The Bcc rule: ``Bcc`` and ``Resent-Bcc`` fields never go on the wire.

RFC 5322 §3.6.3 lets the sender either drop the Bcc field before transmitting
or send a different copy to the Bcc recipients; smtpmail drops it (as
smtplib's ``send_message`` and msmtp do), because one transaction carries one
copy for every recipient: a Bcc field left in it shows the blind copies to
all. The recipients stay in the envelope, so they still receive the message.

Only the header section is looked at (RFC 5322 §2.1: the lines up to the
first empty line; a line that is neither a field nor a folded continuation
also ends it), so a ``Bcc:`` line in the body is content and stays. The
body is never read here: streamed input is looked ahead only as far as the
end of its header section, at most :data:`MAX_HEADER_SECTION` octets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from smtpmail.errors import InvalidArgument

__all__ = ["MAX_HEADER_SECTION", "drop_bcc", "header_section_end", "split_header_section"]

#: A header section longer than this is not a message we should be sending.
MAX_HEADER_SECTION = 4 * 1024 * 1024

#: The header section: an optional mbox "From " line (some tools leave it),
#: then fields (RFC 5322 §2.2: a name of printable characters but the colon;
#: §4.5.3 obsolete syntax allows blanks before the colon) with their folded
#: continuation lines. Its end is where the body (or the empty line) starts.
#: It and the two patterns below are compiled on first use (re's own cache):
#: a message whose header section has no "bcc" never needs them, and a CLI
#: run would pay for compiling them at import.
_HEADER_SECTION = (
    rb"(?:From [^\n]*\n)?(?:[!-9;-~]+[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*)*"
)
#: A Bcc or Resent-Bcc field name at the start of a line, any case (also
#: after a lone CR: see the wire's lines below).
_BCC_FIELD = rb"(?i)(?:^|(?<=[\r\n]))(?:resent-)?bcc[ \t]*:"

#: The lines as the server will see them. The wire turns a lone CR into CRLF
#: (smtpmail.protocol.data), so a field after a lone CR ("To: a\rBcc: b") is
#: a field of its own there, and must be one here too, or the Bcc rule would
#: miss it. A lone CR before text that cannot start a field ("Bcc: a\rb@x")
#: still belongs to its line, so that such a tail goes with its field.
_LINE_CR = rb"\r(?=[!-9;-~]+[ \t]*:|[ \t\r\n]|\Z)"  # a lone CR that ends a line
_LINE_TEXT = rb"[^\r\n]*(?:\r(?![!-9;-~]+[ \t]*:|[ \t\r\n]|\Z)[^\r\n]*)*"
_WIRE_LINE = _LINE_TEXT + rb"(?:\r?\n|" + _LINE_CR + rb"|\Z)"
#: The header section in those lines (as _HEADER_SECTION: never longer).
_WIRE_HEADER_SECTION = (
    rb"(?:From " + _WIRE_LINE + rb")?(?:[!-9;-~]+[ \t]*:" + _WIRE_LINE
    + rb"(?:[ \t]" + _WIRE_LINE + rb")*)*"
)  # fmt: skip
#: The first empty line: the header section ends there at the latest.
_EMPTY_LINE = re.compile(rb"\n\r?\n")
#: How far the quick look searches for that empty line.
_QUICK_LOOK = 64 * 1024


def header_section_end(data: bytes | bytearray) -> int:
    """The offset where the header section of ``data`` ends (the empty line,
    if any, is not part of it); 0 when ``data`` does not start with a field."""
    match = re.match(_HEADER_SECTION, data)
    return match.end() if match else 0


def drop_bcc(data: bytes) -> bytes:
    """``data`` without its Bcc and Resent-Bcc fields (folded lines included).

    Returns ``data`` itself, not a copy, when it has no such field: the cost
    is then one scan of the header section.
    """
    empty = _EMPTY_LINE.search(data, 0, _QUICK_LOOK)
    # The quick look (a few C-speed scans up to the first empty line, which
    # the header section never passes) settles the usual case: no "bcc" there.
    # (find, not "in": bytes.__contains__ first tries its argument as an
    # integer, and raises and clears a TypeError for every message.)
    if empty is not None and data[: empty.start()].lower().find(b"bcc") < 0:
        return data
    # The header section and its lines as the server will see them (_WIRE_LINE).
    section = re.compile(_WIRE_HEADER_SECTION).match(data)
    end = section.end() if section else 0
    bcc_field = re.compile(_BCC_FIELD)  # (re's cache: compiled once per process)
    if bcc_field.search(data, 0, end) is None:
        return data
    kept: list[bytes] = []
    dropping = False
    pos = 0
    wire_line = re.compile(_WIRE_LINE)
    while pos < end:
        line_match = wire_line.match(data, pos, end)  # (matches at any pos: \Z at the latest)
        stop = line_match.end() if line_match else end
        line = data[pos:stop]
        pos = stop
        if line[:1] not in (b" ", b"\t"):  # not a folded continuation: a new field
            dropping = bcc_field.match(line) is not None
        if not dropping:
            _keep(kept, line)
    _keep(kept, data[end:])
    return b"".join(kept)


def _keep(kept: list[bytes], piece: bytes) -> None:
    """Add ``piece`` after the lines kept. A kept line may end in a lone CR (its
    own line on the wire) that a dropped field stood after; an LF starting
    ``piece`` would make the two one CRLF: the line end after it (the empty
    line that ends the header section) would vanish, and the body's first
    lines become fields (a "Bcc:" there among them). The CR becomes the CRLF
    the wire makes of it anyway."""
    if kept and piece[:1] == b"\n" and kept[-1][-1:] == b"\r":
        kept[-1] += b"\n"
    kept.append(piece)


def split_header_section(chunks: Iterable[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """Read ``chunks`` past the end of the header section: (what was read, the rest).

    What was read holds the whole header section and whatever followed it in
    the chunks read (at most about as much again, plus one chunk); the rest of
    the body is left unread in the returned iterator.
    """
    it = iter(chunks)
    read = bytearray()
    check_at = 4096  # look at what was read at doubling sizes: linear for 1-octet chunks
    for chunk in it:
        read += chunk
        if len(read) < check_at:
            continue
        check_at = min(2 * len(read), MAX_HEADER_SECTION + 1)
        end = header_section_end(read)
        if end < len(read) and _decided(read, end):
            return bytes(read), it
        if len(read) > MAX_HEADER_SECTION:
            raise InvalidArgument("the message's header section is larger than 4 MiB")
    return bytes(read), it


#: What an incomplete line may hold while it may still become a field.
_FIELD_NAME_SO_FAR = rb"[!-9;-~]*[ \t]*"


def _decided(read: bytearray, end: int) -> bool:
    """Is the line at ``end`` (which did not match as a field) surely no field?
    It is when it is complete, or when what it holds so far cannot start one."""
    return read.find(b"\n", end) >= 0 or re.compile(_FIELD_NAME_SO_FAR).fullmatch(read, end) is None
