"""The network seam (smtpmail.transport.stream): every connection a client makes
goes through a connector and a stream, so a caller's pre-connected socket, its
own connector (a proxy's) or its own stream can carry the dialogue. Both
clients, against real aiosmtpd servers."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from smtpmail import ConnectError, MessageReadError, TLSError, TLSMode, TLSOptions
from smtpmail.protocol.sasl import Credentials
from smtpmail.transport.stream import SocketStream
from support.harness import Connect
from support.servers import RecordingServer
from support.tlsservers import Certs, TLSServer, authenticator

MSG = b"Subject: seam\r\n\r\nthrough the seam\r\n"


class Counting:
    """A connector for either client that counts its calls and records its arguments."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls: list[tuple[str, int, dict[str, Any]]] = []

    def __call__(self, host: str, port: int, **kwargs: Any) -> Any:
        self.calls.append((host, port, kwargs))
        sock = socket.create_connection((host, port), kwargs["timeout"])
        if self.kind == "sync":
            return sock

        async def opened() -> socket.socket:
            return sock

        return opened()


async def test_a_pre_connected_socket_carries_the_dialogue(
    smtpd: RecordingServer, connect: Connect
) -> None:
    sock = socket.create_connection((smtpd.host, smtpd.port), 10)
    client = connect(1, stream=sock)  # port 1: the client never dials it
    async with client:
        assert (await client.send(MSG, "a@example.org", "b@example.org")).ok
    (msg,) = smtpd.messages
    assert msg.content.endswith(b"through the seam\r\n")
    # It was the caller's connection: once closed, the client cannot open another.
    with pytest.raises(ConnectError, match="stream="):
        await client.send(MSG, "a@example.org", "b@example.org")


async def test_a_connector_opens_every_connection(
    smtpd: RecordingServer, connect: Connect, kind: str
) -> None:
    connector = Counting(kind)
    client = connect(smtpd.port, connect=connector, source_address=None, family=socket.AF_INET)
    for n in range(2):
        async with client:
            assert (await client.send(MSG, "a@example.org", f"b{n}@example.org")).ok
    assert [c[:2] for c in connector.calls] == [("127.0.0.1", smtpd.port)] * 2
    assert connector.calls[0][2] == {"timeout": 30.0, "source_address": None, "family": 2}
    assert len(smtpd.messages) == 2


async def test_starttls_and_its_certificate_check_run_on_a_given_stream(
    certs: Certs, starttls_server: TLSServer, connect: Connect
) -> None:
    sock = socket.create_connection(("127.0.0.1", starttls_server.port), 10)
    client = connect(
        starttls_server.port,
        stream=sock,
        tls=TLSMode.REQUIRED,
        # The CA store passes the certificate; the pin (checked after every
        # handshake, whoever made the stream) must still refuse it.
        tls_options=TLSOptions(ca_file=certs.ca_file, fingerprint="00" * 32),
    )
    with pytest.raises(TLSError, match="pinned fingerprint"):
        await client.connect()
    assert not client.is_connected


@pytest.mark.parametrize("use_async", [False, True])
async def test_implicit_tls_on_a_caller_stream(certs: Certs, use_async: bool) -> None:
    """A stream the caller wrote (here: recording every write) is all a client needs."""
    import smtpmail

    written: list[bytes] = []

    class Recording(SocketStream):
        def write(self, data: bytes | memoryview, timeout: float) -> None:
            written.append(bytes(data))
            super().write(data, timeout)

    with TLSServer(
        implicit=certs.server_context(), authenticator=authenticator(), auth_require_tls=False
    ) as server:
        if use_async:
            # The asyncio client takes a connected socket (it joins the loop).
            sock = socket.create_connection(("127.0.0.1", server.port), 10)
            client: Any = smtpmail.AsyncClient(
                "localhost",
                tls=TLSMode.IMPLICIT,
                tls_options=TLSOptions(ca_file=certs.ca_file),
                stream=sock,
            )
            async with client:
                assert (await client.send(MSG, "a@example.org", "b@example.org")).ok
                assert client.tls_info is not None and client.tls_info.verified
        else:
            stream = Recording(socket.create_connection(("127.0.0.1", server.port), 10))
            with smtpmail.Client(
                "localhost",
                tls=TLSMode.IMPLICIT,
                tls_options=TLSOptions(ca_file=certs.ca_file),
                stream=stream,
            ) as client:
                assert client.send(MSG, "a@example.org", "b@example.org").ok
                assert client.tls_info is not None and client.tls_info.verified
            assert written[0].startswith(b"EHLO ")
        assert len(server.messages) == 1


