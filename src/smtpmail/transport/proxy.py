"""Connectors that reach the server through a proxy: SOCKS 5, SOCKS 4/4A, HTTP CONNECT.

A proxy is one more :class:`~smtpmail.transport.stream.Connector`: it opens
the default TCP stream to the proxy, runs the sans-IO handshake of
:mod:`smtpmail.protocol.proxy` over it, and hands the same stream to the
client, which speaks SMTP (and starts TLS, STARTTLS or implicit) on it as on
a direct connection. The handshake reads no byte past the proxy's answer, so
the server's greeting is the client's to read.

One deadline, the client's connect timeout, bounds the whole of it: the
connection to the proxy, the handshake, and so the proxy's own connection to
the server. ``family`` and ``source_address`` apply to the connection to the
proxy and, for ``socks5``/``socks4`` (which send an address), to the local
lookup of the server's name; with ``socks5h``/``socks4a``/``http`` the proxy
resolves the name (no DNS query leaves this machine for it).

Failures: :class:`~smtpmail.errors.ProxyError` (the proxy is down, broke
off, refused: transient or not, see the class), ``OSError`` from the local
lookup of the server's name (the client reports it as for a direct
connection), :class:`~smtpmail.errors.InvalidArgument` for a destination the
proxy cannot be asked for, before anything is sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from smtpmail.errors import InvalidArgument, ProxyError
from smtpmail.protocol.proxy import Proxy, Tunnel
from smtpmail.transport.stream import connect_tcp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from smtpmail.transport.stream import (
        AsyncConnector,
        AsyncNetworkStream,
        Connector,
        NetworkStream,
    )

__all__ = ["async_proxy_connector", "proxy_connector"]


#: The steps of :func:`_tunnelling`, which each connector's trampoline performs.
LOOKUP, OPEN, WRITE, READ = range(4)


def _tunnelling(
    proxy: Proxy, host: str, port: int, family: int, timeout: float
) -> Generator[tuple[int, Any], Any, None]:
    """What a proxy connector does, written once for both: its IO as steps.

    ``(LOOKUP, (host, port, family))``: the addresses (getaddrinfo's answer);
    ``(OPEN, None)``: the stream to the proxy; ``(WRITE, bytes)``;
    ``(READ, n)``: at most ``n`` bytes. An ``OSError`` of a step is thrown
    back in here, where it becomes the :class:`ProxyError` it means.
    """
    target = host
    if _needs_address(proxy, host):
        target = _first_address((yield (LOOKUP, (host, port, _family(proxy, family)))))
    tunnel = Tunnel(proxy, target, port, name=host)  # a destination it cannot take fails here
    try:
        yield (OPEN, None)
    except OSError as exc:
        raise _unreachable(tunnel, exc) from exc
    try:
        while not tunnel.established:
            out = tunnel.data_to_send()
            if out:
                yield (WRITE, out)
            data = yield (READ, tunnel.max_read())
            if not data:
                tunnel.closed()
            tunnel.receive(data)
    except OSError as exc:  # (TimeoutError is one)
        raise _broken(tunnel, exc, timeout) from exc


def proxy_connector(proxy: Proxy) -> Connector:
    """The :class:`~smtpmail.transport.stream.Connector` for ``proxy``."""

    def connect(
        host: str,
        port: int,
        *,
        timeout: float,
        source_address: tuple[str, int] | None = None,
        family: int = 0,
    ) -> NetworkStream:
        deadline = time.monotonic() + timeout
        steps = _tunnelling(proxy, host, port, family, timeout)
        stream: NetworkStream | None = None
        value: Any = None
        error: OSError | None = None
        try:
            while True:
                try:
                    op, arg = steps.send(value) if error is None else steps.throw(error)
                except StopIteration:
                    assert stream is not None
                    return stream
                value = error = None
                try:
                    if op == LOOKUP:
                        name, number, kind = arg
                        value = socket.getaddrinfo(name, number, kind, socket.SOCK_STREAM)
                    elif op == OPEN:
                        stream = connect_tcp(
                            proxy.host,
                            proxy.port,
                            timeout=_left(deadline),
                            source_address=source_address,
                            family=family,
                        )
                    elif op == WRITE:
                        stream.write(arg, _left(deadline))  # type: ignore[union-attr]
                    else:
                        value = stream.read(arg, _left(deadline))  # type: ignore[union-attr]
                except OSError as exc:
                    error = exc
        except BaseException:
            if stream is not None:
                stream.close()
            raise

    return connect


def async_proxy_connector(proxy: Proxy) -> AsyncConnector:
    """The :class:`~smtpmail.transport.stream.AsyncConnector` for ``proxy``: the
    same steps as :func:`proxy_connector`'s, awaited."""

    async def connect(
        host: str,
        port: int,
        *,
        timeout: float,
        source_address: tuple[str, int] | None = None,
        family: int = 0,
    ) -> AsyncNetworkStream:
        import asyncio

        from smtpmail.transport.aio_stream import open_tcp

        deadline = time.monotonic() + timeout
        steps = _tunnelling(proxy, host, port, family, timeout)
        stream: AsyncNetworkStream | None = None
        value: Any = None
        error: OSError | None = None
        try:
            while True:
                try:
                    op, arg = steps.send(value) if error is None else steps.throw(error)
                except StopIteration:
                    assert stream is not None
                    return stream
                value = error = None
                try:
                    if op == LOOKUP:
                        loop = asyncio.get_running_loop()
                        name, number, kind = arg
                        value = await loop.getaddrinfo(
                            name, number, family=kind, type=socket.SOCK_STREAM
                        )
                    elif op == OPEN:
                        stream = await open_tcp(
                            proxy.host,
                            proxy.port,
                            timeout=_left(deadline),
                            source_address=source_address,
                            family=family,
                        )
                    elif op == WRITE:
                        await stream.write(arg, _left(deadline))  # type: ignore[union-attr]
                    else:
                        value = await stream.read(arg, _left(deadline))  # type: ignore[union-attr]
                except OSError as exc:
                    error = exc
        except BaseException:
            if stream is not None:
                stream.close()
            raise

    return connect


def _needs_address(proxy: Proxy, host: str) -> bool:
    """socks5 and socks4 send an address: a name is looked up here first."""
    if proxy.remote_dns:
        return False
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _family(proxy: Proxy, family: int) -> int:
    """SOCKS 4 carries IPv4 addresses only."""
    if proxy.reaches_ipv6:
        return family
    if family == socket.AF_INET6:
        raise InvalidArgument(f"a SOCKS 4 proxy ({proxy}) cannot reach IPv6 addresses; use socks5")
    return socket.AF_INET


def _first_address(infos: Sequence[tuple[object, ...]]) -> str:
    # (getaddrinfo returns at least one address or raises gaierror)
    address = infos[0][4]
    assert isinstance(address, tuple)
    return str(address[0])


def _left(deadline: float) -> float:
    """The seconds left before ``deadline`` (a TimeoutError once it has passed)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _unreachable(tunnel: Tunnel, exc: OSError) -> ProxyError:
    return tunnel.error(f"cannot be reached: {exc}", transient=True)


def _broken(tunnel: Tunnel, exc: OSError, timeout: float) -> ProxyError:
    if isinstance(exc, TimeoutError):
        return tunnel.error(f"did not open the tunnel within {timeout:g} s", transient=True)
    return tunnel.error(f"broke off the handshake: {exc}", transient=True)
