"""The Python clients under test, one run per process: smtpmail, smtplib, aiosmtplib.

``python bench/peers.py CLIENT --port P --count N --size S [--conns C] [--file F]``
sends ``count`` messages of ``size`` octets (or the file) to 127.0.0.1:P and
prints one JSON line: how many messages went out, how many octets, and the
seconds and the CPU seconds (``time.process_time``, every thread) the
sending took: start-up and imports excluded, so the numbers compare the
clients and not the interpreter. The whole process's CPU time and peak RSS
are measured from outside by ``run.py`` (``os.wait4``).

Each peer is used the way its documentation recommends: smtplib's
``SMTP.sendmail`` on one connection (or one per message), aiosmtplib's
``SMTP.sendmail`` inside ``async with``, smtpmail's ``Client.send_many`` (and
``send`` in a loop, to show the cost of not batching), and the one-shot
``smtpmail.send()`` that opens a connection per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

SENDER = "bench-sender@example.org"
RECIPIENT = "bench-rcpt@example.net"
HOST = "127.0.0.1"


def make_message(size: int, serial: int = 0) -> bytes:
    """A plain RFC 5322 message of exactly ``size`` octets, in 78-octet CRLF lines."""
    head = (
        f"From: Bench <{SENDER}>\r\nTo: <{RECIPIENT}>\r\n"
        f"Subject: bench message {serial}\r\nMessage-ID: <bench.{serial}@example.org>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again....\r\n"
    body_len = max(size - len(head), 2)
    body = (line * (body_len // len(line) + 1))[: body_len - 2] + b"\r\n"
    return head + body


def _split(count: int, conns: int) -> list[int]:
    return [count // conns + (1 if i < count % conns else 0) for i in range(conns)]


# -- smtpmail --------------------------------------------------------------


def smtpmail_batch(port: int, count: int, message: bytes) -> None:
    """``Client.send_many``: one connection, RFC 2920 pipelining across messages."""
    from smtpmail import Client, Envelope

    envelope = Envelope(SENDER, [RECIPIENT])
    with Client(HOST, port) as client:
        results = client.send_many((envelope, message) for _ in range(count))
    bad = [r.error for r in results if r.error is not None]
    if bad or len(results) != count:
        raise SystemExit(f"smtpmail: {len(bad)} failed: {bad[:1]}")


def smtpmail_loop(port: int, count: int, message: bytes) -> None:
    """``Client.send`` once per message on one connection (pipelined within each)."""
    from smtpmail import Client

    with Client(HOST, port) as client:
        for _ in range(count):
            client.send(message, SENDER, [RECIPIENT])


def smtpmail_file(port: int, path: str) -> None:
    from smtpmail import Client

    with Client(HOST, port) as client, open(path, "rb") as f:
        client.send(f, SENDER, [RECIPIENT])


def smtpmail_oneshot(port: int, count: int, message: bytes) -> None:
    """``smtpmail.send()``: the one-shot call, one connection per message."""
    import smtpmail

    for _ in range(count):
        smtpmail.send(message, SENDER, [RECIPIENT], host=HOST, port=port)


async def smtpmail_oneshot_async(port: int, count: int, message: bytes) -> None:
    """``smtpmail.send_async()``, one connection per message."""
    import smtpmail

    for _ in range(count):
        await smtpmail.send_async(message, SENDER, [RECIPIENT], host=HOST, port=port)


async def smtpmail_async_batch(port: int, count: int, message: bytes) -> None:
    from smtpmail import AsyncClient, Envelope

    envelope = Envelope(SENDER, [RECIPIENT])
    async with AsyncClient(HOST, port) as client:
        results = await client.send_many((envelope, message) for _ in range(count))
    if len(results) != count or any(r.error for r in results):
        raise SystemExit("smtpmail async: some messages failed")


async def smtpmail_async_file(port: int, path: str) -> None:
    from smtpmail import AsyncClient

    async with AsyncClient(HOST, port) as client:
        with open(path, "rb") as f:
            await client.send(f, SENDER, [RECIPIENT])


# -- smtplib (allowed here only: it is a peer being measured) ---------------


def smtplib_reuse(port: int, count: int, message: bytes) -> None:
    import smtplib

    with smtplib.SMTP(HOST, port) as smtp:
        for _ in range(count):
            smtp.sendmail(SENDER, [RECIPIENT], message)


def smtplib_per_message(port: int, count: int, message: bytes) -> None:
    import smtplib

    for _ in range(count):
        with smtplib.SMTP(HOST, port) as smtp:
            smtp.sendmail(SENDER, [RECIPIENT], message)


def smtplib_file(port: int, path: str) -> None:
    import smtplib

    # smtplib takes the message as one string or bytes object: read it whole.
    with open(path, "rb") as f:
        data = f.read()
    with smtplib.SMTP(HOST, port) as smtp:
        smtp.sendmail(SENDER, [RECIPIENT], data)


# -- aiosmtplib ----------------------------------------------------------------


async def aiosmtplib_reuse(port: int, count: int, message: bytes) -> None:
    import aiosmtplib

    async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False) as smtp:
        for _ in range(count):
            await smtp.sendmail(SENDER, [RECIPIENT], message)


async def aiosmtplib_file(port: int, path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    await aiosmtplib_reuse(port, 1, data)


# -- the floor: what any Python client pays on this wire pattern ---------------
#
# Not a client: no checks, no results, no error handling, replies only counted.
# It writes exactly what Client.send_many writes to a PIPELINING server (MAIL,
# RCPT and DATA in one write, the data with its end and the next transaction
# in the next), one write and one read per message. What remains is the
# interpreter and the kernel: a Python client cannot spend less CPU per
# message than this, and smtpmail's CPU above it is its own work.


def _envelope_lines(message: bytes) -> bytes:
    return (
        f"MAIL FROM:<{SENDER}> BODY=8BITMIME SIZE={len(message)}\r\n"
        f"RCPT TO:<{RECIPIENT}>\r\nDATA\r\n"
    ).encode()


#: A reply line that another line of the same reply follows ("250-PIPELINING").
_CONTINUED = re.compile(rb"(?m)^\d{3}-")


def _final_lines(data: bytes) -> int:
    """How many replies end in ``data`` (whole lines only: a code, then a space)."""
    return data.count(b"\r\n") - len(_CONTINUED.findall(data))


def _floor_connection(port: int) -> tuple[socket.socket, Callable[[int], None]]:
    """A connection past EHLO, and the function that waits for ``n`` replies."""
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""

    def replies(n: int) -> None:
        nonlocal pending
        while _final_lines(pending) < n or not pending.endswith(b"\r\n"):
            pending += sock.recv(65536)
        pending = b""

    replies(1)  # the greeting
    sock.sendall(b"EHLO floor.example.org\r\n")
    replies(1)
    return sock, replies


def floor_loop(port: int, count: int, message: bytes) -> None:
    sock, replies = _floor_connection(port)
    group = _envelope_lines(message)
    data = message + b".\r\n"
    sock.sendall(group)
    for i in range(count):
        replies(3 if i == 0 else 4)  # (the previous message's 250, then MAIL, RCPT, DATA)
        sock.sendall(data + (group if i < count - 1 else b"QUIT\r\n"))
    replies(2)  # the last message's 250, QUIT's 221
    sock.close()


def floor_lockstep(port: int, count: int, message: bytes) -> None:
    """The same for a server without PIPELINING: each command waits for its reply."""
    sock, replies = _floor_connection(port)
    commands = _envelope_lines(message).splitlines(keepends=True)
    data = message + b".\r\n"
    for _ in range(count):
        for line in commands:
            sock.sendall(line)
            replies(1)
        sock.sendall(data)
        replies(1)
    sock.sendall(b"QUIT\r\n")
    replies(1)
    sock.close()


async def floor_async(port: int, count: int, message: bytes) -> None:
    """The same on an asyncio.Protocol: the loop's own cost, without any client's."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    group = _envelope_lines(message)
    data = message + b".\r\n"
    # (replies awaited, what to write then) in order: greeting, EHLO, the messages, QUIT
    script = [(1, b"EHLO floor.example.org\r\n"), (1, group)]
    script += [
        (3 if i == 0 else 4, data + (group if i < count - 1 else b"QUIT\r\n")) for i in range(count)
    ]
    script.append((2, b""))

    class Floor(asyncio.Protocol):
        def __init__(self) -> None:
            self.pending = b""
            self.step = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, chunk: bytes) -> None:
            self.pending += chunk
            need, write = script[self.step]
            if _final_lines(self.pending) < need or not self.pending.endswith(b"\r\n"):
                return
            self.pending = b""
            self.step += 1
            if write:
                self.transport.write(write)
            else:
                self.transport.close()
                done.set_result(None)

    await loop.create_connection(Floor, HOST, port)
    await done


