"""Re-encoding a supplied message's 8-bit MIME parts for a server without 8BITMIME
(RFC 6152 §3): smtpmail.message.eightbit, ``convert_8bit=`` on both clients, and
``--convert-8bit`` / ``convert_8bit`` through the real console scripts, against
aiosmtpd with 8BITMIME withheld (servers.Withholding). Order: Bcc removal, then
the conversion, then DKIM, so the signature covers what is sent."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpmail.errors import ExtensionNotSupported
from smtpmail.message.eightbit import to_seven_bit
from support.dkimcheck import key_file, make_key, verify
from support.harness import Connect
from support.servers import RecordingServer, Withholding

SCRIPTS = Path(sys.executable).parent

MULTIPART = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: bob@example.net,\r\n"
    b"  cy@example.net\r\nBcc: hidden@example.net\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nH\xc3\xa9llo w\xc3\xb6rld\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
    b"\r\n\x00\xff\xfe\x80 binary\r\n--XX\r\nContent-Type: text/plain\r\n\r\nascii\r\n"
    b"--XX--\r\nepilogue\r\n"
)

#: (An 8-bit header field needs SMTPUTF8, and SMTPUTF8 needs 8BITMIME: no conversion helps.)
LETTER = MULTIPART.replace(b"Subject: Gr\xc3\xbc\xc3\x9fe", b"Subject: hello")


def leaves(data: bytes) -> list[tuple[str, bytes]]:
    """(type, decoded body) of each leaf part, as a receiving client decodes it."""
    msg = email.message_from_bytes(data, policy=policy.compat32)
    found = []
    for part in msg.walk():
        if not part.is_multipart():
            body = part.get_payload(decode=True)
            assert isinstance(body, bytes)
            found.append((part.get_content_type(), body))
    return found


def lines(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def same_content(before: bytes, after: bytes) -> None:
    """Each part decodes as before: a re-encoded base64 part to the same octets, a
    re-encoded text part to the same lines (RFC 2046 §4.1.1: CRLF, whatever the
    source used); a part left as it was, to the same lines (the core sends every
    line ending as CRLF anyway, RFC 5321 §2.3.8)."""
    old, new = leaves(before), leaves(after)
    assert [k for k, _ in old] == [k for k, _ in new]
    for (kind, was), (_, now) in zip(old, new, strict=True):
        if was.isascii() or kind.startswith("text/"):
            assert lines(now) == lines(was)
        else:
            assert now == was


# -- the transform -------------------------------------------------------------


def test_parts_are_re_encoded_and_nothing_else_changes() -> None:
    out = to_seven_bit(MULTIPART.replace(b"Subject: Gr\xc3\xbc\xc3\x9fe", b"Subject: hi"))
    assert out.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\nH=C3=A9llo w=C3=B6rld\r\n" in out
    assert b"Content-Transfer-Encoding: base64\r\n\r\nAP/+gCBiaW5hcnk=\r\n" in out
    # header fields (folded as given), boundaries, preamble, epilogue, ASCII parts: as they were
    head = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: bob@example.net,\r\n  cy@"
    assert out.startswith(head) and b"preamble\r\n--XX\r\n" in out
    assert out.endswith(b"--XX\r\nContent-Type: text/plain\r\n\r\nascii\r\n--XX--\r\nepilogue\r\n")
    same_content(MULTIPART, out)


def test_ascii_and_already_encoded_messages_come_back_byte_for_byte() -> None:
    plain = b"Subject: x\r\n\r\nhello\r\n"
    assert to_seven_bit(plain) is plain
    utf8_header_only = b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhello\r\n"
    assert to_seven_bit(utf8_header_only) == utf8_header_only  # SMTPUTF8's business


def test_a_message_without_mime_gets_mime_version() -> None:
    out = to_seven_bit(b"Subject: x\n\nH\xc3\xa9llo\n")
    assert out.isascii() and b"MIME-Version: 1.0\n" in out
    assert b"Content-Transfer-Encoding: quoted-printable\n" in out


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)
LINE_END = st.sampled_from([b"\r\n", b"\n"])


@settings(max_examples=200, deadline=None)
@given(text=TEXT, blob=st.binary(max_size=300), nl=LINE_END, long_line=st.booleans())
def test_conversion_round_trips_the_decoded_content(
    text: str, blob: bytes, nl: bytes, long_line: bool
) -> None:
    body = text.encode("utf-8") + (b"x\xc3\xa9" * 400 if long_line else b"")
    message = nl.join([
        b"From: a@example.org", b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="=_b0undary_="', b"",
        b"--=_b0undary_=", b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit", b"", body,
        b"--=_b0undary_=", b"Content-Type: image/png", b"Content-Transfer-Encoding: binary",
        b"", blob, b"--=_b0undary_=--", b"",
    ])  # fmt: skip
    out = to_seven_bit(message)
    assert out.isascii()  # (the header section is ASCII here: only the parts were 8-bit)
    assert all(len(line) <= 998 for line in out.split(b"\n"))  # RFC 5322 §2.1.1
    same_content(message, out)


# -- both clients ----------------------------------------------------------------


async def test_clients_convert_when_asked(connect: Connect) -> None:
    with RecordingServer(handler=Withholding()) as server:
        async with connect(server.port, convert_8bit=True) as client:
            result = await client.send(LETTER, "j@example.org", ["bob@example.net"])
    assert result.accepted == ["bob@example.net"]
    (got,) = server.messages
    assert "BODY=8BITMIME" not in got.mail_options
    assert b"Bcc:" not in got.content  # removed before converting
    assert got.content.isascii()
    same_content(LETTER, got.content)


async def test_clients_send_unchanged_to_a_server_with_8bitmime(connect: Connect) -> None:
    """As an MTA (Postfix converts only when the next hop lacks 8BITMIME): asking
    for the conversion does not change what a server that takes 8-bit data gets."""
    with RecordingServer() as server:
        async with connect(server.port, convert_8bit=True) as client:
            result = await client.send(LETTER, "j@example.org", ["bob@example.net"])
    assert result.accepted == ["bob@example.net"]
    (got,) = server.messages
    assert "BODY=8BITMIME" in got.mail_options
    assert got.content == lines(LETTER).replace(b"Bcc: hidden@example.net\n", b"").replace(
        b"\n", b"\r\n"
    )


def nested(depth: int) -> bytes:
    """An 8-bit text part inside ``depth`` multiparts (a MIME bomb past about 500)."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    leaf = b"Content-Type: text/plain; charset=utf-8\r\n\r\nh\xc3\xa9llo\r\n"
    return b"From: j@example.org\r\nMIME-Version: 1.0\r\n" + opening + leaf + closing


