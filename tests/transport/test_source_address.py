"""``-4``/``-6``/``--source-address`` (and the clients' ``family``/``source_address``)
against a real aiosmtpd whose handler records each connection's peer address."""

from __future__ import annotations

import asyncio
import socket

import pytest

from smtpmail import AsyncClient, Client
from smtpmail.cli import exits
from smtpmail.errors import ConnectError, InvalidArgument
from support.clirun import run_cli
from support.servers import PeerRecorder, RecordingServer, free_port

BASIC = ("--from", "me@example.org", "--to", "a@example.net", "--body", "x")


def _ipv6_loopback() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


def test_source_address_is_the_peer_the_server_sees() -> None:
    handler = PeerRecorder()
    with RecordingServer(handler=handler) as s:
        server = ("--server", f"smtp://127.0.0.1:{s.port}")
        assert run_cli("send", *server, *BASIC).status == 0
        r = run_cli("send", *server, *BASIC, "--source-address", "127.0.0.2")
        assert r.status == 0, r.stderr
        assert handler.peers == ["127.0.0.1", "127.0.0.2"]
        assert len(s.messages) == 2


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_both_clients_bind_the_source_address(kind: type[Client | AsyncClient]) -> None:
    handler = PeerRecorder()
    with RecordingServer(handler=handler) as s:
        client = kind("127.0.0.1", s.port, source_address=("127.0.0.3", 0))
        _run(client.rehearse("mail", b"x", "me@example.org", ["a@example.net"]))
        assert handler.peers == ["127.0.0.3"]


def test_minus_4_with_localhost() -> None:
    handler = PeerRecorder()
    with RecordingServer(handler=handler) as s:
        r = run_cli("send", "--host", "localhost", "--port", str(s.port), *BASIC, "-4")
        assert r.status == 0, r.stderr
        assert handler.peers == ["127.0.0.1"]


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_minus_6_reaches_the_ipv6_server() -> None:
    handler = PeerRecorder()
    with RecordingServer("::1", handler=handler) as s:
        # (no name here resolves to ::1: the literal; filtering is shown below)
        r = run_cli("send", "--host", "::1", "--port", str(s.port), *BASIC, "-6")
        assert r.status == 0, r.stderr
        assert handler.peers == ["::1"]


def test_minus_6_filters_the_names_addresses() -> None:
    with RecordingServer() as s:  # localhost: 127.0.0.1 (and ::1 where /etc/hosts says so)
        assert run_cli("send", "--host", "localhost", "--port", str(s.port), *BASIC).status == 0
        r = run_cli("send", "--host", "localhost", "--port", str(s.port), *BASIC, "-6")
        # The server listens on 127.0.0.1 only: never reached over IPv6. No IPv6
        # address for localhost: 68 (host unknown); ::1 there: refused, 75.
        assert r.status in (exits.EX_NOHOST, exits.EX_TEMPFAIL), r.stderr
        assert len(s.messages) == 1


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_no_address_of_the_family_is_a_connect_error(kind: type[Client | AsyncClient]) -> None:
    with RecordingServer() as s:
        client = kind("127.0.0.1", s.port, family=socket.AF_INET6)
        with pytest.raises(ConnectError, match=r"127\.0\.0\.1 has no IPv6 address") as info:
            _run(client.rehearse("greeting"))
        assert isinstance(info.value.__cause__, socket.gaierror)
        assert s.raw == b""


def test_minus_6_to_an_ipv4_literal_exits_host_unknown() -> None:
    r = run_cli("send", "--host", "127.0.0.1", "--port", "9", *BASIC, "-6")
    assert r.status == exits.EX_NOHOST
    assert "has no IPv6 address" in r.stderr


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("127.0.0.2", "tuple"),
        (("127.0.0.2",), "tuple"),
        (("127.0.0.2", -1), "0 \\(any\\) to 65535"),
        (("127.0.0.2", "25"), "0 \\(any\\) to 65535"),
        (("1\udce9", 0), "octet 0xE9, which is not UTF-8"),  # (an argument not UTF-8)
        (("127.0.0.2\n", 0), "control character"),
    ],
)
@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_source_address_is_checked_at_construction(
    kind: type[Client | AsyncClient], source: object, error: str
) -> None:
    """Before: the socket module's TypeError or UnicodeError when connecting
    (exit 70 for --source-address given octets that are not UTF-8)."""
    with pytest.raises(InvalidArgument, match=error):
        kind("127.0.0.1", 25, source_address=source)  # type: ignore[arg-type]


def test_family_is_checked_at_construction() -> None:
    with pytest.raises(InvalidArgument):
        Client("127.0.0.1", 25, family=socket.AF_UNIX)
    assert run_cli("send", *BASIC, "-4", "-6").status == exits.EX_USAGE


def _run(result: object) -> None:
    if asyncio.iscoroutine(result):
        asyncio.run(result)
