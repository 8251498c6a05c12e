"""The asyncio SMTP client: the same flows as :class:`~smtpmail.Client`, awaited.

Only connecting and the IO loop differ from the blocking client; keep the two
files parallel (tests check that they expose the same methods).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

from smtpmail._log import Logger
from smtpmail.errors import ConnectionLost, LocalProtocolError, SMTPError, TLSError
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

__all__ = ["AsyncClient"]

log = Logger("smtpmail.transport")  # logging itself is imported when needed (_log)
T = TypeVar("T")

_DRAIN_ABOVE = 256 * 1024


class AsyncClient(BaseClient):
    """An asyncio SMTP client connection; the twin of :class:`~smtpmail.Client`.

    ::

        async with AsyncClient("mail.example.org", 25) as client:
            result = await client.send(message, sender="a@example.org", recipients=["b@x.net"])

    One connection carries one dialogue, so operations on one client are
    serialised: several tasks may share it (``asyncio.gather(client.send(a),
    client.send(b))``) and each operation waits for the one before it to
    finish. For messages in parallel, use one client per connection.
    :meth:`close` does not wait: it drops the connection under whatever runs.
    """

    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _last_io = 0.0
    _lock: asyncio.Lock | None = None

    def _serial(self) -> asyncio.Lock:
        """The lock every public operation holds: one dialogue at a time."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # -- connection ----------------------------------------------------------

    async def connect(self) -> Reply:
        """Connect, read the greeting, say EHLO; return the greeting."""
        async with self._serial():
            greeting = await self._connect()
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
        async with self._serial():
            await self._connect(stage)
            if stage is Stage.CONNECT:
                self.close()
                return
            try:
                await self._run(self._rehearsal(stage, item))
            except BaseException as exc:
                if connection_survives(exc):
                    await self._quit()
                else:
                    self.close()
                raise
            await self._quit()

    async def _connect(self, until: Stage = Stage.AUTH) -> Reply | None:
        if self._connected:
            raise LocalProtocolError("already connected")
        self._new_session()
        try:
            async with asyncio.timeout(self.timeouts.connect):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    family=self.family,
                    local_addr=self.source_address,
                    limit=2**20,
                )
        except OSError as exc:  # (TimeoutError is one)
            raise self._connect_error(exc) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = reader, writer
        self._connected = True
        self._peer = writer.get_extra_info("peername")
        if self.transcript is not None and self._peer:
            self.transcript("info", f"connected to {self._peer[0]} port {self._peer[1]}")
        try:
            if self.tls_mode is TLSMode.IMPLICIT:
                await self._start_tls()
            if until is Stage.CONNECT:
                return None
            sock_name = writer.get_extra_info("sockname")
            return await self._run(self._establish(sock_name, until))
        except BaseException:
            self.close()
            raise

    async def _start_tls(self) -> None:
        """The TLS handshake on the open connection (implicit TLS or after STARTTLS)."""
        writer = self._writer
        assert writer is not None
        name = self.server_hostname
        try:
            await writer.start_tls(
                self._context(),
                server_hostname=name,
                ssl_handshake_timeout=self.timeouts.connect,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.close()
            raise handshake_error(exc, f"{self.host}:{self.port}") from exc
        ssl_object = writer.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            self.close()
            raise TLSError(f"TLS handshake with {self.host}:{self.port} did not complete")
        self._tls_info = check_peer(ssl_object, self.tls_options, name)
        log.info("TLS established with %s: %s", self.host, self._tls_info)
        if self.transcript is not None:
            self.transcript("info", f"TLS: {self._tls_info}")

    def close(self) -> None:
        """Close the connection without QUIT."""
        self._connected = False
        writer, self._writer = self._writer, None
        self._reader = None
        if writer is not None:
            writer.close()

    async def quit(self) -> Reply | None:
        """Say QUIT and close; None when the connection was already gone."""
        async with self._serial():
            return await self._quit()

    async def _quit(self) -> Reply | None:
        if not self._connected:
            self.close()
            return None
        try:
            return await self._run(self._session.quit())
        except SMTPError:
            return None
        finally:
            self.close()

    async def __aenter__(self) -> AsyncClient:
        async with self._serial():
            if not self._connected:
                await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or connection_survives(exc):
            await self.quit()
        else:
            self.close()

    async def _ensure_connected(self) -> None:
        # One cheap poll per operation: a server that dropped an idle connection
        # (or said 421 and left) costs a reconnect, not a failed transaction.
        if self._connected:
            # Let the loop deliver what already arrived: one turn for the selector
            # to see the socket readable, one for the read callback to fill the
            # reader (a single turn runs this task before that callback: a race).
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        if self._connected and self._peer_closed():
            log.info("the server closed the idle connection; reconnecting")
            self.close()
        if not self._connected:
            await self._connect()

    def _peer_closed(self) -> bool:
        reader = self._reader
        if reader is None:
            return True
        # EOF, or a parting 421; other unsolicited bytes are dropped before the
        # next command, as the blocking client does.
        buffered = bytes(getattr(reader, "_buffer", b""))
        return reader.at_eof() or buffered.startswith(b"421")

    # -- commands ------------------------------------------------------------

    async def send(
        self,
        message: MessageInput,
        sender: str | None = None,
        recipients: Iterable[str] | str | None = None,
        *,
        envelope: Envelope | None = None,
        keep_bcc: bool = False,
    ) -> SendResult:
        """Send one message; see :meth:`smtpmail.Client.send`."""
        item = self._items(message, sender, recipients, envelope, keep_bcc)
        async with self._serial():
            await self._ensure_connected()
            results: list[SendResult] = []
            flow = self._session.transactions([item], keep_errors=False, results=results)
            try:
                (result,) = self._stamp(await self._run(flow))
            except SMTPError as exc:
                exc.results = results  # recipients over a limit go in several transactions
                raise
        return result

    async def send_many(
        self,
        items: Iterable[tuple[Envelope, MessageInput]],
        *,
        results: list[SendResult] | None = None,
        keep_bcc: bool = False,
    ) -> list[SendResult]:
        """Send each (envelope, message) on one connection; see ``Client.send_many``."""
        if results is None:
            results = []
        async with self._serial():
            await self._ensure_connected()
            flow = self._session.transactions(
                ((env, self._content(msg, keep_bcc)) for env, msg in items),
                keep_errors=True,
                results=results,
            )
            try:
                return self._stamp(await self._run(flow))
            except SMTPError as exc:
                exc.results = results
                raise

    async def noop(self) -> Reply:
        async with self._serial():
            await self._ensure_connected()
            return await self._run(self._session.noop())

    async def rset(self) -> Reply:
        async with self._serial():
            await self._ensure_connected()
            return await self._run(self._session.rset())

    async def vrfy(self, address: str) -> Reply:
        async with self._serial():
            await self._ensure_connected()
            return await self._run(self._session.vrfy(address))

    # -- the IO loop -----------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise LocalProtocolError("not connected")
        result: list[Reply] | None = None
        try:
            while True:
                action = flow.send(result)
                if type(action) is StartTLS:
                    self._before_handshake(len(getattr(reader, "_buffer", b"")))
                    await self._start_tls()
                    result = None
                elif type(action) is Send:
                    if action.no_reply_pending:
                        await self._poll_unsolicited(reader)
                    if action.transcript_lines or action.content_octets:
                        self._note_send(action)
                    writer.write(action.data)
                    if writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                        async with asyncio.timeout(self.timeouts.command):
                            await writer.drain()
                    result = None
                else:
                    assert isinstance(action, Receive)
                    result = await self._read(reader, action)
        except StopIteration as stop:
            self._last_io = time.monotonic()
            return stop.value  # type: ignore[no-any-return]
        except HookFailed as failed:
            self.close()
            raise failed.__cause__ from None  # type: ignore[misc]
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.host}:{self.port} broke: {exc}") from exc
        except BaseException as exc:
            if not connection_survives(exc):
                self.close()
            raise
        finally:
            flow.close()

    async def _poll_unsolicited(self, reader: asyncio.StreamReader) -> None:
        """Before a command that expects the next reply, drop whatever already arrived."""
        await asyncio.sleep(0)  # let the loop hand over bytes already on the socket
        if getattr(reader, "_buffer", b""):
            self._parser.feed(await reader.read(65536))  # returns at once: data is there
        elif reader.at_eof():
            self.close()
            raise ConnectionLost(f"the server at {self.host}:{self.port} closed the connection")
        if self._parser.buffered:
            self._unsolicited()

    async def _read(self, reader: asyncio.StreamReader, action: Receive) -> list[Reply]:
        replies: list[Reply] = []
        parser = self._parser
        timeout = self.timeouts.for_kind(action.timeout)
        while len(replies) < action.count:
            reply = self._take_reply(action)
            if reply is not None:
                replies.append(reply)
                continue
            # One deadline for each whole reply, however it trickles in.
            try:
                async with asyncio.timeout(timeout):
                    while reply is None:
                        data = await reader.read(65536)
                        if not data:
                            err = ConnectionLost(
                                f"the server closed the connection before replying to "
                                f"{action.label}"
                            )
                            _mark_possibly_delivered(err, action)
                            raise err
                        parser.feed(data)
                        reply = self._take_reply(action)
            except TimeoutError:
                raise self._timeout_error(action) from None
            except OSError as exc:
                err = ConnectionLost(f"connection lost waiting for the reply to {action.label}")
                _mark_possibly_delivered(err, action)
                raise err from exc
            replies.append(reply)
        return replies
