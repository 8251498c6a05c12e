"""One DNS exchange in wire format: UDP, then TCP when the answer is truncated.

RFC 1035 §4.2.1 (UDP, the TC bit) and §4.2.2 / RFC 7766 (TCP, two-byte
length prefix). Delivery normally lets dnspython do its lookups; this is for
the one answer dnspython refuses to parse, a TLSA RRset with a record whose
digest does not fit its matching type, which DANE must read leniently
(RFC 7671 §4.1: such a record is unusable, not an error).
"""

from __future__ import annotations

import socket
import struct
import time

__all__ = ["exchange"]

_TC = 0x02  # the truncation bit in the header's third byte


def exchange(query: bytes, server: str, port: int, lifetime: float, resend: float) -> bytes:
    """The answer to ``query`` (wire format) from ``server`` within ``lifetime``
    seconds, the datagram sent again every ``resend`` seconds; OSError on failure."""
    deadline = time.monotonic() + lifetime
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((server, port))
        while True:
            sock.send(query)
            answer = _answer(sock, query, min(time.monotonic() + resend, deadline))
            if answer:
                break
            _left(deadline)  # TimeoutError once the lifetime is over
    if len(answer) < 3 or not answer[2] & _TC:
        return answer
    with socket.create_connection((server, port), timeout=_left(deadline)) as conn:
        conn.sendall(struct.pack("!H", len(query)) + query)
        (size,) = struct.unpack("!H", _read(conn, 2, deadline))
        return _read(conn, size, deadline)


def _answer(sock: socket.socket, query: bytes, until: float) -> bytes:
    """The first response to ``query`` before ``until``; b"" when none came."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return b""
        sock.settimeout(left)
        try:
            datagram = sock.recv(65535)
        except TimeoutError:
            return b""
        # The same ID and the QR bit: a stray or late datagram is ignored.
        if len(datagram) >= 12 and datagram[:2] == query[:2] and datagram[2] & 0x80:
            return datagram


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("DNS query timed out")
    return left


def _read(conn: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        conn.settimeout(_left(deadline))
        piece = conn.recv(size - len(data))
        if not piece:
            raise ConnectionError("the DNS server closed the connection")
        data += piece
    return data