async def test_a_message_nested_too_deep_to_convert_is_a_typed_error(connect: Connect) -> None:
    """Not a RecursionError from the email package: ExtensionNotSupported (5.6.3),
    the message refused before its transaction, the next one sent."""
    assert to_seven_bit(nested(100)).isascii()
    with pytest.raises(ExtensionNotSupported) as caught:
        to_seven_bit(nested(1200))
    assert caught.value.enhanced_status == "5.6.3" and not caught.value.is_transient
    with RecordingServer(handler=Withholding()) as server:
        async with connect(server.port, convert_8bit=True) as client:
            with pytest.raises(ExtensionNotSupported, match="nest too deeply"):
                await client.send(nested(1200), "j@example.org", ["bob@example.net"])
            result = await client.send(LETTER, "j@example.org", ["bob@example.net"])
    assert result.accepted == ["bob@example.net"]
    assert len(server.messages) == 1 and server.messages[0].content.isascii()
    assert [c for c in server.commands() if c.startswith(b"MAIL")] == [
        b"MAIL FROM:<j@example.org> SIZE=457"
    ]  # the refused message opened no transaction


PREAMBLE_8BIT = (
    b"From: j@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n"
    b"\r\npr\xc3\xa9amble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9llo\r\n--XX--\r\n"
)


@pytest.mark.parametrize("signed", [False, True])
async def test_8bit_data_conversion_cannot_reach_is_said_as_such(
    connect: Connect, tmp_path: Path, signed: bool
) -> None:
    """Converted, the part is 7-bit but the preamble is not: the error says so
    (5.6.3). Before, it advised convert_8bit=True, which the caller had given."""
    key = make_key(tmp_path, "ed25519-sha256") if signed else None
    with RecordingServer(handler=Withholding()) as server:
        async with connect(server.port, convert_8bit=True, dkim=key) as client:
            with pytest.raises(ExtensionNotSupported) as caught:
                await client.send(PREAMBLE_8BIT, "j@example.org", ["bob@example.net"])
            result = await client.send(LETTER, "j@example.org", ["bob@example.net"])
    assert "still has 8-bit data outside its parts' bodies" in str(caught.value)
    assert "convert_8bit=True" not in str(caught.value)
    assert caught.value.enhanced_status == "5.6.3"
    assert result.accepted == ["bob@example.net"] and len(server.messages) == 1


