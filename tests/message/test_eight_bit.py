"""8-bit data and servers without 8BITMIME (RFC 6152), and the CLI's warning channel.

Against aiosmtpd with 8BITMIME left out of its EHLO reply (servers.Withholding):
a composed message is 7-bit clean (its non-ASCII text parts quoted-printable
or base64), so it goes to any server and decodes to what was written; a
message the caller supplied with 8-bit data is refused with a typed error
before MAIL FROM. Library warnings reach the command line's stderr as
``smtpmail: warning: ...``.
"""

from __future__ import annotations

import email
from email import policy

import pytest

import smtpmail
from support.clirun import run_cli
from support.harness import Connect
from support.servers import Received, RecordingServer, Withholding

RAW_8BIT = (
    b"From: ann@example.org\r\nTo: bob@example.net\r\nSubject: raw\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nH\xc3\xa9llo\r\n"
)


def srv(server: RecordingServer) -> str:
    return f"--server=smtp://{server.host}:{server.port}"


def text_of(got: Received) -> str:
    msg = email.message_from_bytes(got.content, policy=policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


@pytest.mark.parametrize("withhold", [True, False], ids=["no-8bitmime", "8bitmime"])
def test_a_composed_non_ascii_body_is_seven_bit_clean(withhold: bool) -> None:
    handler = Withholding() if withhold else Withholding(withhold=())
    with RecordingServer(handler=handler) as server:
        done = run_cli(
            "send", srv(server), "--from", "ann@example.org", "--to", "bob@example.net",
            "--subject", "Grüße", "--body", "Héllo wörld, ça va?",
        )  # fmt: skip
    assert done.status == 0, done.stderr
    assert done.stderr == ""  # no warning: nothing needed downgrading
    (got,) = server.messages
    assert got.content.isascii()
    assert b"Content-Transfer-Encoding: 8bit" not in got.content
    # quoted-printable or base64, whichever is shorter (the email package's choice)
    assert b"Content-Transfer-Encoding: base64" in got.content
    assert text_of(got) == "Héllo wörld, ça va?\n"
    assert "BODY=8BITMIME" not in got.mail_options


def test_compose_encodes_every_text_part_seven_bit(tmp_path: object) -> None:
    composed = smtpmail.compose(
        sender="ann@example.org", to=["bob@example.net"], text="Héllo", html="<p>Héllo</p>"
    )
    data = composed.as_bytes()
    assert data.isascii()
    msg = email.message_from_bytes(data, policy=policy.default)
    html = msg.get_body(("html",))
    assert html is not None and "<p>Héllo</p>" in html.get_content()  # type: ignore[attr-defined]


async def test_raw_8bit_to_a_server_without_8bitmime_is_refused_before_mail(
    connect: Connect,
) -> None:
    with RecordingServer(handler=Withholding()) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.ExtensionNotSupported, match="8BITMIME") as info:
                await client.send(RAW_8BIT, "ann@example.org", ["bob@example.net"])
            assert info.value.is_permanent
            ascii_ok = await client.send(RAW_8BIT.replace(b"H\xc3\xa9llo", b"Hello"),
                                         "ann@example.org", ["bob@example.net"])  # fmt: skip
    assert ascii_ok.accepted == ["bob@example.net"]
    commands = [c.split(b":")[0].split(b" ")[0] for c in server.commands()]
    assert commands.count(b"MAIL") == 1  # only the ASCII message's: the 8-bit one never began
    assert len(server.messages) == 1


def test_library_warnings_reach_the_cli_through_one_prefixed_channel() -> None:
    # aiosmtpd offers no DSN: the session warns that the request is dropped.
    with RecordingServer() as server:
        done = run_cli(
            "send", srv(server), "--from", "ann@example.org", "--to", "bob@example.net",
            "--body", "hi", "--dsn-notify", "SUCCESS",
        )  # fmt: skip
    assert done.status == 0, done.stderr
    assert done.stderr.splitlines() == [
        "smtpmail: warning: server does not offer DSN; delivery status requests dropped"
    ]


def test_raw_8bit_from_the_command_line_fails_before_mail() -> None:
    # Streamed (standard input): the 8-bit octets are in what is read ahead.
    with RecordingServer(handler=Withholding()) as server:
        done = run_cli("send", srv(server), "--message", "-", stdin=RAW_8BIT)
    assert done.status == 69, done.stderr  # EX_UNAVAILABLE: a needed extension is missing
    assert "8-bit data" in done.stderr and "8BITMIME" in done.stderr
    assert server.messages == []
    assert not any(c.startswith(b"MAIL") for c in server.commands())
