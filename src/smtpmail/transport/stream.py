"""The network stream: the one seam between the clients and the network.

Every connection the product makes goes through a stream (as httpcore's
``NetworkBackend``/``NetworkStream`` and lettre's ``NetworkStream``). A
connector opens one; the clients only read, write, start TLS and close it.
Proxies (SOCKS, HTTP CONNECT), pre-connected sockets and in-memory test
streams plug in here. Nothing outside :mod:`smtpmail.transport` opens a
socket (tests/test_architecture.py checks it).

The contract, for the blocking :class:`NetworkStream` (the asyncio
:class:`AsyncNetworkStream` is the same with ``await`` on ``read``,
``write`` and ``start_tls``):

``read(max_bytes, timeout)``
    Up to ``max_bytes`` octets, waiting at most ``timeout`` seconds for the
    first; ``b""`` once the peer closed its side. Raises ``TimeoutError``
    when nothing came in time, another ``OSError`` when the stream broke.
``read_arrived(max_bytes)``
    The bytes that already arrived (buffered here, in the TLS layer or the
    kernel) without waiting for more: ``None`` when there are none, ``b""``
    at end of stream. (The asyncio stream awaits it: bytes in the kernel
    reach it through one turn of the event loop.)
``write(data, timeout)``
    Send all of ``data`` (an SMTP client batches a whole pipelined group in
    one call, so implementations must not delay small writes: TCP_NODELAY),
    waiting at most ``timeout`` seconds for room to send it. ``OSError``
    when the stream broke.
``start_tls(context, server_hostname, timeout, options)``
    The TLS handshake on the stream as it is (STARTTLS, RFC 3207, or
    implicit TLS, RFC 8314), within ``timeout`` seconds, then the one
    post-handshake check, :func:`smtpmail.transport.tls.check_peer`, whose
    :class:`~smtpmail.transport.tls.TLSInfo` it returns. From then on the
    stream carries TLS. A failed handshake raises ``OSError`` (``ssl.SSLError``,
    ``TimeoutError``); a failed check raises ``TLSError``.
``get_extra_info(name)``
    ``"peername"``, ``"sockname"`` (socket addresses), ``"ssl_object"``
    (after ``start_tls``), ``"socket"``; None when unknown.
``close()``
    Close without waiting (also in the asyncio stream); idempotent.

A connector (:class:`Connector`, :class:`AsyncConnector`) opens a stream to
``(host, port)`` within ``timeout`` seconds, from ``source_address`` and
over ``family`` (``AF_INET``/``AF_INET6``; 0: either) when they are given,
raising ``OSError`` (``socket.gaierror`` for an unknown name) when it
cannot. :func:`connect_tcp` is the default; a client's ``connect=`` takes
another (a proxy's), ``stream=`` one pre-connected socket or stream.

The four interfaces are :class:`typing.Protocol` classes that exist for type
checkers only (import them under ``if TYPE_CHECKING:``): a plain send never
imports :mod:`typing` (start-up time), and a stream need not inherit anything.
"""

from __future__ import annotations

import _socket  # socket's C core: socket.py's start-up (its enums, selectors) is not needed
import sys
import time

from smtpmail.transport.tls import check_peer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Awaitable
    from typing import Any, Protocol, TypeGuard

    from smtpmail.transport.tls import TLSInfo, TLSOptions

    class NetworkStream(Protocol):
        """A blocking byte stream to the server (see the module docstring)."""

        def read(self, max_bytes: int, timeout: float) -> bytes: ...
        def read_arrived(self, max_bytes: int) -> bytes | None: ...
        def write(self, data: bytes | memoryview, timeout: float) -> None: ...
        def start_tls(
            self,
            context: ssl.SSLContext,
            server_hostname: str,
            timeout: float,
            options: TLSOptions,
        ) -> TLSInfo: ...
        def get_extra_info(self, name: str) -> Any: ...
        def close(self) -> None: ...

    class AsyncNetworkStream(Protocol):
        """An asyncio byte stream to the server (see the module docstring)."""

        async def read(self, max_bytes: int, timeout: float) -> bytes: ...
        async def read_arrived(self, max_bytes: int) -> bytes | None: ...
        async def write(self, data: bytes | memoryview, timeout: float) -> None: ...
        async def start_tls(
            self,
            context: ssl.SSLContext,
            server_hostname: str,
            timeout: float,
            options: TLSOptions,
        ) -> TLSInfo: ...
        def get_extra_info(self, name: str) -> Any: ...
        def close(self) -> None: ...

    class Connector(Protocol):
        """Opens a :class:`NetworkStream` (or a connected socket) to host:port."""

        def __call__(
            self,
            host: str,
            port: int,
            *,
            timeout: float,
            source_address: tuple[str, int] | None,
            family: int,
        ) -> NetworkStream | socket.socket: ...

    class AsyncConnector(Protocol):
        """Opens an :class:`AsyncNetworkStream` (or a connected socket) to host:port."""

        def __call__(
            self,
            host: str,
            port: int,
            *,
            timeout: float,
            source_address: tuple[str, int] | None,
            family: int,
        ) -> Awaitable[AsyncNetworkStream | socket.socket]: ...


