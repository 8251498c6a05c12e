"""Turn a message as the caller has it into :class:`~smtpmail.protocol.Content`.

Accepted: ``bytes``, ``str`` (UTF-8), an :class:`email.message.Message`, a
binary file object (streamed in blocks, never read whole) or any iterable of
``bytes`` chunks. Bytes are sent as they are (line endings normalised by the
core), never re-encoded. An OSError from the caller's file or iterator is a
:class:`~smtpmail.errors.MessageReadError`, never mistaken for a network fault.

Every path that sends (both clients, ``deliver()``, the outbox, the command
line) turns its message into a ``Content`` here, so the transforms a message
undergoes before the wire live here once: the Bcc rule
(:mod:`smtpmail.message.bcc`: Bcc and Resent-Bcc fields are removed unless
the caller says ``keep_bcc``), then the 8-bit downgrade when asked
(:mod:`smtpmail.message.eightbit`, ``convert_8bit``: for a server without
8BITMIME only, unless the message is signed), then DKIM signing
(:mod:`smtpmail.message.dkim`, when a key is given), so that what is signed is
exactly what is sent.

A :class:`MarkedMessage` carries a hook its sender wants run just before the
end of the data leaves (the outbox's "end of data sent" mark): it goes on the
``Content`` made here, after every transform, so that it fires when the
stream actually sent ends, however often the source was read before.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator

from smtpmail._log import Logger
from smtpmail.errors import ExtensionNotSupported, InvalidAddress, MessageReadError, _caused
from smtpmail.message.addresses import addresses
from smtpmail.message.bcc import drop_bcc, split_header_section
from smtpmail.protocol.actions import Content
from smtpmail.protocol.commands import check_characters
from smtpmail.protocol.data import measure
from smtpmail.protocol.envelope import Envelope

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    # Only for annotations: the email package is loaded when a Message is
    # composed or parsed, not by a client sending bytes or a file.
    from email.message import Message
    from typing import IO, TypeAlias, TypeGuard

    from smtpmail.message.dkim import DKIMKey

__all__ = [
    "BLOCK_SIZE",
    "MarkedMessage",
    "MessageInput",
    "as_content",
    "envelope_from_headers",
    "read_failed",
    "resolve_envelope",
    "wire_size",
]

log = Logger("smtpmail.message")  # logging itself is imported when needed (_log)

BLOCK_SIZE = 256 * 1024
#: A stream that cannot be read twice (a pipe, an iterator) is buffered for
#: DKIM signing: in memory up to this size, in a temporary file beyond it.
SPOOL_IN_MEMORY = 8 * 1024 * 1024

MessageInput: TypeAlias = (
    "bytes | bytearray | memoryview | str | Message | IO[bytes] | Iterable[bytes] | MarkedMessage"
)


class MarkedMessage:
    """``message``, with ``before_end`` to run just before each end of its data leaves.

    ``before_end`` gets the forward-paths accepted in that transaction (see
    :attr:`smtpmail.protocol.Content.before_end`: DATA's final dot, ``BDAT
    LAST``; RFC 5321 §4.1.1.4). It fires when the stream sent ends, after the
    transforms (DKIM signing, an 8-bit downgrade), never when the source was
    merely read to its end. An OSError from it is a
    :class:`~smtpmail.errors.MessageReadError`: the connection is closed
    without the end of data, so the message was certainly not delivered.
    """

    __slots__ = ("before_end", "message")

    def __init__(
        self, message: MessageInput, before_end: Callable[[tuple[str, ...]], None]
    ) -> None:
        if isinstance(message, MarkedMessage):
            raise TypeError("a message is marked once")
        self.message = message
        self.before_end = before_end


def _guarded(before_end: Callable[[tuple[str, ...]], None]) -> Callable[[tuple[str, ...]], None]:
    """``before_end`` with its OSError reported as the message's, like a failed read."""

    def run(recipients: tuple[str, ...]) -> None:
        try:
            before_end(recipients)
        except OSError as exc:
            raise read_failed(exc)

    return run


