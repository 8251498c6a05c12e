"""STARTTLS against a hostile server (RFC 3207; "Why TLS is better without STARTTLS").

Replies injected after the 220, STARTTLS refused or not advertised while TLS
is required, a failed handshake, an untrusted certificate, and capabilities
that change once TLS is up. In every failing case the client raises
:class:`~smtpmail.errors.TLSError` and sends not one plain-text byte after
``STARTTLS`` (QUIT at most), never AUTH and never MAIL.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import smtpmail.transport._base as base
from smtpmail import SMTPError, TLSError
from support.harness import drive, op
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    Step,
    close,
    ehlo_reply,
    expect,
    respond,
    send,
    sleep,
    start_tls,
)

USER, PASSWORD = "mailer@example.org", "s3cret-Passw0rd"
BODY = b"Subject: tls\r\n\r\nover TLS\r\n"
SEND = [op("connect"), op("send", BODY, "a@example.org", ["b@example.org"]), op("quit")]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(autouse=True)
def _loopback_is_remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Treat the loopback server as remote: credentials then need TLS."""
    monkeypatch.setattr(base, "LOOPBACK_IS_PRIVATE", False)
    yield


def plaintext_after_starttls(conn: Conn) -> bytes:
    """What the client sent in clear text after its STARTTLS line."""
    clear = bytes(conn.received[: conn.bytes_before_tls or len(conn.received)])
    idx = clear.upper().find(b"STARTTLS\r\n")
    assert idx >= 0, f"the client never said STARTTLS: {clear!r}"
    return clear[idx + len(b"STARTTLS\r\n") :]


def assert_nothing_leaked(conn: Conn) -> None:
    after = plaintext_after_starttls(conn)
    assert after in (b"", b"QUIT\r\n"), f"plain text after STARTTLS: {after!r}"
    clear = bytes(conn.received[: conn.bytes_before_tls or len(conn.received)]).upper()
    assert b"AUTH" not in clear and b"MAIL" not in clear


def run(kind: str, script: list[Step], **kw: Any) -> tuple[SMTPError | None, Conn]:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("tls", "starttls")
    with ScriptedServer(script) as server:
        outcome = drive(kind, server.port, [op("connect")], **kw)
        conn = server.conn()
    assert outcome.error is None or outcome.released
    return outcome.error, conn  # type: ignore[return-value]


TLS_EHLO = [expect(b"EHLO"), send(ehlo_reply([b"STARTTLS", b"AUTH PLAIN LOGIN", b"PIPELINING"]))]

INJECTED = {
    "fake-250": b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n",
    "fake-ehlo": b"220 go ahead\r\n250-evil.test\r\n250 AUTH PLAIN\r\n",
    "fake-235": b"220 go ahead\r\n235 2.7.0 you are in\r\n",
    "partial-line": b"220 go ahead\r\n25",
}


@pytest.mark.parametrize("name", list(INJECTED))
def test_replies_injected_after_the_220(
    kind: str, name: str, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    script = [*TLS_EHLO, expect(b"STARTTLS"), send(INJECTED[name]), start_tls(server_ctx)]
    err, conn = run(kind, script, ssl_context=client_ctx, auth=(USER, PASSWORD))
    assert isinstance(err, TLSError), repr(err)
    assert not conn.tls_started
    assert_nothing_leaked(conn)


@pytest.mark.parametrize("refusal", [b"454 4.7.0 TLS not available\r\n", b"502 5.5.1 no\r\n"])
@pytest.mark.parametrize("auth", [None, (USER, PASSWORD)])
def test_starttls_refused_when_required(
    kind: str, refusal: bytes, auth: tuple[str, str] | None, client_ctx: ssl.SSLContext
) -> None:
    script = [*TLS_EHLO, expect(b"STARTTLS"), send(refusal)]
    err, conn = run(kind, script, ssl_context=client_ctx, auth=auth)
    assert isinstance(err, TLSError), repr(err)
    assert_nothing_leaked(conn)


def test_starttls_not_advertised_when_required(kind: str, client_ctx: ssl.SSLContext) -> None:
    """A stripped EHLO (no STARTTLS) must not talk the client into clear text."""
    script = [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN"])), respond()]
    with ScriptedServer(script) as server:
        outcome = drive(
            kind, server.port, SEND, ssl_context=client_ctx, auth=(USER, PASSWORD), timeout=10.0
        )
        conn = server.conn()
    assert isinstance(outcome.error, TLSError), repr(outcome.error)
    # The client may try STARTTLS anyway (the responder answers 500); nothing else.
    clear = bytes(conn.received).upper()
    assert b"AUTH" not in clear and b"MAIL" not in clear, clear


def test_garbage_instead_of_a_handshake(kind: str, client_ctx: ssl.SSLContext) -> None:
    script = [*TLS_EHLO, expect(b"STARTTLS"), send(b"220 go\r\n")]

    async def not_tls(conn: Conn) -> None:
        await conn.fill(5)
        await conn.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10)
        conn.close()

    err, conn = run(kind, [*script, not_tls], ssl_context=client_ctx, auth=(USER, PASSWORD))
    assert isinstance(err, TLSError), repr(err)
    assert b"AUTH" not in bytes(conn.received).upper()


def test_untrusted_certificate(kind: str, server_ctx: ssl.SSLContext) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)  # trusts some other CA only
    script = [*TLS_EHLO, expect(b"STARTTLS"), send(b"220 go\r\n"), start_tls(server_ctx)]
    err, conn = run(kind, script, ssl_context=other, auth=(USER, PASSWORD))
    assert isinstance(err, TLSError), repr(err)
    assert not conn.tls_started
    assert_nothing_leaked(conn)


