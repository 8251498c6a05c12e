"""message.content: what the caller's message becomes, and when it needs SMTPUTF8."""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpmail
from smtpmail.errors import InvalidArgument
from smtpmail.message.content import as_content
from support.servers import RecordingServer


def _message(sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@example.org"
    msg["Subject"] = "grüße"
    msg.set_content("héllo")
    return msg


@pytest.mark.parametrize(
    ("sender", "needs_smtputf8"),
    [
        ("Jürgen <j@example.org>", False),  # display name: RFC 2047 encoded word
        ("j@bücher.example", False),  # IDN domain: IDNA
        ("jürgen@example.org", True),  # non-ASCII local part: only SMTPUTF8 can carry it
    ],
)
def test_only_a_non_ascii_local_part_needs_smtputf8(sender: str, needs_smtputf8: bool) -> None:
    assert as_content(_message(sender)).smtputf8 is needs_smtputf8


def test_non_ascii_display_name_goes_to_a_server_without_smtputf8() -> None:
    with RecordingServer(enable_SMTPUTF8=False) as server:
        result = smtpmail.send(
            _message("Jürgen <j@example.org>"),
            "j@example.org",
            "bob@example.org",
            port=server.port,
        )
    assert result.ok
    (received,) = server.messages
    assert b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>" in received.content


def test_a_seekable_file_can_be_read_again_from_where_it_started(tmp_path: Path) -> None:
    # A message whose recipients exceed a server's limit is sent again (RFC 5321 §4.5.3.1.10).
    path = tmp_path / "m.eml"
    path.write_bytes(b"skipped\nSubject: x\n\nbody\n")
    with path.open("rb") as f:
        f.readline()
        content = as_content(f)
        assert b"".join(content.chunks) == b"Subject: x\n\nbody\n"
        assert content.resendable
        assert b"".join(content.again().chunks) == b"Subject: x\n\nbody\n"
        assert b"".join(content.again().chunks) == b"Subject: x\n\nbody\n"


def test_a_pipe_or_an_iterator_is_read_only_once() -> None:
    read, write = os.pipe()
    os.write(write, b"Subject: x\n\nbody\n")
    os.close(write)
    with os.fdopen(read, "rb") as f:
        assert not as_content(f).resendable
    assert not as_content(iter([b"Subject: x\n\nbody\n"])).resendable
    assert as_content(b"Subject: x\n\nbody\n").resendable


def test_a_str_message_that_is_not_text_is_refused_as_input() -> None:
    """A lone surrogate in a str message: InvalidArgument naming the octet and
    where it is, not the UnicodeEncodeError of the encoding."""
    with pytest.raises(InvalidArgument, match="the octet 0xE9, which is not UTF-8, at index 15"):
        as_content("Subject: x\n\ncaf\udce9\n")
