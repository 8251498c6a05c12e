"""What the blocking and the asyncio client share: configuration and bookkeeping.

Only the loop that waits for bytes differs between :class:`~smtpmail.Client`
and :class:`~smtpmail.AsyncClient`; everything here, and the whole protocol
in :mod:`smtpmail.protocol`, is written once (as httpx's ``BaseClient``).
"""

from __future__ import annotations

import _socket  # socket's C core: socket.py's enums and selectors cost start-up time
import functools
from collections.abc import Callable, Iterable
from enum import StrEnum

from smtpmail._log import DEBUG, Logger
from smtpmail._record import Frozen
from smtpmail.errors import (
    ConnectError,
    InputError,
    InvalidArgument,
    LocalProtocolError,
    PlaintextAuthRefused,
    ReplyError,
    ReplyTimeout,
    ServiceClosing,
    SMTPError,
    TLSError,
    TransportError,
)
from smtpmail.message.content import MessageInput, as_content, resolve_envelope
from smtpmail.protocol import commands, idn
from smtpmail.protocol.actions import Content, Flow, Options, Receive, Send, TimeoutKind
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.extensions import Extensions
from smtpmail.protocol.reply import Reply, ReplyParser
from smtpmail.protocol.session import Session
from smtpmail.transport.tls import TLSInfo, TLSMode, TLSOptions, make_context, resolve_mode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import socket
    import ssl  # loaded only when TLS starts (see transport.tls)
    from typing import Any

    from smtpmail.message.dkim import DKIMKey
    from smtpmail.protocol.proxy import Proxy  # loaded only when a proxy is given
    from smtpmail.protocol.sasl import Credentials  # loaded only when auth is given
    from smtpmail.transport.stream import (
        AsyncConnector,
        AsyncNetworkStream,
        Connector,
        NetworkStream,
    )

__all__ = ["BaseClient", "Timeouts", "Transcript"]

log = Logger("smtpmail.transport")  # logging itself is imported when needed (_log)

#: Receives every line of the dialogue: ``("client", line)``, ``("server", line)``,
#: ``("data", message text)`` and ``("info", note)``. Secrets arrive redacted.
Transcript = Callable[[str, str], None]


class Timeouts(Frozen):
    """Deadlines in seconds; each applies to one whole reply (RFC 5321 §4.5.3.2).

    The defaults are the RFC's: 5 minutes for the greeting and commands,
    3 for each data block, 10 after the final dot (a premature timeout there
    makes the sender retry a message the server may have taken).
    """

    _fields = ("connect", "greeting", "command", "data_block", "data_end")
    __slots__ = _fields

    connect: float
    greeting: float
    command: float
    data_block: float
    data_end: float

    def __init__(
        self,
        connect: float = 30.0,
        greeting: float = 300.0,
        command: float = 300.0,
        data_block: float = 180.0,
        data_end: float = 600.0,
    ) -> None:
        self._init(
            connect=_seconds("the connect timeout", connect),
            greeting=_seconds("the greeting timeout", greeting),
            command=_seconds("the command timeout", command),
            data_block=_seconds("the data_block timeout", data_block),
            data_end=_seconds("the data_end timeout", data_end),
        )

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        if value is None:
            return _DEFAULT_TIMEOUTS  # (immutable: one for every client that sets none)
        if isinstance(value, Timeouts):
            return value
        t = _seconds("the timeout", value)
        # One number bounds every wait but the one after the final dot.
        return cls(t, t, t, t, max(t, 600.0))

    def for_kind(self, kind: TimeoutKind) -> float:
        return float(getattr(self, kind))

    def but(self, **changes: float) -> Timeouts:
        """Deprecated: :meth:`replace`, the one name every value class has."""
        import warnings

        warnings.warn(
            "Timeouts.but() is deprecated: use Timeouts.replace()", DeprecationWarning, stacklevel=2
        )
        return self.replace(**changes)


_INFINITY = float("inf")


def _source_address(value: object) -> tuple[str, int] | None:
    """The local (address, port) to connect from, checked before connecting (the
    socket module's errors for a bad one were a TypeError or UnicodeError)."""
    if value is None:
        return None
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
        raise InvalidArgument(
            f"source_address must be an (address, port) tuple like ('192.0.2.1', 0), not {value!r}"
        )
    host, port = value
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"the source port must be 0 (any) to 65535, not {port!r}")
    what = "the source address"
    return idn.host_name(commands.check_text(host, what), what), port


