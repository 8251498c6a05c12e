"""A scripted, hostile SMTP server for fault-injection tests.

``ScriptedServer`` listens on 127.0.0.1 (ephemeral port) in its own thread and
event loop, so both the blocking :class:`smtpmail.Client` and the
:class:`smtpmail.AsyncClient` can talk to it. Each connection plays a script:
a list of steps (expect a line, send raw bytes, sleep, drip, flood, close,
start TLS, read message data, or behave like a plain SMTP server). Every byte
the client sends is recorded per connection, so tests assert on exact wire
bytes. After its script a connection keeps reading until the client closes,
which tells the tests whether the client closed its socket.

This is a test tool, not an SMTP server: it checks nothing it is not told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

#: How long a connection waits, after its script, for the client to close.
LINGER = 30.0


@dataclass
class DataRecord:
    """One message's data as it crossed the wire."""

    kind: str  # "DATA" or "BDAT"
    raw: bytes  # DATA: everything up to and including CRLF.CRLF; BDAT: the chunks joined
    sizes: list[int] = field(default_factory=list)  # BDAT sizes as declared
    trailing: bytes = b""  # bytes that arrived after the end of data, before our reply


class Conn:
    """One client connection: what it sent, and the stream to talk back on."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()  # every byte received, in order (plaintext after TLS)
        self.buf = bytearray()  # received and not yet consumed by a step
        self.errors: list[str] = []  # script expectations that failed
        self.lines: list[bytes] = []  # command lines read by steps
        self.data: list[DataRecord] = []
        self.eof = threading.Event()  # the client closed (or reset) the connection
        self.done = threading.Event()  # the handler finished
        self.tls_started = False
        #: Bytes the client sent after STARTTLS's reply, before the TLS handshake.
        self.plaintext_after_starttls: bytes | None = None
        self.closed_by_server = False
        self.lines_before_tls = 0  # len(lines) when TLS started
        self.bytes_before_tls = 0  # len(received) when TLS started
        #: Command lines that arrived before our reply to the end of data and were
        #: refused for it (``respond(refuse_after_data=True)``).
        self.refused_early: list[bytes] = []

    async def fill(self, timeout: float = LINGER) -> bool:
        """Read more bytes into ``buf``; False on EOF."""
        try:
            async with asyncio.timeout(timeout):
                chunk = await self.reader.read(65536)
        except TimeoutError:
            raise  # the caller decides what a quiet client means
        except OSError:  # a reset is an end too
            chunk = b""
        if not chunk:
            self.eof.set()
            return False
        self.received += chunk
        self.buf += chunk
        return True

    async def readline(self) -> bytes | None:
        """One line up to LF (the raw bytes, LF included), or None on EOF."""
        while (end := self.buf.find(b"\n")) < 0:
            if not await self.fill():
                return None
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        self.lines.append(line)
        return line

    async def readexactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if not await self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    def close(self) -> None:
        self.closed_by_server = True
        self.writer.close()


Step = Callable[[Conn], Awaitable[None]]


# -- steps -------------------------------------------------------------------


def send(data: bytes) -> Step:
    """Write raw bytes."""

    async def step(conn: Conn) -> None:
        await conn.write(data)

    return step


def expect(prefix: bytes) -> Step:
    """Read one line; record an error unless it starts with ``prefix`` (any case)."""

    async def step(conn: Conn) -> None:
        line = await conn.readline()
        if line is None:
            conn.errors.append(f"EOF while expecting {prefix!r}")
        elif not line.upper().startswith(prefix.upper()):
            conn.errors.append(f"expected {prefix!r}, got {line!r}")

    return step


def sleep(seconds: float) -> Step:
    async def step(conn: Conn) -> None:
        await asyncio.sleep(seconds)

    return step


def close() -> Step:
    async def step(conn: Conn) -> None:
        conn.close()

    return step


def drip(data: bytes, interval: float) -> Step:
    """Write ``data`` one byte at a time, ``interval`` seconds apart."""

    async def step(conn: Conn) -> None:
        for i in range(len(data)):
            await conn.write(data[i : i + 1])
            await asyncio.sleep(interval)

    return step


def flood(total: int, pattern: bytes = b"x", block: int = 65536) -> Step:
    """Write ``total`` octets of ``pattern`` repeated, in blocks, until the client leaves."""

    async def step(conn: Conn) -> None:
        chunk = (pattern * (block // len(pattern) + 1))[:block]
        sent = 0
        while sent < total and not conn.writer.is_closing():
            conn.writer.write(chunk[: total - sent])
            sent += block
            try:
                await conn.writer.drain()
            except (ConnectionError, OSError):
                return

    return step


def start_tls(context: ssl.SSLContext) -> Step:
    """Upgrade the connection (after our STARTTLS reply went out)."""

    async def step(conn: Conn) -> None:
        # Whatever the client sent between its STARTTLS and its handshake is
        # plaintext it should never have sent (RFC 3207 §5's injection concern).
        # No waiting here: a correct client's ClientHello may already be on its way.
        pending = getattr(conn.reader, "_buffer", b"")
        conn.plaintext_after_starttls = bytes(conn.buf) + bytes(pending)
        conn.buf.clear()
        try:
            await conn.writer.start_tls(context)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            conn.errors.append(f"TLS handshake failed: {exc!r}")
            conn.close()
            return
        conn.tls_started = True
        conn.lines_before_tls = len(conn.lines)
        conn.bytes_before_tls = len(conn.received)

    return step


def read_data(reply: bytes | None = b"250 2.0.0 queued\r\n") -> Step:
    """Read message data up to CRLF.CRLF, record it, then send ``reply``."""

    async def step(conn: Conn) -> None:
        await _read_data(conn, reply)

    return step


async def _read_data(conn: Conn, reply: bytes | None) -> None:
    start = 0
    while True:
        # The data may be just the terminator (an empty message) at line start.
        if conn.buf.startswith(b".\r\n"):
            end = 3
            break
        idx = conn.buf.find(b"\r\n.\r\n", start)
        if idx >= 0:
            end = idx + 5
            break
        start = max(len(conn.buf) - 4, 0)
        if not await conn.fill():
            conn.errors.append("EOF inside DATA")
            return
    raw = bytes(conn.buf[:end])
    del conn.buf[:end]
    await _note_trailing(conn)
    conn.data.append(DataRecord("DATA", raw, trailing=bytes(conn.buf)))
    if reply is not None:
        await conn.write(reply)


async def _note_trailing(conn: Conn) -> None:
    """Give the client a moment to send anything it should not before our reply."""
    with contextlib.suppress(TimeoutError):
        await conn.fill(timeout=0.02)


async def _auth(conn: Conn, line: bytes) -> None:
    """Accept any credentials: PLAIN (with or without an initial response), LOGIN, CRAM-MD5."""
    words = line.split()
    mechanism = words[1].upper() if len(words) > 1 else b""
    if mechanism == b"PLAIN":
        if len(words) < 3:
            await conn.write(b"334 \r\n")
            await conn.readline()
    elif mechanism == b"LOGIN":
        if len(words) < 3:
            await conn.write(b"334 VXNlcm5hbWU6\r\n")
            await conn.readline()
        await conn.write(b"334 UGFzc3dvcmQ6\r\n")
        await conn.readline()
    elif mechanism == b"CRAM-MD5":
        await conn.write(b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n")
        await conn.readline()
    else:
        await conn.write(b"504 5.5.4 unknown mechanism\r\n")
        return
    await conn.write(b"235 2.7.0 authenticated\r\n")


def call(fn: Step) -> Step:
    """A custom step."""
    return fn


# -- a plain, well-behaved responder -------------------------------------------

DEFAULT_EHLO = (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"SIZE 100000000")


def ehlo_reply(keywords: Sequence[bytes] = DEFAULT_EHLO, name: bytes = b"hostile.test") -> bytes:
    lines = [name + b" hello", *keywords]
    return b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + line + b"\r\n"
        for i, line in enumerate(lines)
    )


def respond(
    keywords: Sequence[bytes] = DEFAULT_EHLO,
    *,
    data_reply: bytes = b"250 2.0.0 queued\r\n",
    rcpt_reply: Callable[[bytes], bytes] | None = None,
    tls: ssl.SSLContext | None = None,
    tls_keywords: Sequence[bytes] | None = None,
    refuse_after_data: bool = False,
) -> Step:
    """Answer like a permissive server until QUIT or EOF: EHLO, MAIL, RCPT, DATA, BDAT...

    ``refuse_after_data``: answer 503 to every command line that arrived before
    our reply to the end of data (DATA's dot or BDAT LAST), as a server
    guarding against SMTP smuggling may; the lines go to ``conn.refused_early``
    (a refused BDAT's chunk is read and discarded, RFC 3030 §2).
    """
    bdat_re = re.compile(rb"BDAT (\d+)( LAST)?\r\n\Z", re.IGNORECASE)

    async def step(conn: Conn) -> None:
        bdat: DataRecord | None = None
        early = 0  # offset in conn.received up to which lines came with the end of data
        while (line := await conn.readline()) is not None:
            verb = line[:4].upper()
            if len(conn.received) - len(conn.buf) - len(line) < early:
                conn.refused_early.append(line)
                if verb == b"BDAT" and (m := bdat_re.match(line)):
                    await conn.readexactly(int(m.group(1)))
                await conn.write(_EARLY.get(verb, b"503 5.5.1 Bad sequence of commands\r\n"))
                continue
            if verb in (b"EHLO", b"LHLO"):
                after = conn.tls_started and tls_keywords is not None
                await conn.write(ehlo_reply(tls_keywords if after else keywords))  # type: ignore[arg-type]
            elif verb == b"HELO":
                await conn.write(b"250 hostile.test\r\n")
            elif verb == b"RCPT" and rcpt_reply is not None:
                await conn.write(rcpt_reply(line))
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                await conn.write(b"250 2.0.0 ok\r\n")
            elif verb == b"DATA":
                await conn.write(b"354 go ahead\r\n")
                await _read_data(conn, data_reply)
                if refuse_after_data and conn.data:
                    early = len(conn.received)
            elif verb == b"BDAT" and (m := bdat_re.match(line)):
                size, last = int(m.group(1)), bool(m.group(2))
                chunk = await conn.readexactly(size)
                if chunk is None:
                    conn.errors.append("EOF inside a BDAT chunk")
                    return
                if bdat is None:
                    bdat = DataRecord("BDAT", b"")
                bdat.raw += chunk
                bdat.sizes.append(size)
                if last:
                    await _note_trailing(conn)
                    bdat.trailing = bytes(conn.buf)
                    conn.data.append(bdat)
                    if refuse_after_data:
                        early = len(conn.received)
                    bdat = None
                    await conn.write(data_reply)
                else:
                    await conn.write(b"250 2.0.0 chunk ok\r\n")
            elif verb == b"AUTH":
                await _auth(conn, line)
            elif verb == b"STAR" and tls is not None:  # STARTTLS
                await conn.write(b"220 2.0.0 ready to start TLS\r\n")
                await start_tls(tls)(conn)
                if not conn.tls_started:
                    return
            elif verb == b"QUIT":
                await conn.write(b"221 2.0.0 bye\r\n")
                conn.close()
                return
            else:
                conn.errors.append(f"unexpected command {line!r}")
                await conn.write(b"500 5.5.1 what?\r\n")

    return step


#: ``refuse_after_data``'s replies (those to RCPT and DATA in Haraka's words).
_EARLY = {
    b"MAIL": b"503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n",
    b"RCPT": b"503 5.5.1 Use MAIL before RCPT\r\n",
    b"DATA": b"503 5.5.1 MAIL required first\r\n",
}


# -- the server ------------------------------------------------------------------


class ScriptedServer:
    """Plays ``script`` to every connection; use as a context manager.

    ``greeting`` (when not None) is sent first, before the script's steps.
    It listens on ``host`` and ``port`` (default: 127.0.0.1, an ephemeral
    port; an MX address of tests/support/delivery/mxworld.py and port 25 there).
    """

    def __init__(
        self,
        script: Sequence[Step],
        *,
        greeting: bytes | None = b"220 hostile.test ESMTP ready\r\n",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.script = list(script)
        self.greeting = greeting
        self.host = host
        self.port = port
        self.connections: list[Conn] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.greeting is not None:
                await conn.write(self.greeting)
            for step in self.script:
                if conn.closed_by_server or conn.eof.is_set():
                    break
                await step(conn)
            # Keep reading (and recording) until the client closes its end.
            while not conn.closed_by_server and await conn.fill():
                pass
        except TimeoutError:
            conn.errors.append(f"the client stayed silent and connected for {LINGER} s")
        except OSError:
            conn.eof.set()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            conn.done.set()
            self._tasks.discard(task)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(
                self._handle, self.host, self.port, limit=2**20, reuse_address=True
            ),
            self._loop,
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- what the tests look at ------------------------------------------------

    def conn(self, index: int = -1, *, wait: float = 10.0) -> Conn:
        """The connection (the last by default) once the client has closed it."""
        conn = self.connections[index]
        conn.done.wait(wait)
        return conn

    def client_closed(self, index: int = -1, wait: float = 10.0) -> bool:
        """Did the client close its socket (the server saw EOF) within ``wait`` seconds?"""
        conn = self.connections[index]
        return conn.eof.wait(wait) or conn.done.is_set()
