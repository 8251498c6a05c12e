"""A tiny scripted SMTP server for fault injection (timeouts, drops, 421, junk).

Behaviour is tested against real servers; this one only does what real
servers do when they misbehave, on cue. Each accepted connection runs
``script(conn)`` in a thread; the script talks with :class:`Conn`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

EHLO = b"250-scripted.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


class Conn:
    """One server-side connection, as the script sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(20)
        # No Nagle: each send leaves at once, so "sent" means "on the client's side".
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.lines: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drip(self, data: bytes, every: float) -> None:
        """Send one byte at a time: slow, but never silent for long."""
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])
            time.sleep(every)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        self.lines.append(line)
        return line

    def expect(self, prefix: bytes, reply: bytes | None = None) -> bytes:
        line = self.line()
        assert line.upper().startswith(prefix), (line, prefix)
        if reply is not None:
            self.send(reply)
        return line

    def data(self) -> bytes:
        """The message data up to and including the terminator line."""
        out = []
        while (line := self.line()) != b".":
            out.append(line)
        return b"\r\n".join(out)

    def greet_and_ehlo(self, ehlo: bytes = EHLO) -> None:
        self.send(b"220 scripted.example ESMTP\r\n")
        self.expect(b"EHLO", ehlo)

    def close(self) -> None:
        self.sock.close()


class CuedServer:
    """Runs ``script`` for each connection on a free loopback port."""

    def __init__(self, *scripts: Callable[[Conn], None], host: str = "127.0.0.1") -> None:
        self.scripts = list(scripts)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family)
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)  # so the accept loop notices the end
        self._stop = threading.Event()
        self.host = host
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self.peers: list[tuple[str, int]] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        for script in self.scripts:
            while True:
                if self._stop.is_set():
                    return
                try:
                    sock, peer = self.listener.accept()
                    break
                except TimeoutError:
                    continue
                except OSError:
                    return
            self.peers.append(peer)
            sock.settimeout(None)
            conn = Conn(sock)
            self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(script, conn), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, script: Callable[[Conn], None], conn: Conn) -> None:
        try:
            script(conn)
        except (EOFError, OSError):
            pass  # the client went away: that is the client's business
        except BaseException as exc:  # an assertion in the script: report it
            self.errors.append(exc)
        finally:
            conn.close()

    async def __aenter__(self) -> CuedServer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Join in a thread: the event loop must keep running so that an asyncio
        # client's close actually reaches the script waiting on the socket.
        import asyncio

        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)

    def __enter__(self) -> CuedServer:
        self._accept.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._accept.join(10)
        self.listener.close()
        for t in self._threads:
            t.join(10)
        if exc is None and self.errors:
            raise self.errors[0]