# -- drivers -------------------------------------------------------------------

SyncFn = Callable[[int, int, bytes], None]
AsyncFn = Callable[[int, int, bytes], Coroutine[Any, Any, None]]

SYNC: dict[str, SyncFn] = {
    "smtpmail": smtpmail_batch,
    "smtpmail-send": smtpmail_loop,
    "smtpmail-oneshot": smtpmail_oneshot,
    "smtplib": smtplib_reuse,
    "smtplib-per-message": smtplib_per_message,
    "floor": floor_loop,
    "floor-lockstep": floor_lockstep,
}
ASYNC: dict[str, AsyncFn] = {
    "smtpmail-async": smtpmail_async_batch,
    "smtpmail-oneshot-async": smtpmail_oneshot_async,
    "aiosmtplib": aiosmtplib_reuse,
    "floor-async": floor_async,
}
FILE_SYNC: dict[str, Callable[[int, str], None]] = {
    "smtpmail": smtpmail_file,
    "smtplib": smtplib_file,
}
FILE_ASYNC: dict[str, Callable[[int, str], Coroutine[Any, Any, None]]] = {
    "smtpmail-async": smtpmail_async_file,
    "aiosmtplib": aiosmtplib_file,
}


def run_threads(fn: SyncFn, port: int, count: int, message: bytes, conns: int) -> None:
    if conns == 1:
        fn(port, count, message)
        return
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            fn(port, n, message)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in _split(count, conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def run_tasks(fn: AsyncFn, port: int, count: int, message: bytes, conns: int) -> None:
    await asyncio.gather(*(fn(port, n, message) for n in _split(count, conns)))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--file")
    a = p.parse_args(argv)
    # Import every module before the clock starts.
    if a.client.startswith("smtpmail"):
        import smtpmail  # noqa: F401
    elif a.client.startswith("aiosmtplib"):
        import aiosmtplib  # noqa: F401
    else:
        import smtplib  # noqa: F401
    message = b"" if a.file else make_message(a.size)
    started, cpu_started = time.perf_counter(), time.process_time()
    if a.file:
        if a.client in FILE_SYNC:
            FILE_SYNC[a.client](a.port, a.file)
        else:
            asyncio.run(FILE_ASYNC[a.client](a.port, a.file))
        count, octets = 1, _file_size(a.file)
    else:
        count, octets = a.count, a.count * len(message)
        if a.client in SYNC:
            run_threads(SYNC[a.client], a.port, a.count, message, a.conns)
        else:
            asyncio.run(run_tasks(ASYNC[a.client], a.port, a.count, message, a.conns))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({"messages": count, "octets": octets, "seconds": seconds, "cpu": cpu}))
    return 0


def _file_size(path: str) -> int:
    import os

    return os.stat(path).st_size


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
