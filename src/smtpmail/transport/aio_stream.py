"""The asyncio network stream: an :class:`asyncio.BufferedProtocol` that only buffers bytes.

It keeps its own buffer (no ``StreamReader``): the event loop receives into
a 64 KiB buffer the streams of its thread share (``get_buffer``; a plain ``Protocol`` gets a
fresh ``bytes`` of up to 256 KiB per read, which the allocator maps and
unmaps each time: three system calls per read, issue 19), ``buffer_updated``
appends what came, ``read`` takes, and a read that finds data there returns
without waiting.
Deadlines cost no timer per read: one watchdog timer per stream stands at
the earliest deadline and, when it fires under a later one (the usual case:
each read's deadline is later than the last), moves to it. The SMTP
deadlines are minutes long and replies come in milliseconds, so it fires
about once per deadline's length instead of being made and cancelled for
every reply (``asyncio.timeout()`` per reply was most of AsyncClient's
overhead, issue 19). Besides the awaited ``read`` and ``write``, ``listen``
and the ``*_now`` methods let AsyncClient's pump (:mod:`smtpmail.transport.aio_pump`)
go on with its flow in the loop's callbacks. Parsing stays in
:mod:`smtpmail.protocol`. The contract is :mod:`smtpmail.transport.stream`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
import threading
from typing import Any, cast

from smtpmail.errors import TLSError, _caused
from smtpmail.transport.tls import TLSInfo, TLSOptions, check_peer

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    from smtpmail.transport.stream import AsyncNetworkStream

    #: Called once by the stream: with None when the loop called back, else the error.
    Listener: TypeAlias = Callable[[BaseException | None], None]

__all__ = ["AsyncSocketStream", "open_tcp", "timed_out"]

#: Above this many unsent octets, ``write`` waits for the peer to take some:
#: none, so that a write is done once the kernel holds all of it, as a
#: blocking socket's is. asyncio's default (64 KiB, here once 256 KiB) left
#: a message's final dot in the transport's buffer, counted as sent: the
#: client then waited for its reply (the data timeout, 10 minutes) instead of
#: timing out the write, and called the message possibly delivered although
#: the dot never left the machine. Nothing is lost in speed: the transport
#: writes at once to the socket, and the kernel's send buffer keeps the
#: connection busy while the next piece of content is prepared.
_HIGH_WATER = 0
#: The size of the buffer the event loop receives into.
_RECEIVE = 65536

#: The receive buffer, one per thread for every stream of its event loop: the
#: loop (and asyncio's TLS layer) fills it and calls ``buffer_updated``, which
#: copies the bytes out, before it serves any other protocol. A fresh 64 KiB
#: per connection cost zeroing it: 75,000 instructions per connection, a
#: tenth of what a connection per message spends in Python (issue 19).
_scratch = threading.local()


def timed_out() -> TimeoutError:
    """A wait's deadline passed: worded as the socket module (and so the blocking
    client) words it; asyncio's own TimeoutError has no text, and the errors
    that quote it said "broke: " or "cannot connect to host:port: " and no more."""
    return TimeoutError("timed out")


def _receive_buffer() -> memoryview:
    try:
        buffer: memoryview = _scratch.buffer
    except AttributeError:
        buffer = _scratch.buffer = memoryview(bytearray(_RECEIVE))
    return buffer


class AsyncSocketStream(asyncio.BufferedProtocol):
    """:class:`~smtpmail.transport.stream.AsyncNetworkStream` over an asyncio transport."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._tcp: asyncio.Transport | None = None  # under TLS's, once started
        self._buffer = bytearray()
        self._receiving = _receive_buffer()  # the loop's, between reads
        self._eof = False
        self._error: BaseException | None = None
        self._listener: Listener | None = None  # a read or a write waiting
        self._paused = False
        self._fd = -1  # the socket's, to ask the kernel what arrived (read_arrived)
        self._tls = False  # once started, the kernel's bytes are TLS records
        self._deadline = 0.0  # of the wait under way (loop time)
        self._timer: asyncio.TimerHandle | None = None  # the watchdog, at _timer_at
        self._timer_at = 0.0

    # -- asyncio.Protocol: called by the event loop ----------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not asserted: uvloop's transports are asyncio.Transports in all but class.
        tcp = self._transport = self._tcp = cast("asyncio.Transport", transport)
        tcp.set_write_buffer_limits(high=_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        self._fd = -1 if sock is None else sock.fileno()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receiving

    def buffer_updated(self, nbytes: int) -> None:
        self._buffer += self._receiving[:nbytes]
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport: SMTP never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._salvage()  # (a write failed: asyncio stopped reading)
        self._fd = -1  # closed once this returns: the number may be reused
        self._eof = True
        self._error = exc
        self._paused = False
        self._wake()

    def _salvage(self) -> None:
        """Take the bytes the kernel already holds, without waiting. When a write
        fails, asyncio stops reading at once and closes the socket: the server's
        last replies, sent before it left, would be lost with it, and they still
        decide the commands they answer (:func:`smtpmail.transport.drive._salvage`).
        Not under TLS: there the kernel holds records only the TLS layer reads."""
        if self._fd < 0 or self._tls:
            return
        for _ in range(16):  # (bounded: a flood is not replies)
            try:
                data = os.read(self._fd, _RECEIVE)  # (non-blocking: asyncio's socket)
            except OSError:  # nothing more (BlockingIOError), or the reset after the bytes
                return
            if not data:
                return
            self._buffer += data

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        listener = self._listener
        if listener is not None:
            self._listener = None
            listener(None)

    def listen(self, timeout: float, listener: Listener) -> float:
        """Call ``listener(None)`` once when the loop calls back (data, EOF, room
        to write), or ``listener(timed_out())`` when ``timeout`` passes first;
        return that deadline (loop time).

        One listener at a time; no Future, no task: a client's pump
        (:mod:`smtpmail.transport.aio`) goes on with its flow right here, so
        the task wakes once per operation, not once per reply.
        """
        self._deadline = deadline = self._loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)
        self._listener = listener
        return deadline

    def unlisten(self) -> None:
        self._listener = None

    async def _wait(self, timeout: float) -> None:
        """Until the loop calls back (data, EOF, room to write), or TimeoutError."""
        waiter: asyncio.Future[None] = self._loop.create_future()

        def wake(error: BaseException | None) -> None:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

        self.listen(timeout, wake)
        try:
            await waiter
        finally:
            if self._listener is wake:  # (cancelled)
                self._listener = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        """The watchdog: expire the wait under way if its deadline is this one."""
        self._timer = None
        listener = self._listener
        if listener is None:
            return  # nobody waits: the next wait arms it again
        if self._deadline <= self._timer_at:
            self._listener = None
            listener(timed_out())
        else:
            self._arm(self._deadline)

    # -- without waiting: what a pump does in the loop's callback --------------

    def take_now(self, max_bytes: int) -> bytes | None:
        """What ``read`` would return now (bytes, ``b""`` at the end, or its
        error); None when it would wait."""
        if not self._buffer and not self._eof:
            return None
        return self._take(max_bytes)

    def kernel_holds_more(self) -> bool:
        """Whether ``read_arrived`` must wait a loop turn: nothing is buffered but
        the kernel holds bytes the loop has not handed over yet."""
        if self._buffer or self._eof or self._fd < 0:
            return False
        return bool(select.select([self._fd], [], [], 0)[0])

    def write_now(self, data: bytes | memoryview) -> bool:
        """Hand ``data`` to the transport; False when the caller must then wait
        (``listen``) until the peer takes some (see :meth:`write_done`)."""
        transport = self._transport
        assert transport is not None
        if not transport.is_closing():  # (a closing transport drops the data)
            transport.write(data)
        return self.write_done()

    def write_done(self) -> bool:
        """Whether what was written is on its way: False while the transport still
        holds some of it (the kernel's buffer is full). Raises ``OSError`` when
        the connection was lost (or the write failed): asyncio dropped the
        data, as a blocking write would have raised."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._salvage()
            error = self._error
            if isinstance(error, OSError):
                raise error
            raise BrokenPipeError("the connection was lost while writing")
        return not self._paused

    # -- the stream ------------------------------------------------------------

    async def read(self, max_bytes: int, timeout: float) -> bytes:
        if not self._buffer and not self._eof:
            deadline = self._loop.time() + timeout
            while not self._buffer and not self._eof:  # (room to write wakes us too)
                await self._wait(deadline - self._loop.time())
        return self._take(max_bytes)

    async def read_arrived(self, max_bytes: int) -> bytes | None:
        if not self._buffer and not self._eof:
            if self._fd < 0 or not select.select([self._fd], [], [], 0)[0]:
                return None
            # The kernel holds bytes the loop has not handed over yet (the caller
            # kept the loop busy): one turn delivers them. A zero timer fires
            # after that turn's read callbacks, so it bounds the wait when the
            # bytes were only a TLS session ticket, never data.
            try:
                await self._wait(0)
            except TimeoutError:
                return None
        return self._take(max_bytes)

    def _take(self, max_bytes: int) -> bytes:
        buffer = self._buffer
        if buffer:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
            return data
        if self._error is not None:
            raise self._error
        return b""

    async def write(self, data: bytes | memoryview, timeout: float) -> None:
        if not self.write_now(data):
            while not self.write_done():
                await self._wait(timeout)

    async def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        timeout: float,
        options: TLSOptions,
    ) -> TLSInfo:
        transport = self._transport
        assert transport is not None
        started = self._loop.time()
        try:
            tls = await self._loop.start_tls(
                transport,
                self,
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except ConnectionAbortedError as exc:
            # asyncio says a handshake timeout so ("SSL handshake is taking longer
            # than..."): the same TimeoutError as the blocking client's.
            if self._loop.time() - started >= timeout:
                raise _caused(TimeoutError("timed out"), exc)
            raise
        if tls is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        # The TLS layer's own buffer: it pauses at ``size >= high`` (the socket
        # transport at ``size > high``), so 0 would pause it with nothing to
        # drain, never to resume. 1: paused while it holds anything. Its records
        # then wait in the socket transport, which resumes it once the kernel
        # took them all; the last write's may still wait there when it is done.
        tls.set_write_buffer_limits(high=_HIGH_WATER + 1)
        self._transport = tls
        self._tls = True
        ssl_object = tls.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            raise TLSError(f"TLS handshake with {server_hostname} did not complete")
        return check_peer(ssl_object, options, server_hostname)

    def get_extra_info(self, name: str) -> Any:
        transport = self._transport
        return None if transport is None else transport.get_extra_info(name)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if transport is None:
            return
        tcp = self._tcp
        if self._loop.is_closed():
            # The loop is gone (asyncio.run returned with the client connected).
            # asyncio's transport can no longer close (that takes a loop turn):
            # the connection ends at its socket, and the transport, collected,
            # frees it. uvloop closed its transports with the loop, and its
            # socket refuses shutdown (TypeError).
            sock = (tcp or transport).get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError, TypeError):
                    sock.shutdown(socket.SHUT_RDWR)
            return
        if transport.get_write_buffer_size() or (tcp is not None and tcp.get_write_buffer_size()):
            # Bytes not yet sent belong to an operation given up (cancelled, timed
            # out, failed): a graceful close would first write them, waiting with
            # no deadline for a server that may never read again, and hold the
            # socket meanwhile. Dropped: close() returns at once in both clients.
            transport.abort()
        else:
            transport.close()


async def open_tcp(
    host: str,
    port: int,
    *,
    timeout: float,
    source_address: tuple[str, int] | None = None,
    family: int = 0,
) -> AsyncSocketStream:
    """The default :class:`~smtpmail.transport.stream.AsyncConnector` (asyncio
    sets TCP_NODELAY on every TCP transport it makes)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, stream = await loop.create_connection(
                AsyncSocketStream, host, port, family=family, local_addr=source_address
            )
    except TimeoutError as exc:
        raise _caused(timed_out(), exc)
    return stream


async def as_async_stream(opened: AsyncNetworkStream | socket.socket) -> AsyncNetworkStream:
    """What a connector returned, as a stream (a connected socket joins the loop)."""
    if not isinstance(opened, socket.socket):
        return opened
    _, stream = await asyncio.get_running_loop().create_connection(AsyncSocketStream, sock=opened)
    return stream
