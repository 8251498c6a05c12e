"""The blocking stream's waits and the unsolicited-reply check cost no extra
system calls (issue 19): the socket stays blocking and waits with the
kernel's timeouts (no ``poll`` before each ``recv``/``send``), and the kernel
is asked for bytes nobody asked for once per operation, not before every
command. Real sockets and a real aiosmtpd server; the deadlines still hold.
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest

import smtpmail
from smtpmail.transport.stream import SocketStream
from support.servers import RecordingServer


def test_the_socket_stays_blocking_with_a_kernel_timeout() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = SocketStream(a)
        b.sendall(b"220 hi\r\n")
        assert stream.read(100, 7.5) == b"220 hi\r\n"
        assert a.gettimeout() is None  # no Python timeout: no poll before each recv
        seconds, micros = struct.unpack(
            "@ll", a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        )
        assert seconds + micros / 1e6 == pytest.approx(7.5)


def test_a_read_times_out_and_a_shorter_wait_does_not_cut_a_longer_one() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = SocketStream(a)
        with pytest.raises(TimeoutError):
            stream.read(100, 0.05)  # the kernel now wakes after 0.05 s
        late = threading.Timer(0.3, lambda: b.sendall(b"250 late\r\n"))
        late.start()
        try:
            # Several kernel timeouts pass; the read's own deadline has not.
            assert stream.read(100, 30) == b"250 late\r\n"
        finally:
            late.cancel()


def test_a_write_goes_out_whole() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = SocketStream(a)
        data = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffer takes at once
        received = bytearray()

        def drain() -> None:
            while len(received) < len(data):
                received.extend(b.recv(65536))

        reader = threading.Thread(target=drain)
        reader.start()
        stream.write(data, 30)
        reader.join(30)
        assert bytes(received) == data


def send_timeout(sock: socket.socket) -> float:
    seconds, micros = struct.unpack(
        "@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)
    )
    return float(seconds + micros / 1e6)


def test_a_write_the_kernel_takes_at_once_sets_no_send_timeout() -> None:
    """Commands and small messages never wait to be written: no setsockopt for them."""
    a, b = socket.socketpair()
    with a, b:
        stream = SocketStream(a)
        stream.write(b"EHLO client.example.org\r\n", 7.5)
        assert b.recv(100) == b"EHLO client.example.org\r\n"
        assert send_timeout(a) == 0


def test_a_write_that_must_wait_gets_the_timeout_and_times_out() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = SocketStream(a)
        with pytest.raises(TimeoutError):
            stream.write(bytes(8 << 20), 0.2)  # nobody reads: the buffers fill up
        assert send_timeout(a) == pytest.approx(0.2)


class CountingStream(SocketStream):
    """A plain socket stream that counts the arrived-bytes checks."""

    __slots__ = ("polls",)

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.polls = 0

    def read_arrived(self, max_bytes: int) -> bytes | None:
        self.polls += 1
        return super().read_arrived(max_bytes)


def test_the_kernel_is_asked_once_per_operation_not_per_command() -> None:
    """Lock-step (aiosmtpd offers no PIPELINING): MAIL, RCPT, DATA for each of
    five messages used to cost a check each; one before the batch is enough."""
    with RecordingServer() as server:
        stream = CountingStream(socket.create_connection((server.host, server.port), 10))
        envelope = smtpmail.Envelope("a@example.org", ["b@example.org"])
        with smtpmail.Client("localhost", stream=stream) as client:
            polls_before = stream.polls
            results = client.send_many([(envelope, b"Subject: x\r\n\r\nbody\r\n")] * 5)
            assert all(r.ok for r in results)
            assert stream.polls - polls_before == 1
        assert len(server.messages) == 5