__all__ = ["SocketStream", "as_stream", "connect_tcp"]


class SocketStream:
    """:class:`NetworkStream` over a connected TCP socket (TLS once started).

    The socket stays in blocking mode and waits with the kernel's timeouts
    (``SO_RCVTIMEO``, ``SO_SNDTIMEO``): a Python socket timeout would cost a
    ``poll`` before every ``recv`` and ``send`` (issue 19: half the system
    calls of a lock-step dialogue). A kernel timeout is changed only when a
    wait must end sooner than it allows; a wait it ends early (a longer
    deadline than the one it was set for) goes on with the time left.

    Once TLS is started the socket waits with Python's timeout instead:
    CPython's ssl module retries a TLS read that the kernel's timeout ended,
    so only its own timeout ends one.
    """

    __slots__ = ("_sock", "_timeout", "_waits")

    def __init__(self, sock: _socket.socket) -> None:
        if sock.family in (_socket.AF_INET, _socket.AF_INET6):
            # Each write is a whole command group: send it now (RFC 2920 §3.1).
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._sock: _socket.socket | ssl.SSLSocket = sock
        #: The kernel timeouts in force, receive and send (0: none, wait forever).
        self._waits = [0.0, 0.0]
        #: Python's timeout, once TLS started (-1: not set yet); None before.
        self._timeout: float | None = -1.0 if _is_tls(sock) else None
        if self._timeout is None:
            sock.settimeout(None)  # (blocking; the kernel's timeouts bound each wait)

    def _tls_wait_at_most(self, timeout: float) -> None:
        # settimeout costs a system call; most operations reuse the last deadline.
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout

    def _limit(self, which: int, timeout: float) -> None:
        """Let the kernel wait at most ``timeout`` seconds (which: 0 receive, 1 send)."""
        # 1 µs at least: a zero timeval means "no timeout" to the kernel.
        seconds = max(timeout, 1e-6)
        option = _socket.SO_SNDTIMEO if which else _socket.SO_RCVTIMEO
        whole = int(seconds)
        self._sock.setsockopt(
            _socket.SOL_SOCKET, option, _timeval(whole, int((seconds - whole) * 1e6))
        )
        self._waits[which] = seconds

    def read(self, max_bytes: int, timeout: float) -> bytes:
        sock = self._sock
        if self._timeout is not None:
            self._tls_wait_at_most(timeout)
            return sock.recv(max_bytes)
        wait = self._waits[0]
        if not wait or timeout < wait:
            self._limit(0, timeout)
        deadline = 0.0
        while True:
            try:
                return sock.recv(max_bytes)
            except OSError as exc:
                if not _timed_out(exc):
                    raise
            # The kernel's timeout ended the wait: the deadline's, or an earlier one.
            now = time.monotonic()
            if not deadline:
                deadline = now - self._waits[0] + timeout
            if now >= deadline:
                raise TimeoutError("timed out")
            self._limit(0, deadline - now)

    def read_arrived(self, max_bytes: int) -> bytes | None:
        sock = self._sock
        if self._timeout is None:  # (no TLS: one system call asks the kernel)
            try:
                return sock.recv(max_bytes, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
        assert _is_tls(sock)
        if not sock.pending():
            import select  # (loaded with ssl already: socket imports it)

            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return None
        # Readable may mean only a TLS 1.3 session ticket: never block here.
        self._tls_wait_at_most(0.0)
        try:
            return sock.recv(max_bytes)
        except OSError as exc:
            if _timed_out(exc):
                return None
            raise

    def write(self, data: bytes | memoryview, timeout: float) -> None:
        sock = self._sock
        if self._timeout is not None:
            self._tls_wait_at_most(timeout)
            sock.sendall(data)
            return
        # Our own sendall: a kernel timeout in the middle must not lose count.
        try:
            if self._waits[1]:
                if timeout != self._waits[1]:
                    self._limit(1, timeout)
                sent = sock.send(data)
            else:
                # No send timeout set yet: one is set only when a write must wait.
                # Most connections never wait to write (commands, a small message
                # fit the kernel's buffer), which saves a setsockopt per connection.
                try:
                    sent = sock.send(data, _socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    self._limit(1, timeout)
            if sent < len(data):  # (a big write: the kernel took part of it)
                view = memoryview(data)[sent:]
                while view:
                    view = view[sock.send(view) :]
        except OSError as exc:
            if _timed_out(exc):
                raise TimeoutError("timed out") from None
            raise

    def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        timeout: float,
        options: TLSOptions,
    ) -> TLSInfo:
        self._tls_wait_at_most(timeout)
        # (typeshed asks for a socket.socket; ssl needs only _socket.socket's fd and family)
        sock: socket.socket = self._sock  # type: ignore[assignment]
        wrapped = context.wrap_socket(sock, server_hostname=server_hostname)
        self._sock = wrapped
        return check_peer(wrapped, options, server_hostname)

    def get_extra_info(self, name: str) -> Any:
        sock = self._sock
        try:
            if name == "peername":
                return sock.getpeername()
            if name == "sockname":
                return sock.getsockname()
        except OSError:
            return None
        if name == "socket":
            return self._socket_object()
        if name == "ssl_object":
            return sock if _is_tls(sock) else None
        return None

    def _socket_object(self) -> socket.socket:
        """The socket as a :class:`socket.socket` (what a caller of
        ``get_extra_info("socket")`` expects: ``makefile``, a context manager):
        :func:`connect_tcp` made a bare ``_socket.socket``, rebuilt around its
        descriptor on first request (socket.py loaded only then)."""
        import socket

        sock = self._sock
        if not isinstance(sock, socket.socket):
            sock = self._sock = socket.socket(sock.family, sock.type, sock.proto, sock.detach())
        return sock

    def close(self) -> None:
        sock = self._sock
        # Shut down first: closing alone does not wake a thread blocked reading
        # the socket (Client.close() called while another thread sends), which
        # then waited out its deadline, up to 10 minutes after a final dot.
        try:  # noqa: SIM105 (contextlib is not loaded at start-up)
            sock.shutdown(_socket.SHUT_RDWR)
        except OSError:  # (the peer had gone already)
            pass
        sock.close()


def connect_tcp(
    host: str,
    port: int,
    *,
    timeout: float,
    source_address: tuple[str, int] | None = None,
    family: int = 0,
) -> SocketStream:
    """The default :class:`Connector`: a TCP connection to any address of
    ``host``, or only to its ``family`` addresses, tried in the resolver's order."""
    # An ASCII name goes as bytes: for a str, getaddrinfo loads the idna
    # codec (start-up time) only to return the same ASCII octets.
    name = host.encode("ascii") if host.isascii() else host
    error: OSError | None = None
    # socket.create_connection's loop, on socket's C core (_socket): importing
    # socket.py builds four enums of every constant and loads selectors, math
    # and array, a tenth of a one-message CLI send's CPU time (issue 19).
    for af, kind, proto, _, addr in _socket.getaddrinfo(name, port, family, _socket.SOCK_STREAM):
        sock = None
        try:
            sock = _socket.socket(af, kind, proto)
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(addr)
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if not isinstance(exc, OSError):
                raise  # an interrupt (KeyboardInterrupt, a signal handler's): no socket left
            error = exc  # the next address; the last one's error is raised
            continue
        return SocketStream(sock)
    assert error is not None  # (getaddrinfo returns at least one or raises)
    raise error


def as_stream(opened: NetworkStream | _socket.socket) -> NetworkStream:
    """What a connector returned (a connected socket: any socket.socket), as a stream."""
    return SocketStream(opened) if isinstance(opened, _socket.socket) else opened


#: The octets of a C long: POSIX systems are ILP32 or LP64, where a long is as wide as
#: a pointer (Py_ssize_t): struct.calcsize("l") without loading _struct (start-up time).
_LONG = (sys.maxsize.bit_length() + 1) // 8


def _timeval(seconds: int, microseconds: int) -> bytes:
    """``struct timeval`` (two C longs, native order) for SO_RCVTIMEO / SO_SNDTIMEO."""
    order = sys.byteorder
    return seconds.to_bytes(_LONG, order) + microseconds.to_bytes(_LONG, order)


def _timed_out(exc: OSError) -> bool:
    """Did a blocking call end on the kernel's timeout (EAGAIN, or TLS's want-read/write)?"""
    if isinstance(exc, BlockingIOError):
        return True
    ssl_module = sys.modules.get("ssl")
    return ssl_module is not None and isinstance(
        exc, (ssl_module.SSLWantReadError, ssl_module.SSLWantWriteError)
    )


def _is_tls(sock: object) -> TypeGuard[ssl.SSLSocket]:
    """Is ``sock`` a TLS socket? Asked without importing ssl: until a TLS
    connection was made, ssl is not loaded and no socket can be one."""
    ssl_module = sys.modules.get("ssl")
    return ssl_module is not None and isinstance(sock, ssl_module.SSLSocket)
