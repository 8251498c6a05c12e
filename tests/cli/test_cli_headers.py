"""swaks's message options on ``smtpmail send``, through the real console script
against aiosmtpd: ``--data FILE|-`` (``--message``'s other name), ``--header``
(set: replaces the fields of that name, else adds), ``--add-header`` (adds) and
``--header-from-file``, on a message given as it is and on a composed one."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smtpmail.errors import InvalidArgument
from smtpmail.message.raw import read_raw
from support.servers import RecordingServer

SCRIPT = str(Path(sys.executable).parent / "smtpmail")
LETTER = (
    b"From: ann@example.org\r\nTo: bob@example.net\r\nSubject: old\r\n"
    b"X-Tag: one,\r\n two\r\nX-Tag: three\r\nReceived: from a\r\n\r\nbody\r\n"
)


def send(
    server: RecordingServer, *argv: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMTPMAIL_CONFIG"}
    env["XDG_CONFIG_HOME"] = "/nonexistent/xdg"
    return subprocess.run(
        [SCRIPT, "send", f"--server=smtp://{server.host}:{server.port}", *argv],
        input=stdin.decode(), capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def head(content: bytes) -> list[bytes]:
    return content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_data_from_stdin_with_headers_set_and_added(smtpd: RecordingServer, tmp_path: Path) -> None:
    more = tmp_path / "fields.txt"
    more.write_text(
        "# campaign fields\nX-Campaign: spring\nList-Unsubscribe:\n <mailto:u@example.org>\n"
    )
    done = send(
        smtpd, "--data", "-", "--header", "Subject: new", "--header", "X-Tag: only",
        "--add-header", "Received: from b", "--header-from-file", str(more), stdin=LETTER,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (got,) = smtpd.messages
    assert head(got.content) == [
        b"From: ann@example.org", b"To: bob@example.net",
        b"Subject: new",  # replaced where it stood
        b"X-Tag: only",  # the first X-Tag (folded) replaced, the second dropped
        b"Received: from a", b"Received: from b",  # added beside the first
        b"X-Campaign: spring", b"List-Unsubscribe: <mailto:u@example.org>",
    ]  # fmt: skip
    assert got.content.endswith(b"\r\n\r\nbody\r\n")


def test_a_header_sets_the_envelope_when_read_from_the_headers(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(LETTER)
    done = send(smtpd, "--data", str(eml), "--header", "To: cy@example.net")
    assert done.returncode == 0, done.stderr
    assert smtpd.messages[0].rcpt_tos == ["cy@example.net"]


def test_composed_header_set_replaces_an_earlier_one(smtpd: RecordingServer) -> None:
    done = send(
        smtpd, "--from", "ann@example.org", "--to", "bob@example.net", "--body", "x",
        "-H", "X-Tag: 1", "--add-header", "X-Other: a", "--header", "X-Tag: 2",
        "--add-header", "X-Other: b",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    msg = email.message_from_bytes(smtpd.messages[0].content, policy=email.policy.default)
    assert msg.get_all("X-Tag") == ["2"] and msg.get_all("X-Other") == ["a", "b"]


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (("--header", "no colon"), 64, "'Name: value'"),
        (("--add-header", "Bad Name: x"), 65, "not a valid field name"),
        (("--header-from-file", "/nonexistent/fields"), 66, "/nonexistent/fields"),
        (("--subject", "s"), 64, "--header/--add-header"),
    ],
)
def test_bad_header_options_send_nothing(
    smtpd: RecordingServer, argv: tuple[str, ...], status: int, says: str
) -> None:
    done = send(smtpd, "--data", "-", *argv, stdin=LETTER)
    assert done.returncode == status and says in done.stderr, done.stderr
    assert smtpd.messages == []


def test_header_injection_is_refused_in_raw_fields() -> None:
    import io

    raw = read_raw(io.BytesIO(LETTER))
    with pytest.raises(InvalidArgument, match="control character"):
        raw.with_fields([("X-A", "1\r\nBcc: evil@example.com", True)])
    # an LF-only message gets LF-ended fields; a section without a final line end is ended
    lf = read_raw(io.BytesIO(b"Subject: a")).with_fields([("X-B", "2", True)])
    assert lf.head == b"Subject: a\nX-B: 2\n"


def test_a_long_header_on_a_message_as_it_is_is_folded_at_its_spaces(
    smtpd: RecordingServer,
) -> None:
    # Before: written as one line of 1,000+ octets, which aiosmtpd refused
    # ("500 Line too long", exit 69) and other servers cut (RFC 5322 §2.1.1).
    url = "<https://example.org/unsubscribe/" + "u" * 940 + ">"  # alone, a line fits
    value = f"<mailto:u@example.org>, {url}"
    done = send(smtpd, "--data", "-", "--header", f"List-Unsubscribe: {value}", stdin=LETTER)
    assert done.returncode == 0, done.stderr
    (got,) = smtpd.messages
    assert all(len(line) <= 998 for line in got.content.split(b"\r\n"))
    parsed = email.message_from_bytes(got.content, policy=email.policy.default)
    assert str(parsed["List-Unsubscribe"]) == value  # unfolded: as given, no encoded word


def test_a_header_word_longer_than_a_line_is_refused_before_sending(
    smtpd: RecordingServer,
) -> None:
    done = send(smtpd, "--data", "-", "--header", "X-Token: " + "t" * 1200, stdin=LETTER)
    assert done.returncode == 65
    assert "998 octets" in done.stderr
    assert smtpd.messages == []


@pytest.mark.parametrize("data", [True, False], ids=["as-it-is", "composed"])
def test_a_header_file_folded_with_a_tab_is_read(
    smtpd: RecordingServer, tmp_path: Path, data: bool
) -> None:
    # Before: the unfolded value kept its tab (WSP, RFC 5322 §2.2.3), which was
    # refused as a control character (exit 65) although the file was well folded.
    fields = tmp_path / "fields.txt"
    fields.write_text("List-Unsubscribe: <mailto:u@example.org>,\n\t<https://example.org/u>\n")
    message = (
        ("--data", "-")
        if data
        else ("--from", "ann@example.org", "--to", "bob@example.net", "--body", "hi")
    )
    done = send(smtpd, *message, "--header-from-file", str(fields), stdin=LETTER)
    assert done.returncode == 0, done.stderr
    (got,) = smtpd.messages
    parsed = email.message_from_bytes(got.content, policy=email.policy.default)
    assert str(parsed["List-Unsubscribe"]) == "<mailto:u@example.org>,\t<https://example.org/u>"


def test_a_composed_message_with_a_date_that_is_no_date_is_refused(
    smtpd: RecordingServer,
) -> None:
    # Before: sent with an empty "Date:" field, the value given lost.
    argv = ("--from", "ann@example.org", "--to", "bob@example.net", "--body", "hi")
    done = send(smtpd, *argv, "--header", "Date: yesterday")
    assert done.returncode == 65 and "Date 'yesterday'" in done.stderr, done.stderr
    assert smtpd.messages == []
