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

import smtpmail
from smtpmail import AuthenticationError, SMTPError
from smtpmail.protocol.sasl import Credentials
from support.harness import drive, op
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    Step,
    ehlo_reply,
    expect,
    read_data,
    respond,
    send,
)

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


# -- credentials echoed in any reply, for the rest of the session ---------------------

ECHO = f"{USER} {PASSWORD} {b64(PASSWORD)} {b64(USER)}".encode()


async def _challenge_then(conn: Conn, final: bytes) -> None:
    """Read AUTH, play its challenges (PLAIN, LOGIN, CRAM-MD5), then send ``final``."""
    line = await conn.readline()
    assert line is not None
    words = line.split()
    prompts: list[bytes] = []
    if len(words) < 3:
        prompts = {
            b"LOGIN": [b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6"],
            b"CRAM-MD5": [b64(b"<1.2@hostile.test>").encode()],
        }.get(words[1].upper(), [b""])
    elif words[1].upper() == b"LOGIN":
        prompts = [b"UGFzc3dvcmQ6"]
    for prompt in prompts:
        await conn.write(b"334 " + prompt + b"\r\n")
        await conn.readline()
    await conn.write(final)


def _refuse_auth(final: bytes) -> list[Step]:
    async def step(conn: Conn) -> None:
        await _challenge_then(conn, final)

    return [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), step]


def _accept_auth_then(*replies: bytes) -> list[Step]:
    """235, then each command's reply in turn (DATA's data read), whatever it was."""

    async def step(conn: Conn) -> None:
        await _challenge_then(conn, b"235 2.7.0 welcome " + USER.encode() + b"\r\n")
        answers = iter(replies)
        for reply in answers:
            if await conn.readline() is None:
                return
            await conn.write(reply)
            if reply.startswith(b"354"):
                await read_data(next(answers))(conn)

    return [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), step]


def _unsolicited_after_235() -> list[Step]:
    async def step(conn: Conn) -> None:
        await _challenge_then(conn, b"235 2.7.0 ok\r\n421 4.7.0 closing for " + ECHO + b"\r\n")

    return [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), step]


U = USER.encode()
ECHOING: dict[str, tuple[list[Step], type[SMTPError] | None]] = {
    # During AUTH: the user name, plain, in the refusal (the issue's own example).
    "535": (
        _refuse_auth(b"535 5.7.8 authentication failed for " + U + b"\r\n"),
        AuthenticationError,
    ),
    "454": (_refuse_auth(b"454 4.7.0 <" + U + b">: try again later\r\n"), AuthenticationError),
    "421": (_refuse_auth(b"421 4.7.0 user=" + U + b", closing\r\n"), smtpmail.ServiceClosing),
    # After 235: every later reply (MAIL, RCPT, DATA, the end of data, QUIT).
    "after-235": (
        _accept_auth_then(
            b"250 2.1.0 sender ok for " + ECHO + b"\r\n",
            b"250 2.1.5 recipient ok, " + U + b"\r\n",
            b"354 go ahead " + U + b"\r\n",
            b"250 2.0.0 queued for " + ECHO + b"\r\n",
            b"221 2.0.0 bye " + ECHO + b"\r\n",
        ),
        None,
    ),
    "after-235-refused": (
        _accept_auth_then(b"550 5.7.1 " + ECHO + b" may not send\r\n"),
        smtpmail.SenderRefused,
    ),
    "after-235-421": (
        _accept_auth_then(b"250 2.1.0 ok\r\n", b"421 4.7.0 " + ECHO + b" go away\r\n"),
        smtpmail.ServiceClosing,
    ),
    "after-235-unsolicited-421": (_unsolicited_after_235(), smtpmail.ServiceClosing),
}


def _log_in(
    kind: str, script: list[Step], ops: list[Any], mechanism: str, transcript: list[str]
) -> Any:
    """``ops`` against the scripted server, logging in with ``mechanism`` in
    clear text, each transcript line appended to ``transcript``."""
    with ScriptedServer(script) as server:
        return drive(
            kind,
            server.port,
            ops,
            auth=Credentials(USER, PASSWORD),
            auth_mechanism=mechanism,
            tls="none",
            allow_plaintext_auth=True,
            transcript=lambda who, line: transcript.append(f"{who}: {line}"),
            timeout=10.0,
        )


