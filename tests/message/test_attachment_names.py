"""An attachment's file name as mail readers look for it.

Content-Disposition's ``filename`` (RFC 2231 when not ASCII) is what the
standards say; Content-Type's ``name`` is what Outlook and many web and phone
readers read first or only (without it: "ATT00001.bin"), with a non-ASCII name
as RFC 2047 encoded words in the quoted string, as nodemailer, Gmail and
Outlook send it. compose() wrote no ``name`` at all.
"""

from __future__ import annotations

import email
from email import policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smtpmail
from smtpmail.message.compose import _encoded_words
from support.harness import drive, op
from support.servers import RecordingServer

NAMES = [
    "report.pdf",
    'a "quoted" \\ name.png',
    "Grüße.txt",  # a text attachment: charset kept beside name
    "Résumé « " + "é" * 80 + " » 日本語.pdf",  # folded over several encoded words
    "x" * 120 + ".bin",  # long ASCII: encoded words fold, a quoted string would not
]


@pytest.mark.parametrize("inline", [False, True])
def test_the_file_name_is_in_content_type_too(kind: str, tmp_path: Path, inline: bool) -> None:
    path = tmp_path / "data"
    path.write_bytes("héllo\n".encode())
    attachments = [
        smtpmail.Attachment(path, filename=n, inline=inline, content_id=f"c{i}" if inline else None)
        for i, n in enumerate(NAMES)
    ]
    composed = smtpmail.compose(
        sender="a@example.org", to=["b@example.org"], text="x", html="<p>x</p>",
        attachments=attachments,
    )  # fmt: skip
    with RecordingServer() as server:
        sent = op("send", composed.message, "a@example.org", ["b@example.org"])
        assert drive(kind, server.port, [sent]).error is None
    (received,) = server.messages
    assert received.content.isascii()
    assert all(len(line) <= 998 for line in received.content.split(b"\r\n"))
    parsed = email.message_from_bytes(received.content, policy=policy.default)
    parts = [p for p in parsed.walk() if p.get_filename() is not None]
    assert [p.get_filename() for p in parts] == NAMES  # filename: as before
    assert [p.get_param("name") for p in parts] == NAMES
    text = next(p for p in parts if p.get_filename() == "Grüße.txt")
    if not inline:  # an attached UTF-8 text keeps its charset beside the name
        assert (
            text.get_param("charset") == "utf-8" and text.get_content() == "héllo\r\n"
        )  # (parsed from CRLF lines)


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200))
def test_encoded_words_decode_to_the_name(name: str) -> None:
    words = _encoded_words(name)
    assert all(len(w) <= 75 for w in words)  # RFC 2047 §2
    assert str(make_header(decode_header(" ".join(words)))) == name
