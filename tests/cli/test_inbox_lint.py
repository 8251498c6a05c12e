"""The inbox's lint against a corpus of good and broken messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail import Client
from smtpmail.cli._capture import Captured
from smtpmail.cli.inbox import mime
from smtpmail.cli.inbox.lint import lint
from smtpmail.cli.inbox.store import Stored
from smtpmail.cli.inbox.testing import Inbox, running_sink
from support.inboxes import send_raw

HEAD = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>, carol@example.org\r\n"
    b"Subject: fine\r\n"
    b"Date: Tue, 01 Dec 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
)
MIME = b"MIME-Version: 1.0\r\n"


def alternative(html_only: bool = False) -> bytes:
    text = b"" if html_only else b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    return (
        HEAD
        + MIME
        + b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        + text
        + b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n--b--\r\n"
    )


def encoded(cte: bytes, body: bytes) -> bytes:
    return (
        HEAD
        + MIME
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
        + cte
        + b"\r\n\r\n"
        + body
    )


def without(field: bytes) -> bytes:
    """HEAD less the field that starts with ``field``, and a body."""
    kept = [line for line in HEAD.split(b"\r\n") if line and not line.startswith(field)]
    return b"\r\n".join(kept) + b"\r\n\r\nx\r\n"


def replaced(old: bytes, new: bytes) -> bytes:
    return HEAD.replace(old, new) + b"\r\nx\r\n"


GOOD = [
    ("plain", HEAD + b"\r\nHello Bob\r\n"),
    ("alternative", alternative()),
    ("base64", encoded(b"base64", b"SGVsbG8gQm9i\r\nIQ==\r\n")),
    ("quoted-printable", encoded(b"quoted-printable", b"H=C3=A9llo =\r\nBob=3D\r\n")),
    ("group address", replaced(b"To: Bob", b"Cc: undisclosed-recipients:;\r\nTo: Bob")),
    ("998 octets", HEAD + b"\r\n" + b"x" * 998 + b"\r\n"),
]  # fmt: skip

BROKEN = [
    ("bare-lf", HEAD + b"\r\nline one\nline two\r\n"),
    ("bare-cr", HEAD + b"\r\nline one\rline two\r\n"),
    ("line-too-long", HEAD + b"\r\n" + b"x" * 999 + b"\r\n"),
    ("missing-date", without(b"Date:")),
    ("missing-message-id", without(b"Message-ID:")),
    ("missing-from", without(b"From:")),
    ("bad-address", replaced(b"carol@example.org", b"carol@")),
    ("bad-address", replaced(b"Bob <bob@example.org>, carol@example.org", b"Bob <bob")),
    ("bad-address", replaced(b"alice@example.org", b"alice")),
    ("broken-base64", encoded(b"base64", b"SGVsbG8gQm9i!!\r\n")),
    ("broken-base64", encoded(b"base64", b"SGVsbG8gQm9iI\r\n")),
    ("broken-quoted-printable", encoded(b"quoted-printable", b"50% =ZZ off\r\n")),
    ("html-without-text", alternative(html_only=True)),
    ("html-without-text", HEAD + MIME + b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n"),
    ("bcc-present", HEAD + b"Bcc: eve@example.org\r\n\r\nx\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content"), GOOD)
def test_a_good_message_has_no_findings(name: str, content: bytes) -> None:
    assert lint(content, ("BODY=8BITMIME",)) == []


@pytest.mark.parametrize(("code", "content"), BROKEN)
def test_each_broken_message_gets_its_finding(code: str, content: bytes) -> None:
    found = [f.code for f in lint(content, ())]
    assert found == [code], found


def test_eight_bit_data_needs_8bitmime_or_smtputf8() -> None:
    content = HEAD + b"\r\nH\xc3\xa9llo\r\n"
    assert [f.code for f in lint(content, ())] == ["8bit-without-8bitmime"]
    assert lint(content, ("BODY=8BITMIME",)) == []
    assert lint(content, ("SMTPUTF8",)) == []
    assert lint(content, None) == []  # MAIL parameters unknown (loaded from a Maildir)


def test_findings_name_their_rfc_and_severity() -> None:
    (finding,) = lint(BROKEN[0][1], ())
    assert finding.as_dict() == {
        "code": "bare-lf",
        "severity": "error",
        "message": "1 bare LF line end(s), not CRLF",
        "rfc": "RFC 5322 §2.3",
    }


FIELDS = st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Content-Type", b"Date",
                          b"Content-Transfer-Encoding", b"Content-ID", b"Bcc"])  # fmt: skip
HEADERS = st.lists(st.tuples(FIELDS, st.binary(max_size=60)), max_size=8).map(
    lambda fields: b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
)


@given(st.one_of(st.binary(max_size=2000), st.tuples(HEADERS, st.binary()).map(b"".join)))
def test_any_octets_can_be_shown_and_linted(content: bytes) -> None:
    """Whatever a client sends, the inbox can list it and show it."""
    stored = Stored("1", Captured(1, "peer", "a@example.org", ("b@example.org",), content))
    view = mime.detail(stored)
    assert view["size"] == len(content)
    mime.html_body(stored)
    mime.matches(stored, "anything")
    for finding in lint(content, ()):
        assert finding.severity in ("error", "warning")


@pytest.fixture(scope="module")
def sink() -> Iterator[Inbox]:
    with running_sink() as inbox:
        yield inbox


@pytest.fixture
def inbox(sink: Inbox) -> Inbox:
    sink.clear()
    return sink


def test_the_lint_judges_what_came_over_the_wire(inbox: Inbox) -> None:
    """8-bit without BODY=8BITMIME and a bare LF, from a client that does both."""
    send_raw(inbox, HEAD + b"\r\nH\xc3\xa9llo\nsecond line\r\n", ehlo=b"sloppy.example")
    (m,) = inbox.messages()
    assert m["lint"] == {"errors": 2, "warnings": 0}
    codes = [f["code"] for f in inbox.message(m["id"])["lint_findings"]]
    assert codes == ["bare-lf", "8bit-without-8bitmime"]


#: An internationalised message (RFC 6532): UTF-8 in its address fields.
UTF8_HEAD = HEAD.replace(b"Bob <bob@", "Zoë <zoë@".encode()).replace(
    b"alice@example.org", "jürgen@exämple.org".encode()
)


@pytest.mark.parametrize(
    ("options", "codes"),
    [(("SMTPUTF8", "BODY=8BITMIME"), []),
     (None, []),  # MAIL parameters unknown (loaded from a Maildir)
     (("BODY=8BITMIME",), ["utf8-address-without-smtputf8", "utf8-address-without-smtputf8"])],
)  # fmt: skip
def test_utf8_addresses_need_smtputf8_only(
    options: tuple[str, ...] | None, codes: list[str]
) -> None:
    found = lint(UTF8_HEAD + b"\r\nHello\r\n", options)
    assert [f.code for f in found] == codes
    assert all(f.rfc == "RFC 6532 §3.2" and "SMTPUTF8" in f.message for f in found)


def test_an_internationalised_message_sent_with_smtputf8_is_clean(inbox: Inbox) -> None:
    """smtpmail's client sends UTF-8 addresses with SMTPUTF8 (RFC 6531): no finding."""
    with Client("127.0.0.1", inbox.smtp_port, timeout=30) as client:
        client.send(UTF8_HEAD + "\r\nGrüße\r\n".encode(), "jürgen@exämple.org", ["zoë@example.org"])
    (m,) = inbox.messages()
    detail = inbox.message(m["id"])
    assert "SMTPUTF8" in detail["session"]["mail_parameters"]
    assert detail["lint_findings"] == []