def _is_message(value: object) -> TypeGuard[Message]:
    """Is ``value`` an email.message.Message? Asked without importing the email
    package: if nobody loaded it, no Message exists."""
    module = sys.modules.get("email.message")
    return module is not None and isinstance(value, module.Message)


def _header_block(data: bytes) -> bytes:
    end = data.find(b"\n\n")
    end2 = data.find(b"\r\n\r\n")
    cut = min(x for x in (end, end2, len(data)) if x >= 0)
    return data[:cut]


def wire_size(data: bytes) -> int:
    """The size SIZE declares (RFC 1870 §3): every line ending counted as CRLF.

    A lone CR or LF becomes CRLF on the wire, and an unended last line gets
    one; dot-stuffing is not counted.
    """
    return measure(data)[0]


#: A UTF-8 byte order mark: what an editor (Notepad) may put before a saved message.
_BOM = b"\xef\xbb\xbf"


def _without_bom(chunks: Iterator[bytes]) -> tuple[Iterator[bytes], int]:
    """``chunks`` without a leading UTF-8 byte order mark, and the octets dropped.

    A message is not a text file (RFC 5322 §2.1): before its first field a BOM
    makes that line no field, so the server (and the Bcc rule, and the
    envelope's reading of To/Cc/Bcc) would find no header section at all, and
    the Bcc field would reach every recipient as body text. It goes, as
    mail readers ignore it."""
    head: bytes | None = None
    for chunk in chunks:  # (the first chunks, until they hold as much as a BOM)
        head = chunk if head is None else bytes(head) + chunk
        if len(head) >= len(_BOM):
            break
    if head is None:
        return chunks, 0
    dropped = len(_BOM) if bytes(head[: len(_BOM)]) == _BOM else 0
    return itertools.chain((head[dropped:],), chunks), dropped


def strip_bom(start: bytes) -> bytes:
    """The start of a message without a UTF-8 byte order mark (:func:`_without_bom`)."""
    return start[len(_BOM) :] if start.startswith(_BOM) else start


def _bytes_content(
    data: bytes, keep_bcc: bool, dkim: DKIMKey | None, convert_8bit: bool = False
) -> Content:
    data = strip_bom(data)
    if not keep_bcc:
        data = drop_bcc(data)
    seven_bit = None
    if convert_8bit and not data.isascii():
        if dkim is None:
            seven_bit = _seven_bit(data)
        else:
            # RFC 6376 §5.3: a signer converts before signing, whatever this server
            # takes, so that a relay's own downgrade cannot break the signature.
            from smtpmail.message.eightbit import to_seven_bit

            data = to_seven_bit(data)
            if not data.isascii():
                seven_bit = _still_eight_bit
    if dkim is not None:
        data = dkim.sign(data) + data
    ascii_only = data.isascii()
    chunks: Iterable[bytes]
    if len(data) <= BLOCK_SIZE * 4:
        chunks = (data,)
    else:
        chunks = (data[i : i + BLOCK_SIZE * 4] for i in range(0, len(data), BLOCK_SIZE * 4))
    size: int | None = None  # (measured from data, and only if a server offers SIZE)
    measure: Callable[[], int] | None = None
    replay: Callable[[], Iterable[bytes]] | None = None
    eight_bit = not ascii_only
    smtputf8 = not ascii_only and not _header_block(data).isascii()
    # By position: keywords make every message's construction build a dict.
    return Content(chunks, size, eight_bit, smtputf8, measure, data, replay, seven_bit)


def _seven_bit(data: bytes) -> Callable[[], Content]:
    """The 7-bit form of ``data`` (Bcc fields already removed), converted on first
    use only: a server with 8BITMIME never needs it (RFC 6152 §3, as an MTA such
    as Postfix does). Made once however often a server asks."""
    made: list[Content] = []

    def convert() -> Content:
        if not made:
            from smtpmail.message.eightbit import to_seven_bit

            converted = to_seven_bit(data)
            if not converted.isascii():
                _still_eight_bit()
            made.append(_bytes_content(converted, True, None))
        return made[0]

    return convert


