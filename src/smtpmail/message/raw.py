"""An existing message (a .eml file, standard input) sent as it is, streamed.

Only the header section (RFC 5322 §2.1: up to the first empty line, or the
first line that is neither a field nor a folded continuation) is read ahead, to
find the envelope in it when asked (``sendmail -t``: To, Cc, Bcc, or the
Resent-* fields of RFC 5322 §3.6.6 when present). The body is never parsed or
re-encoded: it streams in blocks, to the end of the stream (a line holding a
lone dot is content, as in msmtp). The Bcc rule applies when the
message becomes content (:func:`smtpmail.message.content.as_content`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from smtpmail._record import Record
from smtpmail.errors import InvalidAddress, InvalidArgument
from smtpmail.message.addresses import addresses
from smtpmail.message.bcc import MAX_HEADER_SECTION
from smtpmail.message.content import BLOCK_SIZE, read_failed, strip_bom
from smtpmail.message.fold import MAX_LINE, fold_field
from smtpmail.protocol.commands import check_text
from smtpmail.protocol.envelope import Envelope

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import IO

__all__ = ["RawMessage", "check_field", "read_raw"]


class RawMessage(Record):
    """The header section read ahead, and the rest of the stream after it.

    ``_separator`` is the empty line between them (none when the input ends
    with its header section, or is all body); ``_read`` is what was read of the
    body while looking for the header section's end (its first line).
    """

    def __init__(
        self, head: bytes, _stream: IO[bytes], _separator: bytes, _read: bytes = b""
    ) -> None:
        self.head = head
        self._stream = _stream
        self._separator = _separator
        self._read = _read

    def get_all(self, name: str) -> list[str]:
        """The values of the fields named ``name`` (any case), in order: the text
        after the colon as written, folded lines kept, UTF-8 (RFC 6532) decoded
        (octets that are not UTF-8 as surrogate escapes, which no address check
        lets through). Read without the email package: loading its parser was
        half of a ``sendmail`` run, and it decoded 8-bit fields as unknown
        octets (a UTF-8 From became U+FFFD, an address no server takes)."""
        key = name.lower().encode()
        return [
            field.partition(b":")[2]
            .lstrip(b" \t")
            .rstrip(b"\r\n")
            .decode("utf-8", "surrogateescape")
            for field in _split_fields(self.head)
            if _field_name(field) == key and b":" in field
        ]

    def get(self, name: str) -> str | None:
        """The first field named ``name``'s value (as :meth:`get_all`), or None."""
        found = self.get_all(name)
        return found[0] if found else None

    def with_head(self, head: bytes, separator: bytes = b"\r\n") -> RawMessage:
        """The same body under another header section."""
        return RawMessage(head, self._stream, self._separator or separator, self._read)

    def with_fields(self, fields: Sequence[tuple[str, str, bool]]) -> RawMessage:
        """The same body under the header section with ``fields`` applied in order:
        (name, value, replace). Replacing (swaks's ``--header``) puts the value in
        the first field of that name, where it stands, and drops the others of
        that name; a name the section lacks, or ``replace`` false (swaks's
        ``--add-header``), appends a field. Values go as given (UTF-8 when not
        ASCII: RFC 6532), folded at their whitespace when long; each is checked
        as :func:`check_field` says."""
        ending = b"\n" if self.head and b"\r\n" not in self.head else b"\r\n"
        section = _split_fields(self.head)
        if section and not section[-1].endswith(b"\n"):
            section[-1] += ending
        for name, value, replace in fields:
            check_field(name, value)
            line = _folded(name, value, ending)
            key = name.lower().encode()
            same = [i for i, f in enumerate(section) if _field_name(f) == key]
            if replace and same:
                section[same[0]] = line
                for i in reversed(same[1:]):
                    del section[i]
            else:
                section.append(line)
        return RawMessage(b"".join(section), self._stream, self._separator or ending, self._read)

    def chunks(self) -> Iterator[bytes]:
        """The message in blocks, to the end of the stream."""
        yield self.head + self._separator + self._read
        read = self._stream.read
        while block := read(BLOCK_SIZE):
            yield block

    def envelope(
        self,
        sender: str | None,
        recipients: Sequence[str] = (),
        *,
        from_headers: bool = False,
        default_domain: str | None = None,
        notify: Sequence[str] | None = None,
        ret: str | None = None,
        envid: str | None = None,
    ) -> Envelope:
        """The envelope: explicit values, plus the headers' recipients when asked.

        Each of ``recipients`` is an address list, as sendmail(8), Postfix and
        msmtp read their arguments (:func:`_address_list`)."""
        rcpts = _address_list(recipients)
        if from_headers or sender is None:
            # The headers are parsed only when they are asked for: a send with
            # an explicit envelope never loads the email package.
            found, sender = self._from_headers(from_headers, sender)
            rcpts += found
        if not rcpts:
            raise InvalidAddress("no recipients: give them as arguments or use -t")
        return Envelope(
            qualify(sender, default_domain),
            [qualify(r, default_domain) for r in rcpts],
            notify=notify,
            ret=ret,
            envid=envid,
        )

    def _from_headers(self, wanted: bool, sender: str | None) -> tuple[list[str], str]:
        """Recipients from To/Cc/Bcc (when ``wanted``), and the sender from
        Sender/From when none was given (Resent-* fields first)."""
        rcpts: list[str] = []
        if wanted:
            resent = any(self.get_all(f"Resent-{name}") for name in ("To", "Cc", "Bcc"))
            prefix = "Resent-" if resent else ""
            rcpts += addresses(v for n in ("To", "Cc", "Bcc") for v in self.get_all(prefix + n))
        return rcpts, sender if sender is not None else self.header_sender()

    def header_sender(self) -> str:
        """The reverse-path the header section names: Sender, else From (their
        Resent- forms when the message was resent, RFC 5322 §3.6.6)."""
        prefix = "Resent-" if self.get_all("Resent-From") else ""
        found = addresses(self.get_all(prefix + "Sender") or self.get_all(prefix + "From"))
        if not found:
            raise InvalidAddress("no sender given (-f/--from) and no From header")
        return found[0]


