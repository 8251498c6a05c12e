"""What a session flow yields and takes: the actions a transport carries out
(Send, Receive, StartTLS), the options a client sets and the content it sends.

These are the seam between the sans-IO core (:mod:`smtpmail.protocol.session`)
and the transports: a flow is a generator of actions, sent back replies.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable

from smtpmail._record import Record
from smtpmail.protocol.data import measure as measure_data
from smtpmail.protocol.reply import Reply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Literal, TypeAlias, TypeVar

    from smtpmail.protocol.redaction import Secrets

    T = TypeVar("T")

__all__ = ["Action", "Content", "Flow", "Options", "Receive", "Send", "StartTLS", "TimeoutKind"]

# Type aliases as strings: typing is not imported at run time (start-up time).
TimeoutKind: TypeAlias = 'Literal["greeting", "command", "data_block", "data_end"]'


class Send:
    """Write ``data``.

    ``transcript_lines``: the command lines as the transcript shows them
    (secrets already redacted). ``content_octets``: how many of the first
    octets of ``data`` are message content (the transcript's data view);
    ``command_octets``: how many octets come before that content, the command
    that carries it (``BDAT n``, RFC 3030 §2): ``transcript_lines[0]``, shown first.
    ``no_reply_pending``: no reply is outstanding when this is written, so a
    reply already buffered is unsolicited (RFC 5321 §4.1.1: drop it first).
    """

    __slots__ = ("command_octets", "content_octets", "data", "no_reply_pending", "transcript_lines")

    def __init__(
        self,
        data: bytes | memoryview,
        transcript_lines: tuple[str, ...] = (),
        content_octets: int = 0,
        command_octets: int = 0,
        no_reply_pending: bool = False,
    ) -> None:
        self.data = data
        self.transcript_lines = transcript_lines
        self.content_octets = content_octets
        self.command_octets = command_octets
        self.no_reply_pending = no_reply_pending

    # The old names, for code that drives the flows itself; each warns.
    @property
    def log(self) -> tuple[str, ...]:
        _renamed("log", "transcript_lines")
        return self.transcript_lines

    @property
    def body(self) -> int:
        _renamed("body", "content_octets")
        return self.content_octets

    @property
    def fresh(self) -> bool:
        _renamed("fresh", "no_reply_pending")
        return self.no_reply_pending


def _renamed(old: str, new: str) -> None:
    import warnings

    warnings.warn(f"Send.{old} is deprecated: use Send.{new}", DeprecationWarning, stacklevel=3)


class Receive:
    """Read ``count`` whole replies, each within the deadline of ``timeout``'s kind.

    ``secrets`` (from the start of AUTH to the end of the connection): every
    form of the credentials, redacted from the replies wherever they are
    shown (:meth:`shown`). ``auth``: a reply to AUTH, where a 334 challenge
    is shown as ``334 ****`` (unless ``secrets.challenges_shown``: LOGIN's
    prompts, the credentials' forms hidden from them) and long base64 runs
    are hidden too.
    ``arrived``: never wait; send back only the replies (up to ``count``,
    perhaps none) whose bytes were already read, whole, into the parser.
    ``per_reply``: each reply decides on its own what it answers (LMTP's, one
    per recipient after the data): when the connection fails after some of
    them, the error is thrown into the flow carrying those.
    A 421 ends the replies sent back, whatever the count (RFC 5321 §3.8).
    """

    __slots__ = ("arrived", "auth", "count", "label", "per_reply", "secrets", "timeout")

    def __init__(  # noqa: PLR0917 (by position from Session._receive: no dict per call)
        self,
        count: int,
        label: str,
        timeout: TimeoutKind = "command",
        secrets: Secrets | None = None,
        auth: bool = False,
        arrived: bool = False,
        per_reply: bool = False,
    ) -> None:
        self.count = count
        self.label = label
        self.timeout = timeout
        self.secrets = secrets
        self.auth = auth
        self.arrived = arrived
        self.per_reply = per_reply

    def shown(self, reply: Reply) -> Reply:
        """The reply as the transcript, the logs and the errors may show it."""
        if self.secrets is None:
            return reply
        if self.auth and reply.code == 334:
            secrets = self.secrets
            if secrets.challenges_shown:
                return Reply(334, tuple(secrets.hide(line) for line in reply.lines))
            from smtpmail.protocol.redaction import REDACTED

            return Reply(334, (REDACTED,))
        return self.secrets.redact(reply, during_auth=self.auth)


class StartTLS:
    """Start the TLS handshake now (RFC 3207 §4), on the connection as it is.

    The transport refuses (``TLSError``) when the server sent anything after
    its 220: such bytes would be read as if they came over TLS.
    """

    __slots__ = ()


Action = Send | Receive | StartTLS
Flow: TypeAlias = "Generator[Action, list[Reply] | None, T]"


#: The extensions Options can switch off, in the order of its fields.
_SWITCHED = ("PIPELINING", "CHUNKING", "SMTPUTF8", "8BITMIME", "SIZE", "DSN")


class Options(Record):
    """What the client may use. Each extension is used when offered unless switched off.

    ``pipeline_messages``: with PIPELINING, the next transaction's MAIL, RCPT
    and DATA share a write with the end of the previous message's data
    (RFC 2920 §3.1 allows it). Switch it off for a server that refuses that;
    a session learns it by itself from such a server's 503 (see
    :attr:`smtpmail.protocol.session.Session.refuses_pipelined_mail`).

    ``transaction_window`` and ``window_octets``: with PIPELINING and
    CHUNKING, :meth:`~smtpmail.Client.send_many` keeps up to this many
    transactions (MAIL, RCPT, ``BDAT n LAST`` and the chunk: no 354 to wait
    for, RFC 3030 §4.2) written before their replies are read, and no more
    than this many octets of them unanswered. The octet bound stays below
    what socket buffers hold, so that client and server never both block
    writing (RFC 2920 §3.1). A message larger than it goes alone, as with a
    window of 1 (which switches the window off).
    """

    pipelining: bool = True
    chunking: bool = True
    smtputf8: bool = True
    eightbitmime: bool = True
    size: bool = True
    dsn: bool = True
    lmtp: bool = False
    #: BDAT chunks are at least this large (input is gathered up to it).
    chunk_size: int = 256 * 1024
    #: BDAT replies allowed outstanding when pipelining.
    bdat_window: int = 16
    pipeline_messages: bool = True
    #: Transactions in flight at once on one connection (CHUNKING + PIPELINING).
    #: A round trip must hold what the server takes meanwhile: Postfix on tmpfs
    #: takes 450-700 1 KB messages a second here, 23-35 per 50 ms, and a window
    #: refilled in batches runs a few below its bound (median 61 of 64 at each
    #: read). Measured at 50 ms RTT, 500 messages (docs/benchmarks.md): 16 gave
    #: 200 msgs/s, 32 gave 270-330, 64 gave 373-385, 128 no more than 64.
    transaction_window: int = 64
    #: Octets written in those transactions before their replies are read.
    window_octets: int = 128 * 1024

    def disabled(self) -> tuple[str, ...]:
        """The EHLO keywords switched off (asked at every EHLO: usually none)."""
        on = (self.pipelining, self.chunking, self.smtputf8, self.eightbitmime, self.size, self.dsn)
        if all(on):
            return ()
        return tuple(name for name, used in zip(_SWITCHED, on, strict=True) if not used)


class Content:
    """Message content as the core needs it: chunks of bytes, streamed once.

    ``size`` (octets) is declared with SIZE when known; ``measure``, when
    given instead, computes it only if a server offers SIZE (counting the line
    endings of a 5 MB message costs more CPU than sending it); ``eight_bit`` is
    None when unknown; ``smtputf8`` says the headers need SMTPUTF8.
    ``data``, when the whole message is in memory, is the same content as
    ``chunks``: DATA then sends views of it instead of copies, and its size,
    needed only for SIZE, is measured from it on first use; ``form`` then
    records what that scan found it to need (data.CHECK, STUFF or AS_IS), so
    that encoding it does not scan again what the scan proved.
    ``replay``, for streamed content that can be read again (a seekable file),
    returns fresh chunks from the start: a message whose recipients exceed a
    server's limit is sent again to the rest (RFC 5321 §4.5.3.1.10).
    ``seven_bit``, for 8-bit content the caller allowed to be converted,
    returns its 7-bit form (re-encoded MIME parts, RFC 6152 §3), made only
    for a server that offers neither 8BITMIME nor BINARYMIME.
    ``before_end``, when given, is called just before each end of data that
    sends this content leaves (DATA's final dot, RFC 5321 §4.1.1.4; ``BDAT
    ... LAST``, RFC 3030 §2), once every other octet of the content has been
    read, with the forward-paths of that transaction that the server accepted:
    from then on they may have received the message, before it they certainly
    have not. It is called from within the flow: what it raises ends the
    transaction there, so that end of data never leaves. Every transaction
    that sends the content calls it (a further one for recipients over the
    server's limit, and the 7-bit form's too), each for its own recipients.
    ``rewind``, for content read from a seekable file, puts the file back
    where it was when handed over (:meth:`put_back`).
    """

    __slots__ = (
        "before_end",
        "chunks",
        "data",
        "eight_bit",
        "form",
        "measure",
        "replay",
        "rewind",
        "seven_bit",
        "size",
        "smtputf8",
    )

    def __init__(  # noqa: PLR0917 (positional, as the dataclass it replaces)
        self,
        chunks: Iterable[bytes],
        size: int | None = None,
        eight_bit: bool | None = None,
        smtputf8: bool = False,
        measure: Callable[[], int] | None = None,
        data: bytes | None = None,
        replay: Callable[[], Iterable[bytes]] | None = None,
        seven_bit: Callable[[], Content] | None = None,
        before_end: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.chunks = chunks
        self.size = size
        self.eight_bit = eight_bit
        self.smtputf8 = smtputf8
        self.measure = measure
        self.data = data
        self.replay = replay
        self.seven_bit = seven_bit
        self.before_end = before_end
        self.form: int | None = None
        self.rewind: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return (
            f"Content(chunks={self.chunks!r}, size={self.size!r}, eight_bit={self.eight_bit!r}, "
            f"smtputf8={self.smtputf8!r}, measure={self.measure!r}, data={self.data!r})"
        )

    @property
    def resendable(self) -> bool:
        """Can the content be sent once more (held in memory, or ``replay`` given)?"""
        return self.data is not None or self.replay is not None

    def again(self) -> Content:
        """The same content from its start, for one more transaction (see ``replay``).

        Content held in memory is sent from ``data`` and serves again as it is.
        """
        if self.data is not None:
            return self
        if self.replay is None:
            raise ValueError("this content is a stream that can be read only once")
        return Content(
            self.replay(),
            self.size,
            self.eight_bit,
            self.smtputf8,
            replay=self.replay,
            before_end=self.before_end,
        )

    def put_back(self) -> None:
        """The message was not tried (a connection that failed first, a refusal
        before a byte of it left, taken ahead and not begun, a rehearsal): a
        file it was read from goes back where it was when handed over
        (``rewind``), to be given again whole."""
        rewind = self.rewind
        if rewind is not None:
            rewind()

    def declared_size(self) -> int | None:
        """``size``, computed on first use when not given: by ``measure``, or from ``data``."""
        if self.size is None:
            if self.measure is not None:
                self.size = self.measure()
                self.measure = None
            elif self.data is not None:
                self.size, self.form = measure_data(self.data)
        return self.size