def _fails_after_the_headers() -> Iterator[bytes]:
    """A streamed message whose source breaks after its header section was read."""
    yield b"Subject: half\r\n\r\n"
    for _ in range(64):
        yield b"x" * 1000 + b"\r\n"
    raise OSError(errno.EIO, "the message file's disk is gone")


async def test_an_error_reading_the_message_keeps_its_type(
    smtpd: RecordingServer, connect: Connect
) -> None:
    """Only the stream's own errors become ConnectionLost (issue 15): the caller's
    OSError says what broke, and nothing was delivered."""
    client = connect(smtpd.port)
    async with client:
        with pytest.raises(MessageReadError, match="disk is gone"):
            await client.send(_fails_after_the_headers(), "a@example.org", "b@example.org")
        # The server is mid-DATA: the connection cannot be used again.
        assert not client.is_connected
    assert smtpd.messages == []


def _password_from_a_missing_file() -> str:
    with open("/nonexistent/smtpmail-test/password") as f:
        return f.read()


async def test_an_error_in_the_callers_code_keeps_its_type(
    certs: Certs, starttls_server: TLSServer, connect: Connect
) -> None:
    """A password callable's OSError, raised while the AUTH flow runs, is the
    caller's error to see, not a ConnectionLost blaming the server (issue 15)."""
    client = connect(
        starttls_server.port,
        auth=Credentials("alice", _password_from_a_missing_file),
        tls_options=TLSOptions(ca_file=certs.ca_file),
    )
    with pytest.raises(FileNotFoundError, match="smtpmail-test"):
        await client.connect()
    assert not client.is_connected


def test_the_default_connectors_socket_is_a_socket_object(smtpd: RecordingServer) -> None:
    """connect_tcp connects with socket's C core (start-up time); asked for
    "socket", the stream still hands out a socket.socket, and goes on working."""
    from smtpmail.transport.stream import connect_tcp

    stream = connect_tcp(smtpd.host, smtpd.port, timeout=10)
    try:
        assert stream.read(512, 10).startswith(b"220")
        sock = stream.get_extra_info("socket")
        assert isinstance(sock, socket.socket)
        assert stream.get_extra_info("socket") is sock
        assert sock.getpeername() == stream.get_extra_info("peername")
        stream.write(b"NOOP\r\n", 10)
        assert stream.read(512, 10).startswith(b"250")
        with sock.makefile("rwb") as f:  # what http.client does with it
            f.write(b"NOOP\r\n")
            f.flush()
            assert f.readline().startswith(b"250")
    finally:
        stream.close()


@pytest.mark.parametrize("how", ["connect", "stream"])
async def test_no_clear_text_auth_through_a_callers_connection(kind: str, how: str) -> None:
    """Loopback may see credentials in clear text only when the client dialled it:
    a caller's connector or stream that ends on loopback (a local SOCKS or
    HTTP proxy, a tunnel's entrance) may lead anywhere, as ``proxy=`` does."""
    from smtpmail import PlaintextAuthRefused
    from support.harness import Twin, loopback_connector
    from support.tlsservers import PASSWORD, USER

    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        # The connector stands for a proxy on loopback that would carry host:port anywhere.
        given: dict[str, Any] = {"connect": loopback_connector(kind, server.port)}
        if how == "stream":
            given = {"stream": socket.create_connection(("127.0.0.1", server.port), 10)}
        # The server's name is not loopback; the connection the caller made is.
        auth = (USER, PASSWORD)
        client = Twin(kind, "smtp.example.org", 587, tls="opportunistic", auth=auth, **given)
        with pytest.raises(PlaintextAuthRefused):
            await client.connect()
        await client.close()
        assert b"AUTH" not in server.raw.upper(), server.raw
