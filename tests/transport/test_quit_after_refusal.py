"""A refusal while the connection is being set up still ends with QUIT.

RFC 5321 §4.1.1.10 and §3.8: the client MUST NOT close the channel until it
has sent QUIT; §3.1: a server that greets with 554 "MUST still wait for the
client to send a QUIT". swaks says QUIT after a refused AUTH; so must both
clients. A 421 (the server is leaving) and a failed TLS handshake (the stream
is unusable) get no QUIT.
"""

from __future__ import annotations

import pytest

import smtpmail
from smtpmail import Credentials, TLSOptions
from support.harness import Connect
from support.hostile.scripted import ScriptedServer, Step, close, expect
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

EHLO_TLS = b"250-hostile.test\r\n250 STARTTLS\r\n"


async def test_wrong_password_then_quit(
    starttls_server: TLSServer, certs: Certs, connect: Connect
) -> None:
    client = connect(
        starttls_server.port,
        auth=Credentials(USER, PASSWORD + "x"),
        tls_options=TLSOptions(ca_file=certs.ca_file),
    )
    with pytest.raises(smtpmail.AuthenticationRefused):
        await client.connect()
    assert not client.is_connected
    commands = starttls_server.commands()
    assert commands[-1] == b"QUIT", commands[-2:]
    assert commands[-2].startswith(b"AUTH ")


QUIT = expect(b"QUIT", b"221 2.0.0 bye\r\n")
GREETING = b"220 hostile.test ESMTP\r\n"

# (the greeting, what the server does next, the client's tls mode, the error, QUIT owed?)
REFUSALS: dict[str, tuple[bytes, list[Step], str, type[smtpmail.SMTPError], bool]] = {
    "554 greeting": (
        b"554 5.7.1 no service for you\r\n",
        [QUIT],
        "opportunistic",
        smtpmail.GreetingRefused,
        True,
    ),
    "EHLO and HELO refused": (
        GREETING,
        [
            expect(b"EHLO", b"550 5.7.1 not you\r\n"),
            expect(b"HELO", b"550 5.7.1 not you either\r\n"),
            QUIT,
        ],
        "opportunistic",
        smtpmail.ReplyError,
        True,
    ),
    "STARTTLS refused, TLS required": (
        GREETING,
        [expect(b"EHLO", EHLO_TLS), expect(b"STARTTLS", b"454 4.7.0 TLS not available\r\n"), QUIT],
        "starttls",
        smtpmail.TLSError,
        True,
    ),
    "421 greeting": (
        b"421 4.3.2 shutting down\r\n",
        [close()],
        "opportunistic",
        smtpmail.ServiceClosing,
        False,
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_refused_setup_says_quit(connect: Connect, case: str) -> None:
    greeting, script, tls, error, quits = REFUSALS[case]
    with ScriptedServer(script, greeting=greeting) as server:
        client = connect(server.port, tls=tls, timeout=10.0)
        with pytest.raises(error):
            await client.connect()
        assert not client.is_connected
        conn = await server.aconn()
        assert conn.errors == []
        assert conn.lines[-1:] == ([b"QUIT\r\n"] if quits else [])


# A server silent after the QUIT (it reads on and never answers): the client
# waits for the 221 at most QUIT_GRACE, then raises the refusal itself, not the
# wait's timeout (in the compiled build that timeout once replaced the refusal).
SILENT: dict[str, tuple[bytes, list[Step], type[smtpmail.SMTPError]]] = {
    "554 greeting": (
        b"554 5.7.1 no service for you\r\n",
        [expect(b"QUIT")],
        smtpmail.GreetingRefused,
    ),
    "AUTH refused": (
        GREETING,
        [
            expect(b"EHLO", b"250-hostile.test\r\n250 AUTH PLAIN\r\n"),
            expect(b"AUTH", b"535 5.7.8 authentication failed\r\n"),
            expect(b"QUIT"),
        ],
        smtpmail.AuthenticationRefused,
    ),
}


@pytest.mark.parametrize("case", SILENT)
async def test_a_silent_server_after_quit_still_gets_the_refusal(
    connect: Connect, case: str
) -> None:
    greeting, script, error = SILENT[case]
    with ScriptedServer(script, greeting=greeting) as server:
        client = connect(
            server.port,
            tls="none",
            auth=Credentials(USER, PASSWORD),
            allow_plaintext_auth=True,
            timeout=30.0,
        )
        with pytest.raises(error):
            await client.connect()
        assert not client.is_connected
        conn = await server.aconn()
        assert conn.errors == []
        assert conn.lines[-1:] == [b"QUIT\r\n"]
