"""STARTTLS, implicit TLS and AUTH against real aiosmtpd servers with trustme certificates."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpmail
from smtpmail import Credentials, TLSMode, TLSOptions
from support.harness import Connect
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    expect,
    hello,
    send,
    start_tls,
    transaction,
)
from support.tlsservers import (
    PASSWORD,
    USER,
    Certs,
    SaslRecorder,
    TLSServer,
    authenticator,
)

MSG = b"Subject: tls\r\n\r\nhello over TLS\r\n"


def secret_forms() -> list[str]:
    """The password and every base64 form that would give it away."""
    raw = PASSWORD.encode()
    plain = f"\0{USER}\0{PASSWORD}".encode()
    return [PASSWORD, base64.b64encode(raw).decode(), base64.b64encode(plain).decode()]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in secret_forms():
            assert form not in text, f"secret {form!r} leaked"


class Transcript(list[tuple[str, str]]):
    def __call__(self, kind: str, line: str) -> None:
        self.append((kind, line))

    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", None])
def test_starttls_then_auth_sync(
    starttls_server: TLSServer,
    certs: Certs,
    mechanism: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpmail")
    transcript = Transcript()
    with smtpmail.Client(
        "127.0.0.1",
        starttls_server.port,
        auth=(USER, PASSWORD),
        auth_mechanism=mechanism,
        tls_options=TLSOptions(ca_file=certs.ca_file),
        transcript=transcript,
    ) as client:
        assert client.tls_mode is TLSMode.REQUIRED  # credentials make TLS required
        info = client.tls_info
        assert info is not None and info.verified
        assert info.version in ("TLSv1.2", "TLSv1.3")
        assert "127.0.0.1" in info.names
        result = client.send(MSG, "a@example.org", ["b@example.org"])
        assert result.tls is info  # reachable from the result too
    (msg,) = starttls_server.messages
    assert msg.content.endswith(b"hello over TLS\r\n")
    cmds = starttls_server.commands()
    # EHLO, STARTTLS, then (over TLS) EHLO again before AUTH.
    assert cmds[0].startswith(b"EHLO") and cmds[1] == b"STARTTLS"
    assert cmds[2].startswith(b"EHLO") and cmds[3].startswith(b"AUTH ")
    shown = transcript.text()
    assert f"client: AUTH {mechanism or 'PLAIN'}" in shown
    assert "****" in shown
    assert "TLS: TLSv1." in shown
    assert_no_secret(shown, caplog.text)


async def test_starttls_then_auth_async(
    starttls_server: TLSServer, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpmail")
    transcript = Transcript()
    async with smtpmail.AsyncClient(
        "127.0.0.1",
        starttls_server.port,
        auth=Credentials(USER, lambda: PASSWORD),
        auth_mechanism="LOGIN",
        tls_options=TLSOptions(ca_file=certs.ca_file),
        transcript=transcript,
    ) as client:
        assert client.tls_info is not None and client.tls_info.verified
        await client.send(MSG, "a@example.org", "b@example.org")
    assert len(starttls_server.messages) == 1
    cmds = starttls_server.commands()
    assert cmds[1] == b"STARTTLS" and cmds[2].startswith(b"EHLO")
    assert ("client", "AUTH LOGIN") in transcript
    # LOGIN's prompts are no secret (aiosmtpd's "User Name\0", "Password\0"),
    # and showed as "334 ****"; the answers to them stay hidden.
    assert ("server", "334 VXNlciBOYW1lAA==") in transcript
    assert ("server", "334 UGFzc3dvcmQA") in transcript
    assert transcript.text().count("client: ****") == 2
    assert_no_secret(transcript.text(), caplog.text)


@pytest.mark.parametrize("use_async", [False, True])
async def test_implicit_tls(certs: Certs, use_async: bool) -> None:
    with TLSServer(
        implicit=certs.server_context(),
        authenticator=authenticator(),
        auth_require_tls=False,  # aiosmtpd does not see the TLS its controller wraps
    ) as server:
        kw = dict(
            port=server.port,
            tls=TLSMode.IMPLICIT,
            tls_options=TLSOptions(ca_file=certs.ca_file),
            auth=(USER, PASSWORD),
        )
        if use_async:
            result = await smtpmail.send_async(MSG, "a@example.org", "b@example.org", **kw)
        else:
            result = smtpmail.send(MSG, "a@example.org", "b@example.org", **kw)
    assert result.ok
    assert len(server.messages) == 1
    # No STARTTLS inside implicit TLS: the first command is EHLO, then AUTH.
    cmds = server.commands()
    assert cmds[0].startswith(b"EHLO") and cmds[1].startswith(b"AUTH PLAIN ")


def test_wrong_password_is_refused_and_never_shown(
    starttls_server: TLSServer, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpmail")
    transcript = Transcript()
    with pytest.raises(smtpmail.AuthenticationError) as info:
        smtpmail.Client(
            "127.0.0.1",
            starttls_server.port,
            auth=Credentials(USER, PASSWORD + "x"),
            tls_options=TLSOptions(ca_file=certs.ca_file),
            transcript=transcript,
        ).connect()
    assert info.value.code == 535 and info.value.is_permanent
    assert starttls_server.messages == []
    wrong = PASSWORD + "x"
    for text in (str(info.value), repr(info.value), transcript.text(), caplog.text):
        assert wrong not in text
        assert base64.b64encode(f"\0{USER}\0{wrong}".encode()).decode() not in text


def test_credentials_repr_hides_the_secret() -> None:
    for c in (Credentials(USER, PASSWORD), Credentials(USER, token=PASSWORD)):
        assert PASSWORD not in repr(c) and PASSWORD not in str(c)
        assert USER in repr(c)
    client = smtpmail.Client("127.0.0.1", 587, auth=(USER, PASSWORD))
    assert PASSWORD not in repr(client) and PASSWORD not in repr(vars(client))


def test_tls_mode_defaults() -> None:
    assert smtpmail.Client("h", 465).tls_mode is TLSMode.IMPLICIT
    assert smtpmail.Client("h", 587, auth=("u", "p")).tls_mode is TLSMode.REQUIRED
    assert smtpmail.Client("h", 25).tls_mode is TLSMode.OPPORTUNISTIC
    assert smtpmail.Client("h", 25, tls="none").tls_mode is TLSMode.PLAINTEXT_INSECURE
    assert smtpmail.Client("h", 25, tls="starttls").tls_mode is TLSMode.REQUIRED
    with pytest.raises(smtpmail.InputError):
        smtpmail.Client("h", 25, tls="maybe")


def test_opportunistic_uses_starttls_when_offered(certs: Certs) -> None:
    with TLSServer(tls_context=certs.server_context()) as server:
        with smtpmail.Client(
            "127.0.0.1", server.port, tls_options=TLSOptions(ca_file=certs.ca_file)
        ) as client:
            assert client.tls_mode is TLSMode.OPPORTUNISTIC
            assert client.tls_info is not None
            client.send(MSG, "a@example.org", "b@example.org")
        assert server.commands()[1] == b"STARTTLS"


def test_plaintext_mode_never_starts_tls(certs: Certs) -> None:
    with TLSServer(tls_context=certs.server_context()) as server:
        with smtpmail.Client("127.0.0.1", server.port, tls=TLSMode.PLAINTEXT_INSECURE) as client:
            assert client.tls_info is None
            client.send(MSG, "a@example.org", "b@example.org")
        assert b"STARTTLS" not in server.commands()


def test_server_hostname_checks_the_name_when_connecting_to_an_address(
    certs: Certs, tmp_path: Path
) -> None:
    leaf = certs.ca.issue_cert("mail.example.org")
    with TLSServer(tls_context=certs.server_context(leaf)) as server:
        opts = TLSOptions(ca_file=certs.ca_file, server_hostname="mail.example.org")
        with smtpmail.Client("127.0.0.1", server.port, tls="starttls", tls_options=opts) as c:
            assert c.tls_info is not None and c.tls_info.server_hostname == "mail.example.org"
        # Without it, the address is checked and does not match.
        with pytest.raises(smtpmail.TLSError, match="certificate"):
            smtpmail.Client(
                "127.0.0.1",
                server.port,
                tls="starttls",
                tls_options=TLSOptions(ca_file=certs.ca_file),
            ).connect()


@pytest.fixture
def sasl_server(certs: Certs) -> Iterator[TLSServer]:
    """aiosmtpd over STARTTLS serving SCRAM (by the scramp package) and OAUTHBEARER."""
    with TLSServer(
        handler=SaslRecorder(),
        tls_context=certs.server_context(),
        require_starttls=True,
        auth_required=True,
        auth_exclude_mechanism=["PLAIN", "LOGIN"],
    ) as server:
        yield server


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", None])
def test_scram_against_scramp(sasl_server: TLSServer, certs: Certs, mechanism: str | None) -> None:
    transcript = Transcript()
    with smtpmail.Client(
        "127.0.0.1",
        sasl_server.port,
        auth=(USER, PASSWORD),
        auth_mechanism=mechanism,
        tls_options=TLSOptions(ca_file=certs.ca_file),
        transcript=transcript,
    ) as client:
        client.send(MSG, "a@example.org", "b@example.org")
    handler = sasl_server.handler
    assert isinstance(handler, SaslRecorder)
    assert handler.scram_logins == [mechanism or "SCRAM-SHA-256"]
    assert len(sasl_server.messages) == 1
    assert_no_secret(transcript.text())


async def test_scram_wrong_password_async(sasl_server: TLSServer, certs: Certs) -> None:
    with pytest.raises(smtpmail.AuthenticationError) as info:
        await smtpmail.AsyncClient(
            "127.0.0.1",
            sasl_server.port,
            auth=(USER, "not the password"),
            tls_options=TLSOptions(ca_file=certs.ca_file),
        ).connect()
    assert info.value.code == 535


@pytest.mark.parametrize("token", ["good-token", "stale-token"])
async def test_oauthbearer(sasl_server: TLSServer, certs: Certs, token: str) -> None:
    client = smtpmail.AsyncClient(
        "127.0.0.1",
        sasl_server.port,
        auth=Credentials(USER, token=token),
        tls_options=TLSOptions(ca_file=certs.ca_file),
    )
    if token == "good-token":
        async with client:
            await client.send(MSG, "a@example.org", "b@example.org")
        assert len(sasl_server.messages) == 1
    else:
        # The error challenge is answered with %x01 (RFC 7628 §3.2.3), then 535.
        with pytest.raises(smtpmail.AuthenticationError) as info:
            await client.connect()
        assert info.value.code == 535


def test_client_certificate(certs: Certs, tmp_path: Path) -> None:
    ctx = certs.server_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    certs.ca.configure_trust(ctx)
    client_cert = certs.ca.issue_cert("client@example.org")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    with TLSServer(tls_context=ctx) as server:
        opts = TLSOptions(ca_file=certs.ca_file, cert_file=str(cert_file), key_file=str(key_file))
        with smtpmail.Client("127.0.0.1", server.port, tls="starttls", tls_options=opts) as c:
            c.send(MSG, "a@example.org", "b@example.org")
        assert len(server.messages) == 1
        # Without the client certificate the server ends the handshake.
        with (
            pytest.raises((smtpmail.TLSError, smtpmail.ConnectionLost)),
            smtpmail.Client(
                "127.0.0.1",
                server.port,
                tls="starttls",
                tls_options=TLSOptions(ca_file=certs.ca_file),
            ) as c,
        ):
            c.send(MSG, "a@example.org", "b@example.org")
        assert len(server.messages) == 1


async def test_what_was_offered_before_tls_is_forgotten(certs: Certs, connect: Connect) -> None:
    """AUTH mechanisms and extensions come only from the EHLO after STARTTLS."""
    script = [
        *hello((b"STARTTLS", b"AUTH PLAIN CRAM-MD5", b"PIPELINING", b"SIZE 10")),
        expect(b"STARTTLS", b"220 ready\r\n"),
        start_tls(certs.server_context()),
        expect(b"EHLO", b"250-tls.example\r\n250-AUTH LOGIN\r\n250 SIZE 1000000\r\n"),
        expect(b"AUTH LOGIN", b"334 VXNlcm5hbWU6\r\n"),
        expect(b"", b"334 UGFzc3dvcmQ6\r\n"),
        expect(b"", b"235 2.7.0 ok\r\n"),
        *transaction(b"250 queued\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]

    with ScriptedServer(script) as server:
        kw = dict(auth=(USER, PASSWORD), tls_options=TLSOptions(ca_file=certs.ca_file))
        async with connect(server.port, **kw) as client:
            assert set(client.extensions) == {"AUTH", "SIZE"}
            assert client.extensions.size_limit == 1000000
            await client.send(MSG, "a@example.org", "b@example.org")
        conn = await server.aconn()
        assert conn.errors == [] and conn.tls_started
        assert len(server.connections) == 1


async def test_idle_tls_connection_is_reused(
    starttls_server: TLSServer, certs: Certs, connect: Connect
) -> None:
    """The check before each operation for a server that closed the connection
    does not mistake a live TLS connection for a closed one."""
    kw = dict(auth=(USER, PASSWORD), tls_options=TLSOptions(ca_file=certs.ca_file))
    async with connect(starttls_server.port, **kw) as client:
        for _ in range(3):
            await client.send(MSG, "a@example.org", "b@example.org")
    assert len(starttls_server.messages) == 3
    assert len([w for w in starttls_server.wire if w]) == 1  # (aiosmtpd probes once, empty)


async def test_tls_connection_closed_while_idle_is_reopened(certs: Certs, connect: Connect) -> None:
    """A server that says 421 over TLS and leaves between two messages costs a
    reconnect (with STARTTLS again), not a failed send."""
    session = [
        *hello((b"STARTTLS",)),
        expect(b"STARTTLS", b"220 ready\r\n"),
        start_tls(certs.server_context()),
        expect(b"EHLO", b"250 tls.example\r\n"),
        *transaction(b"250 queued\r\n"),
    ]
    left = threading.Event()

    async def leave(conn: Conn) -> None:
        # The 421 was written to the socket by the step before (asyncio's TLS
        # transport writes at once): on loopback it is in the client's socket,
        # the gap the test is about. The close (close_notify, then the TCP
        # connection's) need not be awaited: a blocking client reads nothing
        # until its next send, and asyncio waits for the peer's close_notify.
        conn.close()
        left.set()

    first = [*session, send(b"421 4.4.2 idle too long\r\n"), leave]
    second = [*session, expect(b"QUIT", b"221 bye\r\n")]

    with ScriptedServer(first, then=[second]) as server:
        kw = dict(tls="starttls", tls_options=TLSOptions(ca_file=certs.ca_file))
        async with connect(server.port, **kw) as client:
            await client.send(MSG, "a@example.org", "b@example.org")
            assert await asyncio.to_thread(left.wait, 10)
            await client.send(MSG, "a@example.org", "b@example.org")
            assert client.tls_info is not None
        assert [(await server.aconn(i)).errors for i in (0, 1)] == [[], []]
        assert len(server.connections) == 2
