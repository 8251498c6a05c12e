"""The blocking SMTP client: drives :mod:`smtpmail.protocol` flows over a socket."""

from __future__ import annotations

import _thread  # threading's C core: a lock without threading's start-up time
import select
import socket
import sys
import time
from collections.abc import Iterable
from types import TracebackType

from smtpmail._log import Logger
from smtpmail.errors import (
    ConnectionLost,
    LocalProtocolError,
    SMTPError,
)
from smtpmail.message.content import MessageInput
from smtpmail.protocol.actions import Flow, Receive, Send, StartTLS
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.transport._base import (
    BaseClient,
    HookFailed,
    Stage,
    _mark_possibly_delivered,
    connection_survives,
)
from smtpmail.transport.tls import TLSMode, check_peer, handshake_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import ssl
    from typing import TypeGuard, TypeVar

    T = TypeVar("T")

__all__ = ["Client"]

log = Logger("smtpmail.transport")  # logging itself is imported when needed (_log)


class Client(BaseClient):
    """A blocking SMTP client connection.

    ::

        with Client("mail.example.org", 25) as client:
            result = client.send(message, sender="a@example.org", recipients=["b@example.net"])

    It connects on ``with`` or on the first :meth:`send`, reconnects when the
    server closed an idle connection, and sends many messages on one
    connection with :meth:`send_many`.

    One connection carries one dialogue, so operations on one client are
    serialised: several threads may share it, each operation waiting for the
    one before it to finish. For messages in parallel, use one client per
    connection. :meth:`close` does not wait.
    """

    _sock: socket.socket | ssl.SSLSocket | None = None
    _last_io = 0.0
    _lock: _thread.LockType | None = None

    def _serial(self) -> _thread.LockType:
        """The lock every public operation holds: one dialogue at a time."""
        lock = self._lock
        if lock is None:
            with _CREATING:  # two threads' first calls must get the same lock
                if self._lock is None:
                    self._lock = _thread.allocate_lock()
                lock = self._lock
        return lock

    # -- connection ----------------------------------------------------------

    def connect(self) -> Reply:
        """Connect, read the greeting, say EHLO; return the greeting."""
        with self._serial():
            greeting = self._connect()
            assert greeting is not None
            return greeting

    def rehearse(
        self,
        until: Stage | str,
        message: MessageInput | None = None,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
    ) -> None:
        """Run the dialogue up to ``until`` (a :class:`Stage` or its name: connect,
        greeting, ehlo, tls, auth, mail, rcpt), then QUIT, as swaks's
        ``--quit-after`` does: nothing is delivered (no DATA). For mail and rcpt
        the envelope is the one :meth:`send` would use for these arguments (and
        ``message`` sizes MAIL FROM's SIZE). After connect the connection is
        closed without QUIT: the greeting was not awaited (RFC 5321 §3.1).
        A refusal on the way raises as it would in a send."""
        stage, item = self._rehearsal_item(until, message, sender, recipients, envelope)
        with self._serial():
            self._connect(stage)
            if stage is Stage.CONNECT:
                self.close()
                return
            try:
                self._run(self._rehearsal(stage, item))
            except BaseException as exc:
                if connection_survives(exc):
                    self._quit()
                else:
                    self.close()
                raise
            self._quit()

    def _connect(self, until: Stage = Stage.AUTH) -> Reply | None:
        if self._connected:
            raise LocalProtocolError("already connected")
        self._new_session()
        # An ASCII name goes as bytes: for a str, getaddrinfo loads the idna
        # codec (start-up time) only to return the same ASCII octets.
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        try:
            sock = self._open(host)
        except OSError as exc:
            raise self._connect_error(exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._connected = True
        self._peer = sock.getpeername()
        if self.transcript is not None:
            self.transcript("info", f"connected to {self._peer[0]} port {self._peer[1]}")
        sock_name = sock.getsockname()
        try:
            if self.tls_mode is TLSMode.IMPLICIT:
                self._start_tls()
            if until is Stage.CONNECT:
                return None
            return self._run(self._establish(sock_name, until))
        except BaseException:
            self.close()
            raise

    def _open(self, host: str | bytes) -> socket.socket:
        """The TCP connection: any address of the host, or only ``family``'s."""
        if not self.family:
            return socket.create_connection(
                # (getaddrinfo takes bytes; typeshed says str only)
                (host, self.port),  # type: ignore[arg-type]
                self.timeouts.connect,
                self.source_address,
            )
        error: OSError | None = None
        for *_, addr in socket.getaddrinfo(host, self.port, self.family, socket.SOCK_STREAM):
            try:
                return socket.create_connection(
                    (str(addr[0]), self.port), self.timeouts.connect, self.source_address
                )
            except OSError as exc:
                error = exc  # the next address, as create_connection does
        assert error is not None  # (getaddrinfo returns at least one or raises)
        raise error

    def _start_tls(self) -> None:
        """The TLS handshake on the connected socket (implicit TLS or after STARTTLS)."""
        sock = self._sock
        assert sock is not None
        name = self.server_hostname
        import ssl  # only now: a clear-text connection never loads OpenSSL

        try:
            sock.settimeout(self.timeouts.connect)
            wrapped = self._context().wrap_socket(sock, server_hostname=name)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise handshake_error(exc, f"{self.host}:{self.port}") from exc
        self._sock = wrapped
        self._tls_info = check_peer(wrapped, self.tls_options, name)
        log.info("TLS established with %s: %s", self.host, self._tls_info)
        if self.transcript is not None:
            self.transcript("info", f"TLS: {self._tls_info}")

    def close(self) -> None:
        """Close the socket without QUIT."""
        self._connected = False
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def quit(self) -> Reply | None:
        """Say QUIT and close; None when the connection was already gone."""
        with self._serial():
            return self._quit()

    def _quit(self) -> Reply | None:
        if not self._connected:
            self.close()
            return None
        try:
            return self._run(self._session.quit())
        except SMTPError:
            return None
        finally:
            self.close()

    def __enter__(self) -> Client:
        with self._serial():
            if not self._connected:
                self._connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or connection_survives(exc):
            self.quit()
        else:
            self.close()

    def _ensure_connected(self) -> None:
        # One cheap poll per operation: a server that dropped an idle connection
        # (or said 421 and left) costs a reconnect, not a failed transaction.
        if self._connected and self._peer_closed():
            log.info("the server closed the idle connection; reconnecting")
            self.close()
        if not self._connected:
            self._connect()

    def _peer_closed(self) -> bool:
        sock = self._sock
        assert sock is not None
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if _is_tls(sock):
                return self._tls_peer_closed(sock)
            # Anything readable while idle is EOF or a parting 421.
            data = sock.recv(4096, socket.MSG_PEEK)
            return True if not data else data.startswith(b"421")
        except OSError:
            return True

    def _tls_peer_closed(self, sock: ssl.SSLSocket) -> bool:
        # TLS 1.3 session tickets make the socket readable with no data for us:
        # only application data (a 421) or the end of the stream count.
        import ssl

        sock.setblocking(False)
        try:
            data = sock.recv(4096)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        if data:
            # Unsolicited while idle: a parting 421 or junk; either way, start afresh.
            log.info("the server sent %r while the connection was idle", self._quoted(data))
        return True

    # -- commands ------------------------------------------------------------

    def send(
        self,
        message: MessageInput,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
        keep_bcc: bool = False,
    ) -> SendResult:
        """Send one message; return what became of each recipient.

        Raises when the transaction fails as a whole (sender refused, every
        recipient refused, message refused); a partial refusal is reported in
        the result. Input is validated before anything is sent. Recipients over
        the server's limit go in further transactions (RFC 5321 §4.5.3.1.10);
        when the connection fails during one, the error's ``results`` say
        which recipients an earlier one delivered. The message's Bcc and
        Resent-Bcc fields are not transmitted unless ``keep_bcc`` (its Bcc
        recipients get it through the envelope).
        """
        item = self._items(message, sender, recipients, envelope, keep_bcc)
        with self._serial():
            self._ensure_connected()
            results: list[SendResult] = []
            flow = self._session.transactions([item], keep_errors=False, results=results)
            try:
                (result,) = self._stamp(self._run(flow))
            except SMTPError as exc:
                exc.results = results  # recipients over a limit go in several transactions
                raise
        return result

    def send_many(
        self,
        items: Iterable[tuple[Envelope, MessageInput]],
        *,
        results: list[SendResult] | None = None,
        keep_bcc: bool = False,
    ) -> list[SendResult]:
        """Send each (envelope, message) on this connection, one round trip each.

        A refused message is recorded in its result's ``error`` and the batch
        goes on; a lost connection raises, with the results so far in the
        exception's ``results``. Pass ``results`` to watch it fill as the batch
        goes: each result is appended when its transaction starts, and is
        complete once its ``reply`` or ``error`` is set. ``keep_bcc``: as for
        :meth:`send`.
        """
        if results is None:
            results = []
        with self._serial():
            self._ensure_connected()
            flow = self._session.transactions(
                ((env, self._content(msg, keep_bcc)) for env, msg in items),
                keep_errors=True,
                results=results,
            )
            try:
                return self._stamp(self._run(flow))
            except SMTPError as exc:
                exc.results = results
                raise

    def noop(self) -> Reply:
        with self._serial():
            self._ensure_connected()
            return self._run(self._session.noop())

    def rset(self) -> Reply:
        with self._serial():
            self._ensure_connected()
            return self._run(self._session.rset())

    def vrfy(self, address: str) -> Reply:
        with self._serial():
            self._ensure_connected()
            return self._run(self._session.vrfy(address))

    # -- the IO loop -----------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        sock = self._sock
        if sock is None:
            raise LocalProtocolError("not connected")
        result: list[Reply] | None = None
        try:
            while True:
                action = flow.send(result)
                if type(action) is StartTLS:
                    self._before_handshake(_pending(sock))
                    self._start_tls()
                    sock = self._sock
                    assert sock is not None
                    result = None
                elif type(action) is Send:
                    if action.no_reply_pending:
                        self._poll_unsolicited(sock)
                    if action.transcript_lines or action.content_octets:
                        self._note_send(action)
                    sock.settimeout(self.timeouts.command)
                    sock.sendall(action.data)
                    result = None
                else:
                    assert isinstance(action, Receive)
                    result = self._read(sock, action)
        except StopIteration as stop:
            self._last_io = time.monotonic()
            return stop.value  # type: ignore[no-any-return]
        except HookFailed as failed:
            self.close()
            raise failed.__cause__ from None  # type: ignore[misc]
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.host}:{self.port} broke: {exc}") from exc
        except BaseException as exc:
            if not connection_survives(exc):
                self.close()
            raise
        finally:
            flow.close()

    def _poll_unsolicited(self, sock: socket.socket) -> None:
        """Before a command that expects the next reply, drop whatever already arrived."""
        readable, _, _ = select.select([sock], [], [], 0)
        tls = _is_tls(sock)
        if readable or (_is_tls(sock) and sock.pending()):
            # Readable may mean only a TLS 1.3 session ticket: never block here.
            sock.setblocking(False)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError as exc:
                if not (tls and isinstance(exc, sys.modules["ssl"].SSLWantReadError)):
                    raise
                data = None
            if data == b"":
                self.close()
                raise ConnectionLost(f"the server at {self.host}:{self.port} closed the connection")
            if data:
                self._parser.feed(data)
        if self._parser.buffered:
            self._unsolicited()

    def _read(self, sock: socket.socket, action: Receive) -> list[Reply]:
        replies: list[Reply] = []
        parser = self._parser
        timeout = self.timeouts.for_kind(action.timeout)
        deadline = 0.0
        while len(replies) < action.count:
            reply = self._take_reply(action)
            if reply is not None:
                replies.append(reply)
                deadline = 0.0  # each reply has its own deadline
                continue
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout
            remaining = deadline - now
            if remaining <= 0:
                raise self._timeout_error(action)
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise self._timeout_error(action) from None
            except OSError as exc:
                err = ConnectionLost(f"connection lost waiting for the reply to {action.label}")
                _mark_possibly_delivered(err, action)
                raise err from exc
            if not data:
                err = ConnectionLost(
                    f"the server closed the connection before replying to {action.label}"
                )
                _mark_possibly_delivered(err, action)
                raise err
            parser.feed(data)
        return replies


#: Held only while a client creates its lock (once per client).
_CREATING = _thread.allocate_lock()


def _pending(sock: socket.socket) -> int:
    """Octets the server already sent that nobody has read (without consuming them)."""
    if _is_tls(sock):
        return sock.pending()
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return 0
    sock.setblocking(False)
    try:
        return len(sock.recv(4096, socket.MSG_PEEK))
    except BlockingIOError:
        return 0
    finally:
        sock.setblocking(True)


def _is_tls(sock: object) -> TypeGuard[ssl.SSLSocket]:
    """Is ``sock`` a TLS socket? Asked without importing ssl: until a TLS
    connection was made, ssl is not loaded and no socket can be one."""
    ssl_module = sys.modules.get("ssl")
    return ssl_module is not None and isinstance(sock, ssl_module.SSLSocket)