def _never_shown(where: str, text: str) -> None:
    for form in [*secret_forms(), *user_forms(), USER]:
        assert form not in text, f"{form!r} shown in {where}: {text[:2000]}"


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("behaviour", list(ECHOING))
def test_echoed_credentials_redacted_in_every_reply(
    kind: str, mechanism: str, behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transcript: list[str] = []
    script, expected = ECHOING[behaviour]
    ops = [op("connect"), op("send", b"x\r\n", "a@example.org", ["b@example.org"]), op("quit")]
    outcome = _log_in(kind, script, ops, mechanism, transcript)
    err = outcome.error
    if expected is None:
        assert err is None, err
        sent, quit_reply = outcome.results[1:]
        assert sent.ok and quit_reply.code == 221
    else:
        assert isinstance(err, expected), repr(err)
        _never_shown("error", str(err) + repr(err) + "".join(traceback.format_exception(err)))
        _never_shown("error reply", repr(getattr(err, "reply", "")))
        _never_shown("error results", repr(getattr(err, "results", "")))
    _never_shown("results", repr(outcome.results))
    _never_shown("transcript", "\n".join(transcript))
    _never_shown("logs", caplog.text + "\n".join(repr(r.args) for r in caplog.records))
    shown = "\n".join(transcript)
    assert "****" in shown.split("AUTH", 1)[1], shown  # redacted, not left out


def test_user_name_and_password_in_cli_verbose_and_json() -> None:
    from support.clirun import run_cli

    for script, status in (
        (ECHOING["after-235"][0], 0),
        (ECHOING["535"][0], 77),
        (ECHOING["after-235-refused"][0], 69),
    ):
        with ScriptedServer(script) as server:
            r = run_cli(
                "send", "--port", str(server.port), "--tls", "none", "--user", USER,
                "--password-env", "PW", "--auth-mechanism", "PLAIN", "--from", "a@example.org",
                "--to", "b@example.org", "--body", "x", "-v", "--json",
                environ={"PW": PASSWORD},
            )  # fmt: skip
        assert r.status == status, r.stderr
        _never_shown("stdout (--json)", r.stdout)
        _never_shown("stderr (-v)", r.stderr)
        assert "****" in r.stderr


# -- challenges: LOGIN's prompts are shown, those an offline attack uses are not -------


async def _login_three_prompts(conn: Conn) -> None:
    """LOGIN's two prompts, then a third 334 (after the password went) quoting it."""
    await conn.readline()
    for prompt in (b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6", b64(PASSWORD[:9]).encode()):
        await conn.write(b"334 " + prompt + b"\r\n")
        if await conn.readline() is None:
            return
    await conn.write(b"535 5.7.8 no\r\n")


@pytest.mark.parametrize(
    ("mechanism", "challenges", "shown"),
    [
        # "Username:" and "Password:" help nobody; a 334 after the exchange is
        # complete (a truncated echo of the password here) stays hidden whole.
        ("LOGIN", _login_three_prompts, ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "334 ****"]),
        # CRAM-MD5's nonce, with the digest sent, allows a dictionary attack offline.
        ("CRAM-MD5", _refuse_auth(b"535 5.7.8 no\r\n")[2], ["334 ****"]),
    ],
)
def test_challenges_shown_only_where_they_give_nothing_away(
    kind: str, mechanism: str, challenges: Step, shown: list[str]
) -> None:
    """-v showed LOGIN's prompts as "334 ****", as if they were secrets."""
    transcript: list[str] = []
    script = [expect(b"EHLO"), send(ehlo_reply([b"AUTH PLAIN LOGIN CRAM-MD5"])), challenges]
    outcome = _log_in(kind, script, [op("connect")], mechanism, transcript)
    assert isinstance(outcome.error, AuthenticationError)
    # (by their start: an "info: connected to ... port N" line may hold "334" too)
    challenged = [line[len("server: ") :] for line in transcript if line.startswith("server: 334")]
    assert challenged == shown
    text = "\n".join(transcript)
    assert PASSWORD not in text and USER not in text and "client: ****" in text


# -- a malformed reply during AUTH: not quoted, not even as a hidden cause -------------


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and every error linked to it, hidden ones included (``from None``
    only hides a context from tracebacks: the object still holds it)."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not f for f in found):
            found.append(e)
            todo += [e.__cause__, e.__context__]
    return found


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_a_malformed_reply_to_auth_is_not_kept_anywhere(kind: str, mechanism: str) -> None:
    """The parser's error quotes the bad line, which may echo the credentials: it
    was replaced by one that does not, yet stayed attached to it as its context,
    for anything that walks an error's links (a debugger, an error reporter)."""
    transcript: list[str] = []
    # A code that is not one (malformed), then the password as base64: ASCII, and
    # first, as the parser quotes the start of the line only.
    bad = b"535-5.7.8 no\r\n5x5 " + b64(PASSWORD).encode() + b"\r\n"
    outcome = _log_in(kind, _refuse_auth(bad), [op("connect")], mechanism, transcript)
    err = outcome.error
    assert isinstance(err, smtpmail.RemoteProtocolError), repr(err)
    assert "not shown: it may echo the credentials" in str(err)
    for linked in _chain(err):
        _never_shown(f"linked {type(linked).__name__}", str(linked) + repr(linked))