def _still_eight_bit() -> Content:
    """For a server without 8BITMIME: the message converted keeps 8-bit octets
    where no transfer encoding applies. Said as such, not with the advice to
    convert it that a message never converted gets."""
    raise ExtensionNotSupported(
        "the server does not offer 8BITMIME (RFC 6152) and, converted to 7-bit "
        "(convert_8bit), the message still has 8-bit data outside its parts' bodies "
        "(a preamble, an epilogue or an attached message's header fields), which "
        "no transfer encoding covers",
        enhanced_status="5.6.3",
    )


def _check_chunk(chunk: object, source: str, advice: str) -> None:
    """A TypeError unless ``chunk`` is bytes-like: a str chunk would otherwise fail
    deep in the Bcc rule or the encoder, with a message about their innards."""
    if chunk.__class__ is not bytes and not isinstance(chunk, bytes | bytearray | memoryview):
        raise TypeError(f"{source} {type(chunk).__name__}, not bytes: {advice}")


def _file_chunks(f: IO[bytes]) -> Iterator[bytes]:
    # Typed object, not bytes: the compiled build would check the type itself,
    # with a message of its own (_check_chunk says what to do).
    read: Callable[[int], object] = f.read
    try:
        while block := read(BLOCK_SIZE):
            # (A text-mode file io.TextIOBase does not recognise: a
            # SpooledTemporaryFile opened "w+", a codecs wrapper.)
            _check_chunk(
                block, "the message file's read() returned", "open it in binary mode ('rb')"
            )
            yield block  # type: ignore[misc]  # (bytes, or a bytes-like the core takes)
    except OSError as exc:
        raise read_failed(exc)


