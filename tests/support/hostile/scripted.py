"""A scripted, hostile SMTP server for fault-injection tests.

``ScriptedServer`` listens on 127.0.0.1 (ephemeral port) in its own thread and
event loop, so both the blocking :class:`smtpmail.Client` and the
:class:`smtpmail.AsyncClient` can talk to it. Each connection plays a script:
a list of steps (expect a line, send raw bytes, sleep, drip, flood, close,
start TLS, read message data, or behave like a plain SMTP server). Every byte
the client sends is recorded per connection, so tests assert on exact wire
bytes. After its script a connection keeps reading until the client closes,
which tells the tests whether the client closed its socket.

Steps are plain functions returning a ``Step``; a few behaviours come as named
step sequences (functions returning a list of steps, e.g. :func:`drop_after_dot`),
so a test writes ``ScriptedServer([*hello(), *drop_after_dot()])``. The first
connection plays ``script``; with ``then=[...]`` the next ones play the next
scripts (the last repeats).

This is a test tool, not an SMTP server: it checks nothing it is not told to.
An expectation that fails is recorded in ``conn.errors`` (assert on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
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
        #: The client's address (host, port), as the server saw it.
        self.peer: tuple[str, int] = writer.get_extra_info("peername")[:2]

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


def expect(prefix: bytes, reply: bytes | None = None) -> Step:
    """Read one line; record an error unless it starts with ``prefix`` (any case).
    Then send ``reply``, if given (even after a wrong line: the test sees the error)."""

    async def step(conn: Conn) -> None:
        line = await conn.readline()
        if line is None:
            conn.errors.append(f"EOF while expecting {prefix!r}")
            return
        if not line.upper().startswith(prefix.upper()):
            conn.errors.append(f"expected {prefix!r}, got {line!r}")
        if reply is not None:
            await conn.write(reply)

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


def signal(event: threading.Event) -> Step:
    """Set ``event``: tells the test (in another thread) the script got this far."""

    async def step(conn: Conn) -> None:
        event.set()

    return step


def wait_for(event: threading.Event, timeout: float = 10.0) -> Step:
    """Wait (without reading) until the test sets ``event``, or ``timeout`` passes."""

    async def step(conn: Conn) -> None:
        await asyncio.to_thread(event.wait, timeout)

    return step


def read_some() -> Step:
    """Wait until the client has sent something more (it stays unread in ``buf``)."""

    async def step(conn: Conn) -> None:
        if not conn.buf:
            await conn.fill()

    return step


def stall() -> Step:
    """Stop reading and say nothing until the server stops: once the stream's
    buffer (``limit``) and the socket buffers are full, a client still writing blocks."""

    async def step(conn: Conn) -> None:
        await asyncio.get_running_loop().create_future()  # cancelled when the server stops

    return step


def pieces(*parts: bytes, pause: float = 0.05) -> list[Step]:
    """Send each part in its own segment, ``pause`` seconds apart, so the client's
    reads see a reply cut where the script cut it."""
    steps: list[Step] = []
    for i, part in enumerate(parts):
        if i:
            steps.append(sleep(pause))
        steps.append(send(part))
    return steps


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
    stop_at: bytes | None = None,
) -> Step:
    """Answer like a permissive server until QUIT or EOF: EHLO, MAIL, RCPT, DATA, BDAT...

    ``stop_at``: a command verb (``b"DATA"``); the step ends when that command
    arrives, unanswered, so the next steps play what follows it.

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
            if stop_at is not None and line.upper().startswith(stop_at.upper()):
                return
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


# -- named step sequences: whole behaviours -----------------------------------------


def hello(keywords: Sequence[bytes] = DEFAULT_EHLO) -> list[Step]:
    """Answer the client's EHLO with ``keywords`` (the greeting is the server's)."""
    return [expect(b"EHLO", ehlo_reply(keywords))]


def transaction(data_reply: bytes | None = b"250 2.0.0 queued\r\n") -> list[Step]:
    """One mail transaction with DATA, step by step: MAIL, RCPT, DATA, the
    message, then ``data_reply`` to its final dot (None: no reply)."""
    return [
        expect(b"MAIL", b"250 ok\r\n"),
        expect(b"RCPT", b"250 ok\r\n"),
        expect(b"DATA", b"354 go\r\n"),
        read_data(data_reply),
    ]


def plain(
    keywords: Sequence[bytes] = (b"8BITMIME",), data_reply: bytes = b"250 2.0.0 queued\r\n"
) -> list[Step]:
    """A plain, correct server (no PIPELINING) for the whole session."""
    return [respond(keywords, data_reply=data_reply)]


def until_data(keywords: Sequence[bytes] = (b"8BITMIME",)) -> list[Step]:
    """A plain server up to the client's DATA, then 354: the message data comes next."""
    return [respond(keywords, stop_at=b"DATA"), send(b"354 go ahead\r\n")]


