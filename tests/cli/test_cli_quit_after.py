"""``smtpmail send --quit-after STAGE`` (swaks's debugging staple) and the library's
``rehearse`` under it, against a real aiosmtpd: the dialogue stops after the stage,
QUIT follows, nothing is delivered."""

from __future__ import annotations

import asyncio

import pytest

from smtpmail import AsyncClient, Client, Stage
from smtpmail.cli import exits
from smtpmail.errors import InputError, InvalidArgument
from support.clirun import run_cli
from support.servers import Recorder, RecordingServer
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

ENVELOPE = ("--from", "me@example.org", "--to", "a@example.net", "--to", "b@example.net")


def _srv(server: RecordingServer | TLSServer) -> tuple[str, str]:
    return ("--server", f"smtp://{server.host}:{server.port}")


def verbs(server: RecordingServer) -> list[str]:
    return [line.split(b" ")[0].split(b":")[0].decode() for line in server.commands()]


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("connect", []),  # closed before the greeting: no QUIT (RFC 5321 §3.1)
        ("greeting", ["QUIT"]),
        ("ehlo", ["EHLO", "QUIT"]),
        ("tls", ["EHLO", "QUIT"]),  # no STARTTLS offered: nothing more to do
        ("auth", ["EHLO", "QUIT"]),  # no credentials given
        ("mail", ["EHLO", "MAIL FROM", "QUIT"]),
        ("rcpt", ["EHLO", "MAIL FROM", "RCPT TO", "RCPT TO", "QUIT"]),
    ],
)
def test_quit_after_stage(smtpd: RecordingServer, stage: str, expected: list[str]) -> None:
    r = run_cli("send", *_srv(smtpd), *ENVELOPE, "--body", "x", "--quit-after", stage)
    assert r.status == exits.EX_OK, r.stderr
    got = [v if v not in ("MAIL", "RCPT") else v + (" FROM" if v == "MAIL" else " TO")
           for v in verbs(smtpd)]  # fmt: skip
    assert got == expected
    assert smtpd.messages == []  # nothing delivered


def test_quit_after_rcpt_sends_the_envelope_a_send_would(smtpd: RecordingServer) -> None:
    r = run_cli("send", *_srv(smtpd), *ENVELOPE, "--body", "x", "--quit-after", "rcpt", "-v")
    assert r.status == 0, r.stderr
    commands = smtpd.commands()
    assert commands[1].startswith(b"MAIL FROM:<me@example.org> SIZE=")
    assert commands[2:4] == [b"RCPT TO:<a@example.net>", b"RCPT TO:<b@example.net>"]
    assert " C: RCPT TO:<b@example.net>" in r.stderr  # -v: the dialogue up to the stage
    assert " C: QUIT" in r.stderr
    assert "DATA" not in r.stderr


def test_quit_after_rcpt_reports_a_refusal() -> None:
    with RecordingServer(handler=Recorder(refuse={"b@example.net": "550 5.1.1 no such user"})) as s:
        r = run_cli("send", *_srv(s), *ENVELOPE, "--body", "x", "--quit-after", "rcpt")
        assert r.status == exits.EX_UNAVAILABLE, r.stderr
        assert "550" in r.stderr
        assert verbs(s)[-1] == "QUIT"  # the connection survives a refusal: QUIT, not a cut
        assert s.messages == []


def test_quit_after_tls_and_auth(starttls_server: TLSServer, certs: Certs) -> None:
    base = ("send", *_srv(starttls_server), *ENVELOPE, "--body", "x", "-v",
            "--cafile", str(certs.ca_file))  # fmt: skip
    r = run_cli(*base, "--tls", "starttls", "--quit-after", "tls")
    assert r.status == 0, r.stderr
    assert " C: STARTTLS" in r.stderr
    assert r.stderr.count(" C: EHLO ") == 2
    assert " C: AUTH" not in r.stderr
    r = run_cli(*base, "--user", USER, "--password-env", "PW", "--quit-after", "auth",
                environ={"PW": PASSWORD})  # fmt: skip
    assert r.status == 0, r.stderr
    assert " C: AUTH" in r.stderr
    assert " S: 235" in r.stderr
    assert "MAIL FROM" not in r.stderr
    assert starttls_server.messages == []


def test_rehearse_is_the_same_in_both_clients(smtpd: RecordingServer) -> None:
    Client(smtpd.host, smtpd.port).rehearse(Stage.RCPT, b"x", "me@example.org", ["a@example.net"])
    first = verbs(smtpd)
    smtpd.wire.clear()

    async def main() -> None:
        client = AsyncClient(smtpd.host, smtpd.port)
        await client.rehearse("rcpt", b"x", "me@example.org", ["a@example.net"])

    asyncio.run(main())
    assert first == verbs(smtpd) == ["EHLO", "MAIL", "RCPT", "QUIT"]
    assert smtpd.messages == []


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_rehearse_checks_its_input_before_connecting(client: type[Client | AsyncClient]) -> None:
    with pytest.raises(InvalidArgument, match="unknown stage 'data'"):
        asyncio.run(_maybe(client("127.0.0.1", 9).rehearse("data")))
    with pytest.raises(InputError):  # an envelope for mail/rcpt, checked first
        asyncio.run(_maybe(client("127.0.0.1", 9).rehearse("rcpt", b"x", "bad", ["a@b.c"])))


async def _maybe(result: object) -> None:
    if asyncio.iscoroutine(result):
        await result