def _caller_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The caller's chunks, each checked to be bytes: a str chunk would otherwise
    fail deep in the Bcc rule or the encoder with a message about their innards
    (mid-message, the connection is closed without the end of data, as for a
    failed read)."""
    items: Iterator[object] = chunks  # (object: as in _file_chunks)
    try:
        for chunk in items:
            _check_chunk(
                chunk,
                "the message's iterator yielded",
                "give bytes chunks (or the whole message as one str)",
            )
            yield chunk  # type: ignore[misc]  # (bytes, or a bytes-like the core takes)
    except OSError as exc:
        raise read_failed(exc)


def read_failed(exc: OSError) -> MessageReadError:
    """The error for an OSError from the caller's message source, ``exc`` its cause.

    Raised inside a flow, between writes, it makes the transports close the
    connection: the data cannot be ended cleanly.
    """
    return _caused(MessageReadError(f"reading the message failed: {exc}"), exc)


def _file_start(f: IO[bytes]) -> int | None:
    """Where a seekable file is as it is handed over; None for a pipe or socket,
    which can be read only once."""
    try:
        return f.tell() if f.seekable() else None
    except (OSError, AttributeError, ValueError):
        return None


def _file_rewind(f: IO[bytes], start: int) -> Callable[[], None]:
    """Put the file back at ``start``, as it was handed over (``Content.rewind``).
    Best effort: a file the caller closed meanwhile stays as it is."""

    def rewind() -> None:
        try:
            f.seek(start)
        except (OSError, ValueError):
            log.debug("cannot put the message file back where it was; left as it is")

    return rewind


def _file_replay(f: IO[bytes], start: int | None) -> Callable[[], Iterator[bytes]] | None:
    """For a seekable file: read it again from ``start`` (a second transaction,
    RFC 5321 §4.5.3.1.10); None for a pipe or socket."""
    if start is None:
        return None

    def replay() -> Iterator[bytes]:
        try:
            f.seek(start)
        except OSError as exc:  # the caller's file, not the connection
            raise read_failed(exc)
        return _file_chunks(f)

    return replay


def _file_size(f: IO[bytes]) -> int | None:
    """The octets left to read: from the file's size, or by seeking to the end of
    any other seekable stream (io.BytesIO, an outbox's stored copy) and back; None
    for a pipe. A known size lets several messages share a window of
    transactions in flight (:class:`~smtpmail.protocol.Options`)."""
    try:
        size = os.fstat(f.fileno()).st_size
        return max(size - f.tell(), 0)
    except (OSError, AttributeError, io.UnsupportedOperation):
        pass
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return max(end - here, 0)


def _stream_content(
    chunks: Iterator[bytes],
    size: int | None,
    replay: Callable[[], Iterator[bytes]] | None,
    keep_bcc: bool,
    dkim: DKIMKey | None,
) -> Content:
    """Streamed content: only its header section is read ahead, for the Bcc rule
    (which a replay, for a further transaction, goes through as well) and to
    learn before MAIL FROM whether its fields need SMTPUTF8 (RFC 6532 §3.4),
    as held content does.

    Signed, it is read twice: once for the body hash, then again to send,
    behind the signature field (computed once, so a replay sends the same).
    A stream that cannot be replayed is buffered first (:data:`SPOOL_IN_MEMORY`).
    """
    if dkim is not None and replay is None:
        chunks, size, replay = _spool(chunks)
    chunks, dropped = _without_bom(chunks)
    if size is not None:
        size -= dropped
    read, rest = split_header_section(chunks)
    kept = read if keep_bcc else drop_bcc(read)
    # What was read ahead (the header section and a little more) may hold 8-bit
    # data: then that is known before MAIL FROM (RFC 6152); else it is unknown.
    eight_bit = None if kept.isascii() else True
    smtputf8 = eight_bit is True and not _header_block(kept).isascii()
    if size is not None:
        size -= len(read) - len(kept)
    if dkim is not None and replay is not None:
        field = dkim.sign(kept, rest)
        unsigned = replay

        def signed() -> Iterable[bytes]:
            again = _stream_content(unsigned(), None, None, keep_bcc, None)
            return _then(field, iter(again.chunks))

        signed_size = None if size is None else size + len(field)
        return Content(
            signed(), size=signed_size, replay=signed, eight_bit=eight_bit, smtputf8=smtputf8
        )
    if replay is None:
        return Content(_then(kept, rest), size=size, eight_bit=eight_bit, smtputf8=smtputf8)
    again_from = replay

    def again() -> Iterable[bytes]:
        return _stream_content(again_from(), None, None, keep_bcc, None).chunks

    return Content(
        _then(kept, rest), size=size, replay=again, eight_bit=eight_bit, smtputf8=smtputf8
    )


def _spool(
    chunks: Iterator[bytes],
) -> tuple[Iterator[bytes], int, Callable[[], Iterator[bytes]]]:
    """A one-pass stream buffered to be read twice: (chunks, size, replay)."""
    import tempfile  # (loads shutil: only for a signed stream, not every send)

    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (lives with the content)
    try:
        for chunk in chunks:
            spool.write(chunk)
        size = spool.tell()
        spool.seek(0)
    except OSError as exc:  # the caller's source failed (or the disk under the spool)
        raise read_failed(exc)

    def replay() -> Iterator[bytes]:
        spool.seek(0)
        return _file_chunks(spool)

    return replay(), size, replay


def _then(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def as_content(
    message: MessageInput,
    *,
    keep_bcc: bool = False,
    dkim: DKIMKey | None = None,
    convert_8bit: bool = False,
) -> Content:
    """Wrap ``message`` for streaming; its size is declared when cheaply known.

    Its Bcc and Resent-Bcc fields are removed (RFC 5322 §3.6.3) unless
    ``keep_bcc``; the header section of streamed input is read ahead for that.
    With ``convert_8bit``, its 8-bit MIME parts are re-encoded 7-bit
    (:func:`smtpmail.message.eightbit.to_seven_bit`; streamed input is read
    whole for that): for a server without 8BITMIME only (``Content.seven_bit``),
    or at once when ``dkim`` signs it (RFC 6376 §5.3). With ``dkim``, the
    result is then signed (RFC 6376): a DKIM-Signature field goes first;
    streamed input is read once for the body hash. A :class:`MarkedMessage`'s
    hook goes on the result (``Content.before_end``).
    """
    if isinstance(message, MarkedMessage):
        content = as_content(
            message.message, keep_bcc=keep_bcc, dkim=dkim, convert_8bit=convert_8bit
        )
        content.before_end = _guarded(message.before_end)
        return content
    # bytes first, as they are: ``bytes | bytearray | memoryview`` builds a union
    # the isinstance then walks, and bytes() of bytes looks up and calls __bytes__.
    if message.__class__ is bytes:
        return _bytes_content(message, keep_bcc, dkim, convert_8bit)
    if isinstance(message, bytes | bytearray | memoryview):
        return _bytes_content(bytes(message), keep_bcc, dkim, convert_8bit)
    if isinstance(message, str):
        try:
            data = message.encode("utf-8")
        except UnicodeEncodeError:
            check_characters(message, "the message")  # (raises: says where, and why)
            raise
        return _bytes_content(data, keep_bcc, dkim, convert_8bit)
    if _is_message(message):
        from smtpmail.message.wire import flatten

        return _bytes_content(flatten(message), keep_bcc, dkim, convert_8bit)
    if hasattr(message, "read"):
        f: IO[bytes] = message  # type: ignore[assignment]
        if isinstance(f, io.TextIOBase):
            raise TypeError("open the message file in binary mode ('rb')")
        start = _file_start(f)
        if convert_8bit:  # the MIME structure is parsed whole
            content = _bytes_content(b"".join(_file_chunks(f)), keep_bcc, dkim, convert_8bit)
        else:
            size, replay = _file_size(f), _file_replay(f, start)
            content = _stream_content(_file_chunks(f), size, replay, keep_bcc, dkim)
        if start is not None:
            content.rewind = _file_rewind(f, start)
        return content
    if isinstance(message, Iterable):
        # (a Message is iterable too, but was handled above)
        chunks = _caller_chunks(iter(message))  # type: ignore[arg-type]
        if convert_8bit:
            return _bytes_content(b"".join(chunks), keep_bcc, dkim, convert_8bit)
        return _stream_content(chunks, None, None, keep_bcc, dkim)
    raise TypeError(f"cannot send a message of type {type(message).__name__}")


def resolve_envelope(
    message: MessageInput,
    sender: str | None,
    recipients: Iterable[str] | str | None,
    envelope: Envelope | None = None,
    *,
    requiretls: bool = False,
) -> Envelope:
    """The envelope to use: given outright, from arguments, or from the message's headers.

    ``requiretls`` (``require_tls_extension=`` of send and deliver) sets
    REQUIRETLS (RFC 8689) on it.
    """
    found = _resolve_envelope(message, sender, recipients, envelope)
    if requiretls and not found.requiretls:
        return found.with_recipients(found.recipients, requiretls=True)
    return found


def _resolve_envelope(
    message: MessageInput,
    sender: str | None,
    recipients: Iterable[str] | str | None,
    envelope: Envelope | None,
) -> Envelope:
    if envelope is not None:
        return envelope
    if recipients is not None and sender is not None:
        return Envelope(sender, recipients)
    if not _is_message(message):
        raise InvalidAddress(
            "give sender and recipients (or an envelope), or an email.message.Message "
            "whose headers name them"
        )
    return envelope_from_headers(message, sender, recipients)


def envelope_from_headers(
    message: Message,
    sender: str | None = None,
    recipients: Iterable[str] | str | None = None,
) -> Envelope:
    """An envelope from the headers: Resent-* when present, else From/Sender, To, Cc, Bcc.

    A ``sender`` or ``recipients`` given is used as it is, and only what is
    missing is read (and required) from the headers."""
    resent = message.get_all("Resent-To") or message.get_all("Resent-Cc")
    prefix = "Resent-" if resent else ""
    if sender is None:
        named = message.get_all(prefix + "Sender", []) or message.get_all(prefix + "From", [])
        senders = addresses(str(v) for v in named)
        if not senders:
            raise InvalidAddress("no sender given and none found in the headers")
        sender = senders[0]
    if recipients is None:
        fields: list[str] = []
        for name in ("To", "Cc", "Bcc"):
            fields += [str(v) for v in message.get_all(prefix + name, [])]
        recipients = addresses(fields)
        if not recipients:
            raise InvalidAddress("no recipients given and none found in the headers")
    return Envelope(sender, recipients)