def drop_mid_data(keywords: Sequence[bytes] = (b"8BITMIME",)) -> list[Step]:
    """Close the connection once the message data has started to arrive."""
    return [*until_data(keywords), read_some(), close()]


def drop_after_dot(keywords: Sequence[bytes] = (b"8BITMIME",)) -> list[Step]:
    """Read the whole message and its final dot, then close without a reply: the
    client cannot know whether it was delivered (RFC 5321 §4.1.1.4)."""
    return [*until_data(keywords), read_data(reply=None), close()]


def silent_after_dot(keywords: Sequence[bytes] = (b"8BITMIME",)) -> list[Step]:
    """Read the final dot, then say nothing until the client gives up and closes."""
    return [*until_data(keywords), read_data(reply=None)]


def late_after_dot(
    seconds: float,
    keywords: Sequence[bytes] = (b"8BITMIME",),
    reply: bytes = b"250 2.0.0 queued\r\n",
) -> list[Step]:
    """Answer the final dot only after ``seconds``, then go on as a plain server."""
    return [*until_data(keywords), read_data(reply=None), sleep(seconds), send(reply),
            respond(keywords)]  # fmt: skip


# -- the server ------------------------------------------------------------------


class ScriptedServer:
    """Plays ``script`` to every connection; use as a context manager.

    ``greeting`` (when not None) is sent first, before the script's steps.
    ``then``: the scripts of the second, third... connections (the last repeats).
    It listens on ``host`` and ``port`` (default: 127.0.0.1, an ephemeral
    port; an MX address of tests/support/delivery/mxworld.py and port 25 there).
    ``receive_buffer``: what a connection holds unread, in octets, once a step
    stops reading: the kernel's receive buffer is fixed at this size (it no
    longer grows) and so is the stream's. By default both are megabytes.
    """

    def __init__(
        self,
        script: Sequence[Step],
        *,
        greeting: bytes | None = b"220 hostile.test ESMTP ready\r\n",
        host: str = "127.0.0.1",
        port: int = 0,
        then: Sequence[Sequence[Step]] = (),
        receive_buffer: int | None = None,
    ) -> None:
        self.script = list(script)
        self.receive_buffer = receive_buffer
        self.scripts = [self.script, *(list(more) for more in then)]
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
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.greeting is not None:
                await conn.write(self.greeting)
            for step in script:
                if conn.closed_by_server or conn.eof.is_set():
                    break
                await step(conn)
            # Keep reading (and recording) until the client closes its end. A QUIT
            # the script left unread gets its 221, as from any server (RFC 5321
            # §4.1.1.10): the client need not wait it out. A script tests a server
            # silent after QUIT by reading the QUIT in a step.
            quit_answered = False
            while not conn.closed_by_server:
                if not quit_answered and bytes(conn.buf[-6:]).upper() == b"QUIT\r\n":
                    quit_answered = True
                    await conn.write(b"221 2.0.0 hostile.test closing\r\n")
                if not await conn.fill():
                    break
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
        if self.receive_buffer is None:
            serving = asyncio.start_server(
                self._handle, self.host, self.port, limit=2**20, reuse_address=True
            )
        else:
            # Set before listen(), so that every accepted socket has it (and the
            # kernel does not tune it); the stream reads up to twice its limit.
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.bind((self.host, self.port))
            sock.listen()
            serving = asyncio.start_server(
                self._handle, sock=sock, limit=max(1, self.receive_buffer // 2)
            )
        fut = asyncio.run_coroutine_threadsafe(serving, self._loop)
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

    @property
    def messages(self) -> list[bytes]:
        """Every message read in full, on every connection, as the server stores it:
        DATA without its final dot and with dot-stuffing undone (RFC 5321 §4.5.2)."""
        return [_stored(record) for conn in self.connections for record in conn.data]

    def conn(self, index: int = -1, *, wait: float = 10.0) -> Conn:
        """The connection (the last by default) once the client has closed it."""
        conn = self.connections[index]
        conn.done.wait(wait)
        return conn

    async def aconn(self, index: int = -1, *, wait: float = 10.0) -> Conn:
        """:meth:`conn` for ``async def`` tests: waits without blocking their event
        loop, which an AsyncClient needs to finish closing its socket."""
        return await asyncio.to_thread(self.conn, index, wait=wait)

    def client_closed(self, index: int = -1, wait: float = 10.0) -> bool:
        """Did the client close its socket (the server saw EOF) within ``wait`` seconds?"""
        conn = self.connections[index]
        return conn.eof.wait(wait) or conn.done.is_set()


def _stored(record: DataRecord) -> bytes:
    if record.kind != "DATA":
        return record.raw
    lines = record.raw[: -len(b".\r\n")].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
