"""The blocking SMTP client: drives :mod:`smtpmail.protocol` flows over a
:class:`~smtpmail.transport.stream.NetworkStream` (see :mod:`smtpmail.transport.drive`)."""

from __future__ import annotations

import _thread  # threading's C core: a lock without threading's start-up time
from collections.abc import Iterable
from types import TracebackType

from smtpmail.message.content import MessageInput
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.session import Session
from smtpmail.transport import drive
from smtpmail.transport._base import BaseClient, Stage, quits_on_leaving
from smtpmail.transport.drive import CHUNK, CONNECT, HANDSHAKE, POLL, READ, WRITE, Steps
from smtpmail.transport.stream import as_stream, connect_tcp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, TypeVar

    from smtpmail.protocol.proxy import Proxy
    from smtpmail.transport.stream import Connector, NetworkStream

    T = TypeVar("T")

__all__ = ["Client"]


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
    connection. :meth:`close` does not wait: called from another thread, it
    drops the connection under the operation that runs there, which raises
    ConnectionLost.

    ``connect``: a :class:`~smtpmail.transport.stream.Connector` that opens
    each connection (a proxy's, say) instead of a direct TCP connection;
    ``stream``: a connected socket or stream to use (once: the client cannot
    reconnect it). Other arguments: see :class:`~smtpmail.transport._base.BaseClient`.
    """

    _stream: NetworkStream | None
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

    def _proxy_connector(self, proxy: Proxy) -> Connector:
        from smtpmail.transport.proxy import proxy_connector  # only with a proxy (start-up time)

        return proxy_connector(proxy)

    def _drive(self, steps: Steps[T]) -> T:
        """Perform ``steps``' IO on the stream; the twin of ``AsyncClient._drive``."""
        with self._serial():
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    op, arg = steps.send(value) if error is None else steps.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                value = error = None
                try:
                    stream = self._stream
                    if op == CONNECT:
                        connector: Connector = self._connector or connect_tcp
                        given = self._given_stream()
                        opened = given or connector(self.host, self.port, **self._where())
                        self._stream = as_stream(opened)
                    elif stream is None:  # close() was called under a running operation
                        raise ConnectionAbortedError("the connection was closed")
                    elif op == READ:
                        value = stream.read(CHUNK, arg)
                    elif op == WRITE:
                        stream.write(arg, self.timeouts.command)
                    elif op == POLL:
                        value = stream.read_arrived(CHUNK)
                    else:
                        assert op == HANDSHAKE
                        value = stream.start_tls(
                            self._context(),
                            self.server_hostname,
                            self.timeouts.connect,
                            self.tls_options,
                        )
                except BaseException as exc:  # thrown back in where the step was asked for
                    error = exc

    # -- connection ----------------------------------------------------------

    def connect(self) -> Reply:
        """Connect, read the greeting, say EHLO; return the greeting."""
        greeting = self._drive(drive.connecting(self))
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
        self._drive(drive.rehearsing(self, stage, item))

    def quit(self) -> Reply | None:
        """Say QUIT and close; None when the connection was already gone."""
        return self._drive(drive.quitting(self))

    def __enter__(self) -> Client:
        self._drive(drive.entering(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if quits_on_leaving(self, exc):
            self.quit()
        else:
            self.close()

    # -- commands ------------------------------------------------------------

    def send(
        self,
        message: MessageInput,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
        keep_bcc: bool = False,
        then_quit: bool = False,
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
        ``then_quit``: the connection's last message: QUIT follows it, in one
        write with the end of data when the server pipelines (RFC 2920 §3.1),
        which saves a round trip; then the connection is closed.
        """
        item = self._items(message, sender, recipients, envelope, keep_bcc)
        (result,) = self._drive(drive.sending(self, [item], False, [], then_quit))
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
        return self._drive(
            drive.sending(
                self, self._pairs(items, keep_bcc), True, results if results is not None else []
            )
        )

    def noop(self) -> Reply:
        return self._drive(drive.ensured(self, Session.noop))

    def rset(self) -> Reply:
        return self._drive(drive.ensured(self, Session.rset))

    def vrfy(self, address: str) -> Reply:
        return self._drive(drive.ensured(self, lambda session: session.vrfy(address)))


#: Held only while a client creates its lock (once per client).
_CREATING = _thread.allocate_lock()