def test_capabilities_learned_before_tls_are_forgotten(
    kind: str, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    """Before TLS: a lying EHLO (CHUNKING, AUTH PLAIN). After: AUTH LOGIN, no CHUNKING."""
    before = [b"STARTTLS", b"CHUNKING", b"AUTH PLAIN", b"SIZE 10"]
    after = [b"PIPELINING", b"8BITMIME", b"AUTH LOGIN"]
    script = [respond(before, tls=server_ctx, tls_keywords=after)]
    with ScriptedServer(script) as server:
        outcome = drive(
            kind, server.port, SEND, ssl_context=client_ctx, auth=(USER, PASSWORD), timeout=10.0
        )
        conn = server.conn()
    assert outcome.error is None, outcome.error
    assert conn.tls_started and conn.errors == []
    clear = [line.upper() for line in conn.lines[: conn.lines_before_tls]]
    assert [c.split()[0] for c in clear] == [b"EHLO", b"STARTTLS"]
    secure = [line.split()[0].upper() for line in conn.lines[conn.lines_before_tls :]]
    assert secure[:2] == [b"EHLO", b"AUTH"]
    assert conn.lines[conn.lines_before_tls + 1].upper().startswith(b"AUTH LOGIN")
    assert b"BDAT" not in secure and b"DATA" in secure  # CHUNKING was a pre-TLS lie
    assert b"SIZE=" not in b"".join(conn.lines)  # so was SIZE 10
    assert len(conn.data) == 1 and conn.data[0].kind == "DATA"


async def _reset_after_the_client_hello(conn: Conn) -> None:
    await conn.fill(5)
    conn.writer.transport.abort()  # an RST, the ClientHello unanswered


#: The network failing the handshake (try later) against the server refusing TLS.
HANDSHAKE_CUT = {
    "closed-at-once": ([close()], True),
    "reset-after-client-hello": ([_reset_after_the_client_hello], True),
    "silent": ([sleep(5)], True),
    "not-tls": ([send(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10)], False),
}


@pytest.mark.parametrize("name", list(HANDSHAKE_CUT))
def test_a_handshake_cut_by_the_network_is_transient(
    kind: str, name: str, client_ctx: ssl.SSLContext
) -> None:
    """A timeout or a lost connection during the handshake may pass, as the same
    faults do everywhere else (errors.md: "a lost connection, a timeout");
    a server answering something that is not TLS will not."""
    steps, transient = HANDSHAKE_CUT[name]
    script = [*TLS_EHLO, expect(b"STARTTLS"), send(b"220 go\r\n"), *steps]
    err, conn = run(kind, script, ssl_context=client_ctx, auth=(USER, PASSWORD), timeout=2.0)
    assert isinstance(err, TLSError), repr(err)
    assert err.is_transient is transient, err
    assert not conn.tls_started
    after = plaintext_after_starttls(conn)  # nothing, or the ClientHello (a TLS record)
    assert after == b"" or after.startswith(b"\x16\x03"), after[:40]