# -- the console scripts ---------------------------------------------------------


def run(
    script: str, *argv: str, stdin: bytes, **environ: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SMTPMAIL_CONFIG"}
    env.setdefault("XDG_CONFIG_HOME", "/nonexistent/xdg")
    env.update(environ)
    return subprocess.run(
        [str(SCRIPTS / script), *argv], input=stdin, capture_output=True, timeout=60,
        check=False, env=env,
    )  # fmt: skip


def test_send_refuses_then_converts_with_the_flag_and_dkim_signs_what_is_sent(
    tmp_path: Path,
) -> None:
    key = make_key(tmp_path, "ed25519-sha256")
    dkim = ["--dkim-selector", key.selector, "--dkim-domain", key.domain]
    dkim += ["--dkim-key", str(key_file(tmp_path, "ed25519-sha256"))]
    with RecordingServer(handler=Withholding()) as server:
        argv = ["send", f"--server=smtp://{server.host}:{server.port}", "--message", "-", *dkim]
        refused = run("smtpmail", *argv, stdin=LETTER)
        done = run("smtpmail", *argv, "--convert-8bit", stdin=LETTER)
    assert refused.returncode == 69 and b"--convert-8bit" in refused.stderr
    assert done.returncode == 0, done.stderr
    (got,) = server.messages
    assert got.content.isascii() and b"Bcc:" not in got.content
    same_content(LETTER, got.content)
    assert verify(got.content, key)  # signed after converting: the signature holds


def test_sendmail_converts_with_the_account_key_or_the_flag(tmp_path: Path) -> None:
    with RecordingServer(handler=Withholding()) as server:
        home = tmp_path / "xdg"
        (home / "smtpmail").mkdir(parents=True)
        (home / "smtpmail" / "config.toml").write_text(
            f'[accounts.work]\nserver = "smtp://{server.host}:{server.port}"\nconvert_8bit = true\n'
        )
        by_key = run("smtpmail-sendmail", "-t", stdin=LETTER, XDG_CONFIG_HOME=str(home))
        url = f"--server=smtp://{server.host}:{server.port}"
        # a flag: the argument after it is a recipient, not its value
        by_flag = run("smtpmail-sendmail", url, "--convert-8bit", "cy@example.net", stdin=LETTER)
        refused = run("smtpmail-sendmail", url, "cy@example.net", stdin=LETTER)
    assert by_key.returncode == 0, by_key.stderr
    assert by_flag.returncode == 0, by_flag.stderr
    assert refused.returncode == 69
    assert [m.rcpt_tos for m in server.messages] == [
        ["bob@example.net", "cy@example.net", "hidden@example.net"],
        ["cy@example.net"],
    ]
    for got in server.messages:
        assert got.content.isascii()
        same_content(LETTER, got.content)


def test_send_converts_for_a_server_with_8bitmime_only_when_signing(tmp_path: Path) -> None:
    """Unsigned: the message goes unchanged (8BITMIME). Signed: converted first
    anyway (RFC 6376 §5.3), so a later relay's downgrade cannot break the signature."""
    key = make_key(tmp_path, "ed25519-sha256")
    dkim = ["--dkim-selector", key.selector, "--dkim-domain", key.domain]
    dkim += ["--dkim-key", str(key_file(tmp_path, "ed25519-sha256"))]
    with RecordingServer() as server:
        argv = ["send", f"--server=smtp://{server.host}:{server.port}", "--message", "-"]
        plain = run("smtpmail", *argv, "--convert-8bit", stdin=LETTER)
        signed = run("smtpmail", *argv, "--convert-8bit", *dkim, stdin=LETTER)
    assert plain.returncode == 0, plain.stderr
    assert signed.returncode == 0, signed.stderr
    unchanged, converted = server.messages
    assert "BODY=8BITMIME" in unchanged.mail_options
    assert b"Content-Transfer-Encoding: 8bit\r\n\r\nH\xc3\xa9llo w\xc3\xb6rld" in unchanged.content
    assert b"Content-Transfer-Encoding: binary" in unchanged.content
    assert converted.content.isascii()
    same_content(LETTER, converted.content)
    assert verify(converted.content, key)
