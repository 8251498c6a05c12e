"""Sans-IO session scaffolding for the protocol tests: canned replies and a
:class:`Session` already past its greeting and EHLO (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

from smtpmail.protocol.actions import Content, Options
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.session import Session
from support.harness import Trace, drive_flow

OK = b"250 2.0.0 OK\r\n"
GO = b"354 go ahead\r\n"
QUEUED = b"250 2.0.0 queued\r\n"


def ehlo_reply(*keywords: str) -> bytes:
    lines = ["mx.example.org", *keywords]
    return b"".join(
        f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode()
        for i, line in enumerate(lines)
    )


def ready(*keywords: str, options: Options | None = None) -> Session:
    """A session past its greeting and EHLO, with these extensions offered."""
    session = Session(options)
    drive_flow(session.greet(), b"220 mx.example.org ESMTP\r\n")
    drive_flow(session.hello("client.example.org"), ehlo_reply(*keywords))
    return session


def content(data: bytes = b"Subject: t\r\n\r\nbody\r\n", **kw: object) -> Content:
    return Content([data], size=len(data), eight_bit=not data.isascii(), **kw)  # type: ignore[arg-type]


def env(*rcpts: str, **kw: object) -> Envelope:
    return Envelope("a@example.org", rcpts or ("b@example.org",), **kw)  # type: ignore[arg-type]


def send(
    session: Session, server: list[bytes], *items: tuple[Envelope, Content], keep: bool = False
) -> tuple[list[SendResult], Trace]:
    trace = Trace()
    results = drive_flow(
        session.transactions(items or [(env(), content())], keep_errors=keep), server, trace
    )
    return results, trace