def _seconds(what: str, value: object) -> float:
    """A wait in seconds: a finite number over 0, else InvalidArgument.

    Checked before connecting, so both clients refuse the same values alike:
    0 would make the socket non-blocking, a negative or NaN one is refused by
    the socket only (the asyncio client took it as "already expired"), and
    infinity overflows the blocking client's clock.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not 0 < seconds < _INFINITY:
        raise InvalidArgument(f"{what} must be more than 0 seconds, and finite, not {value!r}")
    return seconds


_DEFAULT_TIMEOUTS = Timeouts()
#: For every client given no tls_options (immutable: building one per client
#: cost a fortieth of a one-shot send's instructions).
_NO_TLS_OPTIONS = TLSOptions()


@functools.cache
def local_fqdn() -> str | None:
    """This machine's fully qualified name, as EHLO writes it; None when it has
    none worth giving (``localhost``, ``*.localdomain``, no dot, not a name).

    The one rule for the client's own name: the EHLO name's default, the domain
    ``sendmail`` qualifies ``root`` with (and its Message-ID's), the names a
    direct delivery must not loop to. Asked once per process."""
    try:
        name = _getfqdn()
    except OSError:
        return None
    if "." not in name or name.startswith("localhost") or name.endswith(".localdomain"):
        return None
    try:
        # As EHLO writes it (A-labels); a name it cannot write ("my_host.lan",
        # common in containers) is no name: the address literal goes instead.
        return commands.ehlo_name(name)
    except InputError:
        return None


def _getfqdn() -> str:
    """The host name when it has a dot, as Postfix takes ``myhostname`` (no
    lookup: on a host whose DNS is broken, a lookup stalls each cron mail for
    seconds); else socket.getfqdn(), which asks the resolver (``/etc/hosts``
    first, as a rule) for the name with a dot. It asks with bytes: for a str,
    gethostbyaddr loads the idna codec (start-up time) only to return the same
    ASCII octets."""
    name = _socket.gethostname()
    if "." in name:
        return name
    try:
        query = name.encode("ascii") if name.isascii() else name
        hostname, aliases, _ = _socket.gethostbyaddr(query)  # type: ignore[arg-type]
    except OSError:
        return name
    return next((n for n in (hostname, *aliases) if "." in n), hostname)


def default_ehlo_name(sock_name: tuple[object, ...] | None) -> str:
    """The machine's FQDN, else an address literal of the local end (never ``localhost``)."""
    name = local_fqdn()
    if name:
        return name
    if sock_name and isinstance(sock_name[0], str):
        host = sock_name[0].split("%")[0]
        return f"[IPv6:{host}]" if ":" in host else f"[{host}]"
    return "[127.0.0.1]"


#: Credentials may go unencrypted to a server on the loopback interface:
#: nothing leaves the machine (tests switch this off to check the refusal).
LOOPBACK_IS_PRIVATE = True


def _is_loopback(address: object) -> bool:
    import ipaddress  # here: only AUTH without TLS asks, and it costs a plain send start-up time

    try:
        return ipaddress.ip_address(str(address).split("%")[0]).is_loopback
    except ValueError:
        return False


class Stage(StrEnum):
    """Where :meth:`~smtpmail.Client.rehearse` stops (swaks's ``--quit-after``)."""

    CONNECT = "connect"  # the TCP connection (and implicit TLS's handshake)
    GREETING = "greeting"  # the server's 220 banner
    EHLO = "ehlo"  # the first EHLO
    TLS = "tls"  # STARTTLS and the EHLO after it (when TLS is used)
    AUTH = "auth"  # authentication (when credentials are given)
    MAIL = "mail"  # MAIL FROM
    RCPT = "rcpt"  # every RCPT TO


_ORDER = list(Stage)

#: Stands for a pre-connected stream that was used and closed.
_USED = object()


class BaseClient:
    """Configuration and the IO-free half of a client connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        ehlo_name: str | None = None,
        timeout: float | Timeouts | None = None,
        source_address: tuple[str, int] | None = None,
        family: socket.AddressFamily | int = 0,
        options: Options | None = None,
        lmtp: bool = False,
        transcript: Transcript | None = None,
        tls: TLSMode | str | None = None,
        tls_options: TLSOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
        auth: Credentials | tuple[str, str] | None = None,
        auth_mechanism: str | None = None,
        allow_plaintext_auth: bool = False,
        dkim: DKIMKey | None = None,
        convert_8bit: bool = False,
        connect: Connector | AsyncConnector | None = None,
        stream: NetworkStream | AsyncNetworkStream | socket.socket | None = None,
        proxy: Proxy | str | None = None,
    ) -> None:
        """``tls``: None picks IMPLICIT on port 465, REQUIRED when ``auth`` is given
        (unless ``allow_plaintext_auth``), else OPPORTUNISTIC. ``ssl_context``
        replaces the context built from ``tls_options`` (whose ``server_hostname``
        and ``fingerprint`` still apply).
        ``auth``: credentials; the mechanism is the strongest offered unless
        ``auth_mechanism`` names one. Credentials never travel unencrypted
        (except to a loopback address the client dialled itself: not through
        ``proxy``, ``connect`` or ``stream``) unless ``allow_plaintext_auth``. ``dkim``: a
        :class:`~smtpmail.message.dkim.DKIMKey` that signs every message this
        client sends, as it goes on the wire (after the Bcc rule).
        ``convert_8bit``: re-encode the 8-bit MIME parts of a message as
        quoted-printable (text) or base64 (RFC 2045) when the server does not
        offer 8BITMIME (RFC 6152 §3), or always when ``dkim`` signs it, before
        signing (RFC 6376 §5.3); without it such a message is refused before
        MAIL FROM.
        ``source_address``: the local (address, port) to connect from (port 0:
        any). ``family``: ``socket.AF_INET`` or ``AF_INET6`` to use only the
        host's IPv4 or IPv6 addresses (0: either). ``connect``: the
        :class:`~smtpmail.transport.stream.Connector` (for AsyncClient the
        ``AsyncConnector``) that opens each connection, with these
        ``source_address`` and ``family``, instead of a direct TCP connection
        (a proxy's, say). ``stream``: a connected socket or stream to use for
        the first connection; the client cannot open another one by itself
        (see :mod:`smtpmail.transport.stream` for the contract). ``proxy``: a
        :class:`~smtpmail.Proxy` or its URL (``socks5h://user:pass@host:1080``,
        socks5, socks4, socks4a, ``http://host:port``), checked here; every
        connection goes through it (docs/proxies.md)."""
        # A-labels: what DNS, SNI and the certificate check see (IDNA 2008, not the stdlib's 2003).
        self.host = idn.host_name(host, "the server name")
        self.port = commands.check_port(port)  # (checked: see check_port)
        self.ehlo_name = ehlo_name
        self.timeouts = Timeouts.of(timeout)
        self.source_address = _source_address(source_address)
        if family not in (0, _socket.AF_INET, _socket.AF_INET6):
            raise InvalidArgument(f"family must be 0, AF_INET or AF_INET6, not {family!r}")
        self.family = family
        self.options = options or Options()
        if lmtp:
            self.options = self.options.replace(lmtp=True)
        self.transcript = transcript
        self.credentials: Credentials | None = None
        self.auth_mechanism = auth_mechanism
        if auth is not None or auth_mechanism is not None:
            from smtpmail.protocol.sasl import Credentials, mechanism_name

            if auth is not None:
                self.credentials = Credentials.of(auth)
            if auth_mechanism is not None:  # an unknown one fails here, before connecting
                self.auth_mechanism = mechanism_name(auth_mechanism)
        self.allow_plaintext_auth = allow_plaintext_auth
        self.dkim = dkim
        self.convert_8bit = convert_8bit
        self.tls_mode = resolve_mode(tls, port, self.credentials is not None, allow_plaintext_auth)
        opts = self.tls_options = tls_options or _NO_TLS_OPTIONS
        opts.pinned()  # a malformed pin fails here, before connecting
        opts.pinned_keys()
        if ssl_context is None and (opts.ca_file or opts.ca_path or opts.cert_file):
            # Files named are read now: a missing one fails before connecting, even
            # where no TLS would happen (no STARTTLS offered), not skipped in silence.
            ssl_context = make_context(opts)
        self._ssl_context = ssl_context
        self._tls_info: TLSInfo | None = None
        self._peer: tuple[object, ...] | None = None
        self._session = Session(self.options)
        self._parser = ReplyParser()
        self._untouched = True  # (the session and parser: see _new_session)
        self._connected = False
        self._connector: Any = connect
        self._given: object | None = stream
        self._stream: Any = None  # the sync or async stream of the open connection
        self.proxy: Proxy | None = None
        if proxy is not None:
            if connect is not None or stream is not None:
                raise InvalidArgument("give proxy= or connect=/stream=, not both")
            from smtpmail.protocol.proxy import Proxy

            self.proxy = Proxy.of(proxy)  # a bad URL fails here, before connecting
            self._connector = self._proxy_connector(self.proxy)

    @property
    def session(self) -> Session:
        """The protocol state: greeting, EHLO reply, extensions."""
        return self._session

    @property
    def extensions(self) -> Extensions:
        """What the server offered in its EHLO reply (less what options switched off)."""
        return self._session.extensions

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def tls_info(self) -> TLSInfo | None:
        """The TLS version, cipher and server certificate; None on a clear-text connection."""
        return self._tls_info

    @property
    def server_hostname(self) -> str:
        """The name the server certificate must carry, also sent in SNI.

        A fully qualified name's final dot (``mail.example.org.``, which the
        resolver keeps) is dropped here, as curl drops it: SNI carries no
        trailing dot (RFC 6066 §3), certificates name hosts without one, and
        OpenSSL compares the two as they are ("Hostname mismatch")."""
        return (self.tls_options.server_hostname or self.host).removesuffix(".")

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = make_context(self.tls_options)
        return self._ssl_context

    def __repr__(self) -> str:
        state = "connected" if self._connected else "not connected"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    def close(self) -> None:
        """Close the connection without QUIT (without waiting, also in AsyncClient)."""
        self._connected = False
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    # -- helpers shared by both drivers --------------------------------------

    def _proxy_connector(self, proxy: Proxy) -> Any:
        """The connector that reaches the server through ``proxy`` (each client its own kind)."""
        raise NotImplementedError

    def _given_stream(self) -> Any:
        """The caller's pre-connected socket or stream, the first time; None when
        none was given; ConnectError after that: the client cannot reopen it."""
        given = self._given
        if given is None:
            return None
        if given is _USED:
            raise ConnectError(
                f"the connection to {self.host}:{self.port} given as stream= was closed "
                "and the client cannot open another (pass connect= for that)"
            )
        self._given = _USED
        return given

    def _where(self) -> dict[str, Any]:
        """What a connector is told besides host and port (the connect deadline,
        ``source_address`` and ``family``)."""
        return {
            "timeout": self.timeouts.connect,
            "source_address": self.source_address,
            "family": self.family,
        }

    def _pairs(
        self, items: Iterable[tuple[Envelope, MessageInput]], keep_bcc: bool
    ) -> Iterable[tuple[Envelope, Content]]:
        """send_many's items, each message as it goes on the wire (read lazily)."""
        for envelope, message in items:
            if not isinstance(envelope, Envelope):
                # (else an AttributeError about Envelope's innards, mid-batch)
                raise TypeError(
                    "send_many takes (Envelope, message) pairs; the envelope is a "
                    f"{type(envelope).__name__}"
                )
            yield envelope, self._content(message, keep_bcc)

    def _new_session(self) -> None:
        """The protocol state of a new connection. The first connection takes the
        one built with the client, untouched until then (unless the options
        were replaced since): building it twice cost a one-shot send 1%."""
        if self._untouched:
            self._untouched = False
            if self._session.options is self.options:
                return
        if self._session.refuses_pipelined_mail:
            # Learned on the previous connection: keep it for this server (RFC 2920 §3.1).
            self.options = self.options.replace(pipeline_messages=False)
        self._session = Session(self.options)
        self._parser = ReplyParser()
        self._tls_info = None
        self._peer = None

    # -- what follows the TCP connect: EHLO, STARTTLS, AUTH ------------------

    def _establish(
        self, sock_name: tuple[object, ...] | None, until: Stage = Stage.AUTH
    ) -> Flow[Reply]:
        """Greeting, EHLO, STARTTLS as the policy says, EHLO again, AUTH; or only
        the steps up to ``until``."""
        session = self._session
        greeting = yield from session.greet()
        if until is Stage.GREETING:
            return greeting
        name = self.ehlo_name or default_ehlo_name(sock_name)
        yield from session.hello(name)
        if until is Stage.EHLO:
            return greeting
        mode = self.tls_mode
        if self._tls_info is None and mode in (TLSMode.REQUIRED, TLSMode.OPPORTUNISTIC):
            offered = "STARTTLS" in session.extensions
            if offered or mode is TLSMode.REQUIRED:
                reply = yield from session.starttls()
                if reply.code == 220:
                    yield from session.hello(name)
                elif mode is TLSMode.REQUIRED:
                    raise TLSError(
                        f"TLS is required but {self.host} refused STARTTLS "
                        f"({reply.code} {reply.text_oneline()}); nothing else was sent",
                        reply,
                    )
                else:
                    log.warning("STARTTLS refused (%s); going on in clear text", reply.code)
        session.tls_authenticated = self._tls_info is not None and self._tls_info.authenticated
        if until is Stage.TLS:
            return greeting
        if self.credentials is not None:
            yield from self._authenticate()
        return greeting

    def _connect_error(self, exc: OSError) -> ConnectError:
        """The one wording of a failed connection (a gaierror stays the cause: the
        CLI's "host unknown"); with ``family``, the name may lack only that kind."""
        where = f"cannot connect to {self.host}:{self.port}"
        if self.family and isinstance(exc, _socket.gaierror):
            version = "IPv4" if self.family == _socket.AF_INET else "IPv6"
            return ConnectError(f"{where}: {self.host} has no {version} address ({exc})")
        return ConnectError(f"{where}: {exc}")

    def _rehearsal(self, until: Stage, item: tuple[Envelope, Content] | None) -> Flow[None]:
        """After the connection is established: MAIL (and RCPT) for ``until``."""
        if until in (Stage.MAIL, Stage.RCPT):
            assert item is not None
            yield from self._session.envelope_only(*item, rcpt=until is Stage.RCPT)

    def _rehearsal_item(
        self,
        until: Stage | str,
        message: MessageInput | None,
        sender: str | None,
        recipients: Iterable[str] | str | None,
        envelope: Envelope | None,
    ) -> tuple[Stage, tuple[Envelope, Content] | None]:
        """The stage, and for MAIL/RCPT the envelope and content, validated first."""
        try:
            stage = Stage(until)
        except ValueError:
            names = ", ".join(s.value for s in Stage)
            raise InvalidArgument(f"unknown stage {until!r}; use one of {names}") from None
        if _ORDER.index(stage) < _ORDER.index(Stage.MAIL):
            return stage, None
        if message is None:
            message = b""  # only its size and 8-bit/UTF-8 needs shape MAIL FROM
        return stage, self._items(message, sender, recipients, envelope, False)

    def _authenticate(self) -> Flow[Reply]:
        creds = self.credentials
        assert creds is not None
        if self._tls_info is None and not self.allow_plaintext_auth:
            # Only a connection the client dialled itself: through a proxy, the
            # caller's connector or stream, the peer is whatever the caller
            # reached (a local proxy, a tunnel's entrance) and the server may
            # be anywhere.
            local = (
                LOOPBACK_IS_PRIVATE
                and self._connector is None
                and self._given is None
                and self._peer is not None
                and _is_loopback(self._peer[0])
            )
            if not local:
                raise PlaintextAuthRefused(f"{self.host}:{self.port}")
        from smtpmail.protocol.sasl import choose

        mechanism = choose(self._session.extensions.auth_mechanisms, creds, self.auth_mechanism)
        return (yield from self._session.authenticate(mechanism))

    def _stamp(self, results: list[SendResult]) -> list[SendResult]:
        """Record on each result how the connection was protected."""
        for result in results:
            result.tls = self._tls_info
        return results

    def _before_handshake(self, pending: int) -> None:
        """RFC 3207 §5: bytes after the 220 would be read as if they came over TLS."""
        if self._parser.buffered or pending:
            raise TLSError(
                f"{self.host} sent data after its 220 reply to STARTTLS, before the TLS "
                "handshake (a command injection attack or a broken server); connection closed"
            )

    def _items(
        self,
        message: MessageInput,
        sender: str | None,
        recipients: Iterable[str] | str | None,
        envelope: Envelope | None,
        keep_bcc: bool,
    ) -> tuple[Envelope, Content]:
        envelope = resolve_envelope(message, sender, recipients, envelope)
        return envelope, self._content(message, keep_bcc)

    def _content(self, message: MessageInput, keep_bcc: bool) -> Content:
        """What goes on the wire: the Bcc rule, the 8-bit downgrade when asked,
        then this client's DKIM signature."""
        return as_content(
            message, keep_bcc=keep_bcc, dkim=self.dkim, convert_8bit=self.convert_8bit
        )

    def _looking(self) -> bool:
        """Whether anyone looks at the dialogue (the transcript hook, debug logging):
        rendering commands and replies costs more than parsing them. The drive
        loop asks once per operation (:func:`smtpmail.transport.drive.steps`)."""
        return self.transcript is not None or log.isEnabledFor(DEBUG)

    def _note_send(self, action: Send) -> None:
        hook = self.transcript
        if hook is not None:
            lines = action.transcript_lines
            start = action.command_octets
            before = 1 if start else 0  # BDAT's command, then its chunk
            for line in lines[:before]:
                _emit(hook, "client", line)
            if action.content_octets:
                content = action.data[start : start + action.content_octets]
                _emit(hook, "data", str(content, "utf-8", "replace"))
            for line in lines[before:]:
                _emit(hook, "client", line)
        if log.isEnabledFor(DEBUG):
            for line in action.transcript_lines:
                log.debug("C: %s", line)

    def _note_reply(self, reply: Reply, action: Receive | None = None) -> None:
        if not self._looking():
            return
        hook = self.transcript
        if action is not None:
            reply = action.shown(reply)
        text = str(reply)
        if hook is not None:
            for line in text.split("\n"):
                _emit(hook, "server", line)
        if log.isEnabledFor(DEBUG):
            log.debug("S: %s", text)

    def _unsolicited(self) -> None:
        """Drop replies nobody asked for, so none is paired with the wrong command."""
        parser = self._parser
        if not parser.buffered:
            return
        try:
            reply = parser.maybe_next_reply()
        except TransportError:
            reply = None
        except Exception:  # malformed junk: dropped all the same
            reply = None
        dropped = parser.clear()  # (what follows the reply parsed, if one was)
        if reply is not None:
            dropped = str(reply).encode("utf-8", "replace") + b"\r\n" + dropped
        log.warning("dropped unsolicited data from the server: %r", self._quoted(dropped))
        if reply is not None and reply.code == 421:
            self._connected = False
            raise self._closing(reply)

    def _closing(self, reply: Reply) -> ServiceClosing:
        """A 421 nobody asked for (RFC 5321 §3.8), as the error that says the
        server left: redacted once AUTH has started."""
        secrets = self._session.secrets
        return ServiceClosing("(unsolicited)", reply if secrets is None else secrets.redact(reply))

    def _quoted(self, data: bytes) -> str:
        """Server bytes as a log may quote them: the first 80 characters, with the
        credentials hidden once AUTH has started (hidden before the cut, so that
        no part of one shows)."""
        text = data.decode("utf-8", "replace")
        secrets = self._session.secrets
        return (text if secrets is None else secrets.hide(text))[:80]

    def _timeout_error(self, action: Receive) -> ReplyTimeout:
        seconds = self.timeouts.for_kind(action.timeout)
        err = ReplyTimeout(f"no complete reply to {action.label} within {seconds:g} s")
        _mark_possibly_delivered(err, action)
        return err


class HookFailed(Exception):
    """The transcript hook raised. The IO loops re-raise the hook's own exception
    (never a ConnectionLost: a BrokenPipeError from the caller's stdout is not the
    server's fault) after closing the connection, whose state is then unknown."""


def _emit(hook: Transcript, kind: str, text: str) -> None:
    try:
        hook(kind, text)
    except Exception as exc:
        raise HookFailed(kind) from exc


def quits_on_leaving(client: BaseClient, exc: BaseException | None) -> bool:
    """Does a ``with`` block left on ``exc`` end with QUIT (RFC 5321 §4.1.1.10),
    rather than only closing the connection?

    With no error, or the client's own when the connection survives it; and
    with an error of the caller's code while the connection is up. An
    operation such an error interrupts (a message iterator raising mid-DATA)
    closes the connection itself, so one still up is between operations: idle,
    as after a send. Not for a KeyboardInterrupt or a cancelled task, which
    must not wait for a reply."""
    if exc is None or connection_survives(exc):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, SMTPError) and client.is_connected


def connection_survives(exc: BaseException) -> bool:
    """After ``exc``, is the connection still in a known state and usable?"""
    if isinstance(exc, ServiceClosing):
        return False
    if isinstance(exc, TLSError):  # STARTTLS refused (its reply kept): still in clear text
        return exc.reply is not None
    return isinstance(exc, ReplyError | InputError | LocalProtocolError)


def _mark_possibly_delivered(exc: TransportError, action: Receive) -> None:
    """A failure while waiting for the reply to the final dot may mean it was delivered."""
    exc.possibly_delivered = action.timeout == "data_end"
