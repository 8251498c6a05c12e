"""Real SMTP servers for the tests: aiosmtpd on loopback, recording what it receives.

``RecordingServer`` starts aiosmtpd on a free 127.0.0.1 port in a thread and
keeps, per message, the envelope and content as the server stored them, and
per connection the exact bytes the client sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops a new
    client's SYN, so its connect waits (until its deadline, or an interrupt)."""
    with socket.socket() as listener, contextlib.ExitStack() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(3):  # fill the accept queue (never accepted)
            waiting = queued.enter_context(socket.socket())
            waiting.setblocking(False)
            waiting.connect_ex(("127.0.0.1", port))
        yield port


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    #: When its end of data arrived (time.monotonic), for pacing tests.
    at: float = field(default_factory=time.monotonic)


@dataclass
class Recorder:
    """The aiosmtpd handler: stores messages; can refuse chosen recipients.

    ``refuse`` maps a recipient to the reply its RCPT gets: a string is the
    reply every time; a list is used up one reply per RCPT (then the
    recipient is accepted), so "450 now, 250 on the retry" is
    ``["450 try later"]``. A reply starting with "2" accepts.
    ``rcpt_limit``: recipients one transaction takes; the RCPTs after them get
    "452 4.5.3 too many recipients" (RFC 5321 §4.5.3.1.10).
    """

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str | list[str]] = field(default_factory=dict)  # recipient -> reply
    data_reply: str = "250 OK: queued"
    rcpt_limit: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_limit is not None and len(envelope.rcpt_tos) >= self.rcpt_limit:
            return "452 4.5.3 Error: too many recipients"
        reply = self._refusal(address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    def _refusal(self, address: str) -> str | None:
        with self.lock:
            planned = self.refuse.get(address)
            if isinstance(planned, list):
                return planned.pop(0) if planned else None
            return planned

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(content),
                    list(envelope.mail_options),
                    list(envelope.rcpt_options),
                )
            )
        return self.data_reply


class PeerRecorder(Recorder):
    """A Recorder that also notes the address each MAIL FROM came from (the
    peer the server sees: a source address, or a proxy's egress address)."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[str] = []

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:  # fmt: skip
        self.peers.append(session.peer[0])
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


@dataclass
class Withholding(Recorder):
    """A Recorder whose server leaves chosen keywords out of its EHLO reply
    ("8BITMIME": a server without RFC 6152), through aiosmtpd's EHLO hook."""

    withhold: tuple[str, ...] = ("8BITMIME",)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # (what aiosmtpd's own EHLO does before this hook)
        kept = [r for r in responses if r[4:].split(" ")[0].upper() not in self.withhold]
        # the last line of a multiline reply is "250 ...", the others "250-...".
        return [r[:3] + ("-" if i < len(kept) - 1 else " ") + r[4:] for i, r in enumerate(kept)]


@dataclass
class ConnectionCount:
    """Connections open at once: now, and the most seen."""

    now: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def opened(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def closed(self) -> None:
        with self.lock:
            self.now -= 1


class _RecordingSMTP(SMTP):
    def __init__(
        self, handler: Any, *, wire: list[bytearray], count: ConnectionCount, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._wire = bytearray()
        wire.append(self._wire)
        self._count = count

    def connection_made(self, transport: Any) -> None:
        self._count.opened()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._count.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._wire += data
        super().data_received(data)


class _Controller(Controller):
    def __init__(
        self, handler: Any, *, wire: list[bytearray], smtp_kwargs: dict[str, Any], **kwargs: Any
    ) -> None:
        self._wire = wire
        self._smtp_kwargs = smtp_kwargs
        self.count = ConnectionCount()
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, wire=self._wire, count=self.count, **self._smtp_kwargs)


class RecordingServer:
    """aiosmtpd on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        handler: Recorder | None = None,
        **smtp_kwargs: Any,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.handler = handler or Recorder()
        self.wire: list[bytearray] = []
        smtp_kwargs.setdefault("enable_SMTPUTF8", True)
        smtp_kwargs.setdefault("decode_data", False)
        self._controller = _Controller(
            self.handler,
            wire=self.wire,
            smtp_kwargs=smtp_kwargs,
            hostname=host,
            port=self.port,
            ready_timeout=10,
        )

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def connections(self) -> ConnectionCount:
        """How many connections are open at once (the readiness check's included)."""
        return self._controller.count

    @property
    def raw(self) -> bytes:
        """Every byte every client sent, connections one after another."""
        return b"".join(bytes(w) for w in self.wire)

    def commands(self) -> list[bytes]:
        """The command lines clients sent (message data left out)."""
        out: list[bytes] = []
        for wire in self.wire:
            in_data = False
            for line in bytes(wire).split(b"\r\n"):
                if in_data:
                    in_data = line != b"."
                    continue
                if line:
                    out.append(line)
                in_data = line.upper() == b"DATA"
        return out

    def __enter__(self) -> RecordingServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@contextlib.contextmanager
def fixed_port(port: int, host: str = "127.0.0.1") -> Iterator[None]:
    """Hold ``port`` for one test at a time, across processes (solution.py needs 1025).

    A file lock serialises the test runs of everyone on this machine; then we
    wait (bounded) until nothing else listens there, so a leftover from a
    previous test cannot answer in our place.
    """
    path = Path(tempfile.gettempdir()) / f"smtpmail-tests-port-{port}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _wait_until_free(host, port)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_until_free(host: str, port: int, attempts: int = 300) -> None:
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{host} port {port} stays in use by another program")
