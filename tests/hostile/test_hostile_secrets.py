"""Secrets: the password, the user name and their base64 forms appear nowhere.

With the transcript hook and DEBUG logging on, each AUTH mechanism runs
against a scripted server that accepts, refuses (echoing what it got), hangs
up mid-exchange or loops on 334. Everything a person could see afterwards
(transcript, log records, the exception's text, repr and traceback, the
client's repr) is searched for every form of the secrets. The wire itself
must carry them, or the search proves nothing.
"""

from __future__ import annotations

import base64
import logging
import traceback
from typing import Any

import pytest
from drive import KINDS, drive, op
from scripted import Conn, ScriptedServer, Step, ehlo_reply, expect, respond, send

from smtpmail import AuthenticationError, SMTPError
from smtpmail.protocol.sasl import Credentials

USER = "ü.mailer@example.org"
PASSWORD = "Pässw0rd-very-s3cret"


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def secret_forms() -> list[str]:
    plain = f"\0{USER}\0{PASSWORD}"
    forms = [PASSWORD, b64(PASSWORD), b64(plain), b64(f"{USER}\0{PASSWORD}")]
    # Also the unpadded forms, as some software trims the '='.
    forms += [f.rstrip("=") for f in forms if f.endswith("=")]
    return forms


def user_forms() -> list[str]:
    return [b64(USER), b64(USER).rstrip("=")]


MECHANISMS = {
    "PLAIN": b"AUTH PLAIN",
    "LOGIN": b"AUTH LOGIN",
    "CRAM-MD5": b"AUTH CRAM-MD5",
}


async def _echo_and_refuse(conn: Conn) -> None:
    """Refuse with a 535 that quotes everything the client sent during AUTH."""
    start = len(conn.received)
    line = await conn.readline()
    assert line is not None
    words = line.split()
    echoed = b" ".join(words[2:])
    if len(words) < 3:  # no initial response: ask, once per round, and echo the answers
        rounds = 2 if words[1].upper() == b"LOGIN" else 1
        prompts = [b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6"][:rounds]
        if words[1].upper() == b"CRAM-MD5":
            prompts = [b64(b"<1.2@hostile.test>").encode()]
        for prompt in prompts:
            await conn.write(b"334 " + prompt + b"\r\n")
            answer = await conn.readline()
            echoed += b" " + (answer or b"").strip()
    got = bytes(conn.received[start:]).replace(b"\r\n", b" ")
    pw = PASSWORD.encode()
    await conn.write(
        b"535-5.7.8 you said " + echoed + b"\r\n535-" + got + b"\r\n535 " + pw + b"\r\n"
    )


async def _hang_up(conn: Conn) -> None:
    await conn.readline()
    await conn.write(b"334 " + b64(PASSWORD).encode() + b"\r\n")  # a challenge that IS a secret
    await conn.readline()
    conn.close()


async def _loop_334(conn: Conn) -> None:
    await conn.readline()
    for _ in range(50):
        await conn.write(b"334 \r\n")
        if await conn.readline() is None:
            return


BEHAVIOURS: dict[str, list[Step]] = {
    "accept": [respond([b"AUTH PLAIN LOGIN CRAM-MD5", b"PIPELINING"])],
    "refuse-echoing": [
        expect(b"EHLO"),
        send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])),
        _echo_and_refuse,
    ],
    "hang-up": [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), _hang_up],
    "endless-334": [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), _loop_334],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest.mark.parametrize("callable_password", [False, True])
def test_secrets_never_shown(
    kind: str,
    mechanism: str,
    behaviour: str,
    callable_password: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    transcript: list[str] = []
    password: Any = (lambda: PASSWORD) if callable_password else PASSWORD
    creds = Credentials(USER, password)
    ops = [op("connect"), op("send", b"x\r\n", "a@example.org", ["b@example.org"]), op("quit")]
    with ScriptedServer(BEHAVIOURS[behaviour]) as server:
        outcome = drive(
            kind,
            server.port,
            ops,
            auth=creds,
            auth_mechanism=mechanism,
            tls="none",
            allow_plaintext_auth=True,  # the wire is what we inspect: keep it readable
            transcript=lambda who, line: transcript.append(f"{who}: {line}"),
            timeout=10.0,
        )
        conn = server.conn()
    wire = bytes(conn.received).decode("utf-8", "replace")
    if mechanism != "CRAM-MD5":  # CRAM-MD5 never sends the password at all
        forms = secret_forms() + user_forms()
        assert any(form in wire for form in forms), "the secret never reached the wire"
    err = outcome.error
    if behaviour == "accept":
        assert err is None, err
    else:
        assert isinstance(err, SMTPError), repr(err)
        if behaviour == "refuse-echoing":
            assert isinstance(err, AuthenticationError) and err.is_permanent
    shown = {
        "transcript": "\n".join(transcript),
        "logs": caplog.text + "\n".join(repr(r.args) for r in caplog.records),
        "client": repr(outcome.client),
        "credentials": repr(creds) + str(creds),
    }
    if err is not None:
        shown["error"] = str(err) + repr(err) + "".join(traceback.format_exception(err))
        shown["error-reply"] = str(getattr(err, "reply", ""))
    assert transcript, "the transcript hook saw nothing"
    for where, text in shown.items():
        for form in secret_forms():
            assert form not in text, f"{form!r} shown in {where}: {text[:2000]}"
        for form in user_forms():
            assert form not in text, f"base64 user name {form!r} shown in {where}"
        if where != "credentials":  # Credentials' repr names the user on purpose
            assert USER not in text, f"user name shown in {where}: {text[:2000]}"
