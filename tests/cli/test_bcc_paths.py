"""Every path that sends keeps Bcc and Resent-Bcc off the wire; a real aiosmtpd checks.

Each test sends a message whose header section names blind copies, through
one path (both clients, the one-shot API, the outbox and its worker, the
``send``, ``queue add`` and ``sendmail`` commands, ``smtpmail-sendmail`` in a
subprocess), and looks at the bytes the server received: no Bcc field, no
blind address in them, while the blind recipients were in the envelope and got
the message. ``keep_bcc`` / ``--keep-bcc`` keeps the fields, byte for byte.
Direct delivery (deliver()) is tested with the MX world, in tests/delivery.
"""

from __future__ import annotations

import io
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpmail
from smtpmail.cli import main
from smtpmail.outbox import Outbox, Worker
from support.clirun import fake_env, run_cli, sendmail_cmd
from support.harness import Connect
from support.servers import Received, RecordingServer

#: Bcc folded over two lines, and a "Bcc:" line in the body (content: it stays).
MESSAGE = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Bcc: Blind One <blind1@example.net>,\r\n"
    b"  blind2@example.net\r\n"
    b"Subject: the Bcc rule\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <bcc-rule@example.org>\r\n"
    b"\r\n"
    b"Bcc: this line is body text and stays\r\n"
)
SENT = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: the Bcc rule\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <bcc-rule@example.org>\r\n"
    b"\r\n"
    b"Bcc: this line is body text and stays\r\n"
)
#: A resent message (RFC 5322 §3.6.6): the Resent-Bcc goes, the original Bcc as well.
RESENT_FIELDS = (
    b"Resent-From: Ann <ann@example.org>\r\n"
    b"Resent-To: carl@example.net\r\n"
    b"Resent-Date: Tue, 02 Jan 2024 00:00:00 +0000\r\n"
)
RESENT = RESENT_FIELDS + b"Resent-bcc: blind3@example.net\r\n" + MESSAGE
BLIND = ["blind1@example.net", "blind2@example.net"]
ALL = ["bob@example.net", *BLIND]


def check_removed(got: Received, recipients: list[str] = ALL) -> None:
    assert got.content == SENT
    assert b"blind" not in got.content
    assert sorted(got.rcpt_tos) == sorted(recipients)  # the blind copies still go


def srv(server: RecordingServer) -> str:
    return f"--server=smtp://{server.host}:{server.port}"


# -- the library ----------------------------------------------------------------------


def _email_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "bob@example.net"
    msg["Bcc"] = "Blind One <blind1@example.net>, blind2@example.net"
    msg["Subject"] = "the Bcc rule"
    msg.set_content("Bcc: this line is body text and stays\n")
    return msg


async def test_email_message_with_recipients_from_its_headers(
    smtpd: RecordingServer, connect: Connect
) -> None:
    async with connect(smtpd.port) as client:
        result = await client.send(_email_message())
        kept = await client.send(_email_message(), keep_bcc=True)
    assert sorted(result.accepted) == sorted(kept.accepted) == sorted(ALL)
    removed, with_bcc = smtpd.messages
    assert b"\nBcc:" not in removed.content.split(b"\r\n\r\n")[0]
    assert b"blind" not in removed.content
    assert removed.content.endswith(b"\r\n\r\nBcc: this line is body text and stays\r\n")
    assert sorted(removed.rcpt_tos) == sorted(ALL)
    assert b"\r\nBcc: Blind One <blind1@example.net>, blind2@example.net\r\n" in with_bcc.content


@pytest.mark.parametrize("form", ["bytes", "str", "file", "chunks"])
async def test_explicit_recipients_every_input_form(
    smtpd: RecordingServer, connect: Connect, form: str
) -> None:
    def message() -> object:
        return {
            "bytes": MESSAGE,
            "str": MESSAGE.decode(),
            "file": io.BytesIO(MESSAGE),
            "chunks": iter([MESSAGE[:30], MESSAGE[30:61], MESSAGE[61:]]),
        }[form]

    async with connect(smtpd.port) as client:
        await client.send(message(), "ann@example.org", ALL)
        await client.send(message(), "ann@example.org", ALL, keep_bcc=True)
        await client.send_many([(smtpmail.Envelope("ann@example.org", ALL), message())])
    removed, kept, many = smtpd.messages
    check_removed(removed)
    check_removed(many)
    assert kept.content == MESSAGE


