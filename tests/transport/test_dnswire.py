"""One DNS exchange in wire format (transport/dnswire.py, RFC 1035 §4.2, RFC 7766).

A scripted server on loopback: a stray datagram (another ID) comes first and
is ignored; a truncated UDP answer (TC) sends the query again over TCP.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from smtpmail.transport.dnswire import exchange

QUERY = b"\x12\x34\x01\x20" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x00\x00\x34\x00\x01"
FULL = b"\x12\x34\x81\xa0" + b"\x00" * 8 + b"full answer"
TRUNCATED = b"\x12\x34\x83\xa0" + b"\x00" * 8  # QR, TC


def _udp_and_tcp_on_one_port() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free loopback port (DNS uses both).

    A port free for UDP may be taken for TCP by another test's connection:
    then another port is tried.
    """
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError("no loopback port free for both UDP and TCP")


class ScriptedDNS:
    """UDP: a datagram with another ID, then ``udp_answer``; TCP: FULL."""

    def __init__(self, udp_answer: bytes) -> None:
        self.udp, self.tcp = _udp_and_tcp_on_one_port()
        self.port = self.udp.getsockname()[1]
        self.tcp.listen()
        self.udp_answer = udp_answer
        self.tcp_queries: list[bytes] = []
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _serve_udp(self) -> None:
        _query, peer = self.udp.recvfrom(512)
        self.udp.sendto(b"\x99\x99" + self.udp_answer[2:], peer)  # not ours: ignored
        self.udp.sendto(self.udp_answer, peer)

    def _serve_tcp(self) -> None:
        try:
            conn, _ = self.tcp.accept()
        except OSError:
            return  # closed unused: the answer came whole over UDP
        with conn:
            (size,) = struct.unpack("!H", conn.recv(2))
            self.tcp_queries.append(conn.recv(size))
            conn.sendall(struct.pack("!H", len(FULL)) + FULL)

    def close(self) -> None:
        # Wake the threads before closing: a socket closed under a blocked call
        # frees its descriptor for another test to reuse while the call runs on.
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):  # not connected (UDP), or already shut
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(5)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[ScriptedDNS]:
    server = ScriptedDNS(request.param)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("scripted", "answer", "over_tcp"),
    [(FULL, FULL, False), (TRUNCATED, FULL, True)],
    indirect=["scripted"],
    ids=["udp", "truncated-then-tcp"],
)
def test_exchange(scripted: ScriptedDNS, answer: bytes, over_tcp: bool) -> None:
    assert exchange(QUERY, "127.0.0.1", scripted.port, 10.0, 5.0) == answer
    assert scripted.tcp_queries == ([QUERY] if over_tcp else [])
