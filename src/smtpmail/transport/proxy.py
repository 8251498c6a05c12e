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
    from smtpmail.transport.stream import (
        AsyncConnector,
        AsyncNetworkStream,
        Connector,
        NetworkStream,
    )

__all__ = ["async_proxy_connector", "proxy_connector"]


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
        target = host
        if _needs_address(proxy, host):
            target = _first_address(
                socket.getaddrinfo(host, port, _family(proxy, family), socket.SOCK_STREAM)
            )
        tunnel = Tunnel(proxy, target, port, name=host)  # a destination it cannot take fails here
        try:
            stream = connect_tcp(
                proxy.host,
                proxy.port,
                timeout=_left(deadline),
                source_address=source_address,
                family=family,
            )
        except OSError as exc:
            raise _unreachable(tunnel, exc) from exc
        try:
            while not tunnel.established:
                out = tunnel.data_to_send()
                if out:
                    stream.write(out, _left(deadline))
                data = stream.read(tunnel.max_read(), _left(deadline))
                if not data:
                    tunnel.closed()
                tunnel.receive(data)
        except OSError as exc:  # (TimeoutError is one)
            stream.close()
            raise _broken(tunnel, exc, timeout) from exc
        except BaseException:
            stream.close()
            raise
        return stream

    return connect


def async_proxy_connector(proxy: Proxy) -> AsyncConnector:
    """The :class:`~smtpmail.transport.stream.AsyncConnector` for ``proxy``:
    :func:`proxy_connector` with ``await``."""

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
        target = host
        if _needs_address(proxy, host):
            loop = asyncio.get_running_loop()
            target = _first_address(
                await loop.getaddrinfo(
                    host, port, family=_family(proxy, family), type=socket.SOCK_STREAM
                )
            )
        tunnel = Tunnel(proxy, target, port, name=host)
        try:
            stream = await open_tcp(
                proxy.host,
                proxy.port,
                timeout=_left(deadline),
                source_address=source_address,
                family=family,
            )
        except OSError as exc:
            raise _unreachable(tunnel, exc) from exc
        try:
            while not tunnel.established:
                out = tunnel.data_to_send()
                if out:
                    await stream.write(out, _left(deadline))
                data = await stream.read(tunnel.max_read(), _left(deadline))
                if not data:
                    tunnel.closed()
                tunnel.receive(data)
        except OSError as exc:
            stream.close()
            raise _broken(tunnel, exc, timeout) from exc
        except BaseException:
            stream.close()
            raise
        return stream

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
    if not proxy.scheme.startswith("socks4"):
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
