"""The asyncio SMTP client: the same flows as :class:`~smtpmail.Client`, awaited.

Only the trampoline that performs IO steps differs from the blocking client
(:mod:`smtpmail.transport.drive`); tests check the two expose the same methods.
It resumes the flow through a pump (:mod:`smtpmail.transport.aio_pump`) that
carries out in the event loop's callbacks the steps the stream can do there,
so the task wakes once per operation rather than once per reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

from smtpmail._log import Logger
from smtpmail.errors import LocalProtocolError
from smtpmail.message.content import MessageInput
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.session import Session
from smtpmail.transport import drive
from smtpmail.transport._base import BaseClient, Stage, quits_on_leaving
from smtpmail.transport.aio_pump import Finished, pump
from smtpmail.transport.aio_stream import as_async_stream, open_tcp
from smtpmail.transport.drive import CHUNK, CONNECT, HANDSHAKE, POLL, READ, WRITE, Steps

TYPE_CHECKING = False

if TYPE_CHECKING:
    from smtpmail.protocol.proxy import Proxy
    from smtpmail.transport.stream import AsyncConnector, AsyncNetworkStream

__all__ = ["AsyncClient"]

T = TypeVar("T")

log = Logger("smtpmail.transport")


class AsyncClient(BaseClient):
    """An asyncio SMTP client connection; the twin of :class:`~smtpmail.Client`.

    ::

        async with AsyncClient("mail.example.org", 25) as client:
            result = await client.send(message, sender="a@example.org", recipients=["b@x.net"])

    One connection carries one dialogue, so operations on one client are
    serialised: several tasks may share it (``asyncio.gather(client.send(a),
    client.send(b))``) and each operation waits for the one before it to
    finish. For messages in parallel, use one client per connection.
    Its connection belongs to the event loop it was made in: once that loop
    has closed, the next operation (in another loop) connects again; while
    that loop is open, another loop's operation raises LocalProtocolError.
    :meth:`close` does not wait: it drops the connection under whatever runs.
    ``connect`` (an :class:`~smtpmail.transport.stream.AsyncConnector`) and
    ``stream``: as for :class:`~smtpmail.Client`.
    """

    _stream: AsyncNetworkStream | None
    _lock: asyncio.Lock | None = None
    #: The event loop the lock and the connection belong to.
    _loop: asyncio.AbstractEventLoop | None = None

    def _serial(self) -> asyncio.Lock:
        """The lock every public operation holds: one dialogue at a time."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._move_to(loop)
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve operations in ``loop`` from now on. A connection made in a loop
        that has closed since (``asyncio.run`` returned with the client
        connected) went with it: its transport and its deadlines' timer lived
        there, and an operation on it waited forever; it is closed, and the
        operation connects again. One whose loop is still open is that loop's."""
        old = self._loop
        if old is not None and not old.is_closed():
            if self._stream is not None or (self._lock is not None and self._lock.locked()):
                raise LocalProtocolError(
                    f"this AsyncClient ({self.host}:{self.port}) is in use in another event "
                    "loop, still open; use a client per event loop"
                )
        elif self._stream is not None:
            log.info("the event loop of the connection to %s closed; reconnecting", self.host)
            self.close()
        self._loop, self._lock = loop, None

    def _proxy_connector(self, proxy: Proxy) -> AsyncConnector:
        from smtpmail.transport.proxy import async_proxy_connector

        return async_proxy_connector(proxy)

    async def _drive(self, steps: Steps[T]) -> T:
        """Perform ``steps``' IO on the stream; the twin of ``Client._drive``."""
        async with self._serial():
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    op, arg = await pump(self, steps, value, error)
                except Finished as stop:
                    return stop.value  # type: ignore[no-any-return]
                value = error = None
                try:
                    stream = self._stream
                    if op == CONNECT:
                        connector: AsyncConnector = self._connector or open_tcp
                        given = self._given_stream()
                        opened = given or await connector(self.host, self.port, **self._where())
                        self._stream = await as_async_stream(opened)
                    elif stream is None:  # close() was called under a running operation
                        raise ConnectionAbortedError("the connection was closed")
                    elif op == READ:
                        value = await stream.read(CHUNK, arg)
                    elif op == WRITE:
                        await stream.write(arg, self.timeouts.command)
                    elif op == POLL:
                        value = await stream.read_arrived(CHUNK)
                    else:
                        assert op == HANDSHAKE
                        value = await stream.start_tls(
                            self._context(),
                            self.server_hostname,
                            self.timeouts.connect,
                            self.tls_options,
                        )
                except BaseException as exc:  # thrown back in where the step was asked for
                    error = exc

    # -- connection ----------------------------------------------------------

    async def connect(self) -> Reply:
        """Connect, read the greeting, say EHLO; return the greeting."""
        greeting = await self._drive(drive.connecting(self))
        assert greeting is not None
        return greeting

    async def rehearse(
        self,
        until: Stage | str,
        message: MessageInput | None = None,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
    ) -> None:
        """Run the dialogue up to ``until``, then QUIT; see :meth:`smtpmail.Client.rehearse`."""
        stage, item = self._rehearsal_item(until, message, sender, recipients, envelope)
        await self._drive(drive.rehearsing(self, stage, item))

    async def quit(self) -> Reply | None:
        """Say QUIT and close; None when the connection was already gone."""
        return await self._drive(drive.quitting(self))

    async def __aenter__(self) -> AsyncClient:
        await self._drive(drive.entering(self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if quits_on_leaving(self, exc):
            await self.quit()
        else:
            self.close()

    # -- commands ------------------------------------------------------------

    async def send(
        self,
        message: MessageInput,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
        keep_bcc: bool = False,
        then_quit: bool = False,
    ) -> SendResult:
        """Send one message; see :meth:`smtpmail.Client.send`."""
        item = self._items(message, sender, recipients, envelope, keep_bcc)
        (result,) = await self._drive(drive.sending(self, [item], False, [], then_quit))
        return result

    async def send_many(
        self,
        items: Iterable[tuple[Envelope, MessageInput]],
        *,
        results: list[SendResult] | None = None,
        keep_bcc: bool = False,
    ) -> list[SendResult]:
        """Send each (envelope, message) on one connection; see ``Client.send_many``."""
        return await self._drive(
            drive.sending(
                self, self._pairs(items, keep_bcc), True, results if results is not None else []
            )
        )

    async def noop(self) -> Reply:
        return await self._drive(drive.ensured(self, Session.noop))

    async def rset(self) -> Reply:
        return await self._drive(drive.ensured(self, Session.rset))

    async def vrfy(self, address: str) -> Reply:
        return await self._drive(drive.ensured(self, lambda session: session.vrfy(address)))