def test_one_shot_send_and_send_async(smtpd: RecordingServer) -> None:
    import asyncio

    smtpmail.send(MESSAGE, "ann@example.org", ALL, port=smtpd.port)
    asyncio.run(smtpmail.send_async(MESSAGE, "ann@example.org", ALL, port=smtpd.port))
    smtpmail.send(MESSAGE, "ann@example.org", ALL, port=smtpd.port, keep_bcc=True)
    first, second, kept = smtpd.messages
    check_removed(first)
    check_removed(second)
    assert kept.content == MESSAGE


def test_outbox_and_worker(smtpd: RecordingServer, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q")
    removed = box.add(MESSAGE, "ann@example.org", ALL)
    kept = box.add(MESSAGE, "ann@example.org", ALL, keep_bcc=True)
    # Removed before it is stored: no blind address sits in the queue.
    assert b"blind" not in box.eml_path(removed.id).read_bytes()
    assert b"\r\nBcc: Blind One" in box.eml_path(kept.id).read_bytes()
    Worker(box, port=smtpd.port).run(ids=[removed.id])
    Worker(box, port=smtpd.port).run(ids=[kept.id])
    sent, sent_kept = smtpd.messages
    assert b"blind" not in sent.content and sorted(sent.rcpt_tos) == sorted(ALL)
    assert b"\r\nBcc: Blind One <blind1@example.net>,\r\n  blind2@example.net\r\n" in (
        sent_kept.content
    )


# -- the command line -------------------------------------------------------------------


def _cli(tmp_path: Path, argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    env = fake_env(tmp_path, argv)
    env.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    status = main(env=env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return status, env.stdout.getvalue(), env.stderr.getvalue()


def test_queue_add_then_run(smtpd: RecordingServer, tmp_path: Path) -> None:
    queue = ["queue", "--queue-dir", str(tmp_path / "q")]
    status, _, err = _cli(tmp_path, [*queue, "add"], MESSAGE)  # recipients from the headers
    assert status == 0, err
    status, _, err = _cli(tmp_path, [*queue, "add", "--keep-bcc", *ALL], MESSAGE)
    assert status == 0, err
    status, _, err = _cli(tmp_path, [*queue, "run", "--port", str(smtpd.port)])
    assert status == 0, err
    by_bcc = sorted(smtpd.messages, key=lambda m: b"Bcc: Blind" in m.content)
    check_removed(by_bcc[0])
    assert by_bcc[1].content == MESSAGE


def test_send_message_file_with_explicit_recipients(smtpd: RecordingServer, tmp_path: Path) -> None:
    eml = tmp_path / "saved.eml"
    eml.write_bytes(MESSAGE)
    for extra in ([], ["--keep-bcc"]):
        r = run_cli("send", srv(smtpd), "--message", str(eml), "--to", "x@example.net", *extra)
        assert r.status == 0, r.stderr
    removed, kept = smtpd.messages
    check_removed(removed, ["x@example.net"])
    assert kept.content == MESSAGE and kept.rcpt_tos == ["x@example.net"]


def test_send_message_recipients_from_headers_and_dry_run(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    eml = tmp_path / "saved.eml"
    eml.write_bytes(MESSAGE)
    r = run_cli("send", srv(smtpd), "--message", str(eml))
    assert r.status == 0, r.stderr
    check_removed(smtpd.messages[0])
    r = run_cli("send", "--message", str(eml), "--dry-run")
    assert "blind2" not in r.stdout.split("\n\n", 1)[1]  # the envelope lines name them
    r = run_cli("send", "--message", str(eml), "--dry-run", "--keep-bcc")
    assert "  blind2@example.net" in r.stdout


def test_send_queue_path(smtpd: RecordingServer, tmp_path: Path) -> None:
    eml = tmp_path / "saved.eml"
    eml.write_bytes(MESSAGE)
    argv = ["send", srv(smtpd), "--message", str(eml), "--queue"]
    status, _, err = _cli(tmp_path, [*argv, "--queue-dir", str(tmp_path / "q")])
    assert status == 0, err
    check_removed(smtpd.messages[0])


@pytest.mark.parametrize("flags", [["-t"], ["-t", "-i"], []])
def test_sendmail_with_and_without_t(smtpd: RecordingServer, flags: list[str]) -> None:
    rcpts = [] if flags else ALL
    r = run_cli("sendmail", srv(smtpd), *flags, *rcpts, stdin=MESSAGE)
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    check_removed(got)


def test_sendmail_t_on_a_resent_message(smtpd: RecordingServer) -> None:
    r = run_cli("sendmail", srv(smtpd), "-t", stdin=RESENT)
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert sorted(got.rcpt_tos) == ["blind3@example.net", "carl@example.net"]
    assert got.content == RESENT_FIELDS + SENT


@pytest.mark.parametrize("keep", [["--keep-bcc"], ["--remove-bcc-headers=off"]])
def test_sendmail_keep_bcc_spellings(smtpd: RecordingServer, keep: list[str]) -> None:
    r = run_cli("sendmail", srv(smtpd), *keep, "-t", stdin=MESSAGE)
    assert r.status == 0, r.stderr
    r = run_cli("sendmail", srv(smtpd), "--remove-bcc-headers=on", "-t", stdin=MESSAGE)
    assert r.status == 0, r.stderr
    kept, removed = smtpd.messages
    assert kept.content == MESSAGE
    check_removed(removed)
    assert run_cli("sendmail", srv(smtpd), "--remove-bcc-headers=maybe", "-t").status == 64


def test_smtpmail_sendmail_subprocess(smtpd: RecordingServer, tmp_path: Path) -> None:
    cmd = [*sendmail_cmd(tmp_path), srv(smtpd)]
    for argv in (["-t"], ["-i", *ALL], ["--keep-bcc", *ALL]):
        done = subprocess.run(
            [*cmd, *argv], input=MESSAGE, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
    with_t, explicit, kept = smtpd.messages
    check_removed(with_t)
    check_removed(explicit)
    assert kept.content == MESSAGE
    assert sys.executable  # (the wrapper runs this interpreter when not installed)


# -- a byte order mark before the first field ---------------------------------------
#
# An editor (Notepad) may save a message with a UTF-8 BOM first. It made the first
# line no field, so no header section was found: the Bcc field went to every
# recipient (as body text), and -t found no recipients. A mail reader ignores the
# BOM; so does every path here.

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("form", ["bytes", "str", "file", "one-octet chunks", "disk file"])
async def test_a_leading_byte_order_mark_hides_no_bcc(
    smtpd: RecordingServer, connect: Connect, form: str, tmp_path: Path
) -> None:
    eml = tmp_path / "bom.eml"
    eml.write_bytes(BOM + MESSAGE)
    message = {
        "bytes": BOM + MESSAGE,
        "str": (BOM + MESSAGE).decode(),
        "file": io.BytesIO(BOM + MESSAGE),
        "one-octet chunks": iter([bytes([o]) for o in BOM + MESSAGE]),
        "disk file": None,
    }[form]
    async with connect(smtpd.port) as client:
        if message is None:
            with eml.open("rb") as f:
                await client.send(f, "ann@example.org", ALL)
        else:
            await client.send(message, "ann@example.org", ALL)
    check_removed(smtpd.messages[0])


def test_a_leading_byte_order_mark_on_the_command_line(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    eml = tmp_path / "bom.eml"
    eml.write_bytes(BOM + MESSAGE)
    r = run_cli("send", srv(smtpd), "--message", str(eml))
    assert r.status == 0, r.stderr
    r = run_cli("sendmail", srv(smtpd), "-t", stdin=BOM + MESSAGE)
    assert r.status == 0, r.stderr
    for got in smtpd.messages:
        check_removed(got)