def _address_list(arguments: Sequence[str]) -> list[str]:
    """The addresses in ``arguments``, each an address list (RFC 5322 §3.4):
    ``a@x,b@y`` (Debian's cron passes MAILTO so), ``Name <a@x>``, ``a@x (comment)``.
    An argument that names no address is an error, not a recipient dropped."""
    found: list[str] = []
    for argument in arguments:
        listed = addresses([argument])
        if not listed:
            raise InvalidAddress(f"recipient {argument!r} names no address")
        found += listed
    return found


#: The octets a field name may hold (RFC 5322 §2.2: printable, not the colon).
_FTEXT = bytes(range(33, 58)) + bytes(range(59, 127))


def _continues_head(line: bytes, in_head: bool) -> bool:
    """Is ``line`` a header field, or a folded continuation of the one before?
    (RFC 5322 §2.2; §4.5.3 obsolete syntax: blanks before the colon.)"""
    if line[:1] in (b" ", b"\t"):
        return in_head
    name, colon, _ = line.partition(b":")
    name = name.rstrip(b" \t")
    return bool(colon and name) and not name.translate(None, _FTEXT)


def check_field(name: str, value: str) -> None:
    """A header field a caller adds: a field name of printable ASCII without
    colon or space (RFC 5322 §2.2), a value with no control character (CR or
    LF would start a new field: header injection) but HTAB, which is
    whitespace in a field body (WSP, §2.2.3: a field folded with a tab and
    unfolded keeps it)."""
    check_text(name, "header name")
    if not name or any(c in name for c in ": ") or not name.isascii():
        raise InvalidArgument(f"header name {name!r} is not a valid field name")
    check_text(value.replace("\t", " "), f"header {name}")


def _folded(name: str, value: str, ending: bytes) -> bytes:
    """``name: value`` folded at its whitespace (RFC 5322 §2.2.3), or a typed
    error when a word of it cannot fit in a line of 998 octets (§2.1.1): the
    server would refuse the line, or cut it."""
    folded = fold_field(name, value, ending.decode())
    if folded is None:
        raise InvalidArgument(
            f"header {name}: a word of its value is longer than a line may be "
            f"({MAX_LINE} octets, RFC 5322 §2.1.1) and cannot be folded"
        )
    return folded.encode()


def _split_fields(head: bytes) -> list[bytes]:
    """The header section as fields, each with its folded continuation lines."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _field_name(field: bytes) -> bytes:
    return field.partition(b":")[0].strip().lower()


def qualify(address: str, domain: str | None) -> str:
    """``root`` becomes ``root@DOMAIN`` (cron and other local mailers omit the domain)."""
    if address and "@" not in address and domain:
        return f"{address}@{domain}"
    return address


def read_raw(stream: IO[bytes]) -> RawMessage:
    """Read the header section of ``stream``; the body stays unread.

    The body's blocks are read as they are sent, through the clients, where
    an OSError becomes MessageReadError as here.
    """
    try:
        return _read_head(stream)
    except OSError as exc:
        raise read_failed(exc) from exc


def _read_head(stream: IO[bytes]) -> RawMessage:
    head = bytearray()
    first = True
    while True:
        line = stream.readline(65536)
        if first:  # (a byte order mark before the first field: see strip_bom)
            line, first = strip_bom(line), False
        if not line:
            return RawMessage(bytes(head), stream, b"")
        if head and not head.endswith(b"\n"):
            pass  # the rest of a line longer than one read: not a line of its own
        elif line in (b"\n", b"\r\n"):
            return RawMessage(bytes(head), stream, line)
        elif not head and line.startswith(b"From "):
            continue  # an mbox "From " separator line is not part of the message
        elif not _continues_head(line, bool(head)):
            # RFC 5322 §2.1: the body starts here, without the empty line. Fields
            # added to the head must not run into it, so the empty line goes in
            # (as sendmail(8) and Postfix's cleanup do); a message that is all
            # body is left as it is (with_head adds the line with its fields).
            ending = b"\r\n" if head.endswith(b"\r\n") else b"\n"
            return RawMessage(bytes(head), stream, ending if head else b"", line)
        head += line
        if len(head) > MAX_HEADER_SECTION:
            raise InvalidArgument("the message's header section is larger than 4 MiB")
