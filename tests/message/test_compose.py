"""message/compose.py and message/raw.py: what a composed or raw message looks like on the wire."""

from __future__ import annotations

import io
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from smtpmail import Client, InvalidAddress, InvalidArgument
from smtpmail.message.compose import Attachment, compose
from smtpmail.message.content import as_content
from smtpmail.message.raw import read_raw


def parse(data: bytes) -> EmailMessage:
    # Parse with LF line ends so text parts compare as Python strings.
    msg = message_from_bytes(data.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


DATE = "Mon, 01 Jan 2024 00:00:00 +0000"


def test_plain_text_has_date_message_id_and_no_bcc() -> None:
    c = compose(
        sender="me@example.org",
        to=["you@example.net"],
        bcc=["hidden@example.com"],
        subject="hi",
        text="hello\n",
    )
    data = c.as_bytes()
    msg = parse(data)
    assert msg["Date"] and msg["Message-ID"]
    assert b"hidden@example.com" not in data
    assert "Bcc" not in msg
    assert c.envelope.recipients == ("you@example.net", "hidden@example.com")
    assert c.envelope.sender == "me@example.org"
    assert msg.get_content() == "hello\n"


def test_given_date_and_message_id_are_kept() -> None:
    c = compose(
        sender="me@example.org",
        to=["you@example.net"],
        text="x",
        headers=[("Date", "Mon, 01 Jan 2024 00:00:00 +0000"), ("Message-ID", "<a@b>")],
    )
    msg = parse(c.as_bytes())
    assert msg.get_all("Date") == ["Mon, 01 Jan 2024 00:00:00 +0000"]
    assert msg.get_all("Message-ID") == ["<a@b>"]


def test_non_ascii_names_and_subject_are_rfc2047_without_smtputf8() -> None:
    c = compose(
        sender="Zoë Ångström <zoe@example.org>",
        to=["Jürgen <j@example.net>"],
        subject="Grüße aus Köln",
        text="Grüße\n",
    )
    data = c.as_bytes()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # encoded words, not raw UTF-8: no SMTPUTF8 needed
    assert b"=?utf-8?" in head
    msg = parse(data)
    assert str(msg["Subject"]) == "Grüße aus Köln"
    assert msg["From"].addresses[0].display_name == "Zoë Ångström"
    assert not c.envelope.needs_smtputf8


def test_non_ascii_address_uses_smtputf8() -> None:
    c = compose(sender="δοκιμή@παράδειγμα.example", to=["a@example.org"], text="x")
    head = c.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert "δοκιμή@παράδειγμα.example".encode() in head
    assert c.envelope.needs_smtputf8


def test_html_alternative_attachments_and_inline_image(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 fake")
    img = tmp_path / "logo.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\x00\x01")
    c = compose(
        sender="me@example.org",
        to=["you@example.net"],
        text="plain",
        html='<p>hi <img src="cid:logo"></p>',
        attachments=[
            Attachment(pdf),
            Attachment(odd, content_type="text/csv", filename="naïve.csv"),
            Attachment(img, inline=True, content_id="logo"),
        ],
    )
    msg = parse(c.as_bytes())
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("html",))
    assert body is not None and "cid:logo" in body.get_content()
    plain = msg.get_body(("plain",))
    assert plain is not None and plain.get_content().strip() == "plain"
    attachments = {a.get_filename(): a for a in msg.iter_attachments()}
    assert attachments["report.pdf"].get_content_type() == "application/pdf"
    assert attachments["report.pdf"].get_content() == b"%PDF-1.4 fake"
    assert attachments["naïve.csv"].get_content_type() == "text/csv"
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert related, "inline images go in multipart/related with the HTML"
    (image,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sender": "not an address"}, InvalidAddress),
        ({"sender": "me@example.org", "to": ["you@"]}, InvalidAddress),
        ({"sender": "me@example.org", "to": []}, InvalidAddress),
        ({"sender": "me@example.org", "subject": "hi\r\nBcc: evil@example.com"}, InvalidArgument),
        (
            {"sender": "me@example.org", "headers": [("X-A", "1\nBcc: e@example.com")]},
            InvalidArgument,
        ),
        ({"sender": "me@example.org", "headers": [("Bad Name", "v")]}, InvalidArgument),
        ({"sender": "me@example.org", "headers": [("To", "x@example.com")]}, InvalidArgument),
        ({"sender": "me@example.org\r\nRCPT TO:<x@y.z>"}, InvalidArgument),
        # Before: a ValueError from the email package (at most one: RFC 5322 §3.6) ...
        (
            {"sender": "me@example.org", "headers": [("Date", DATE), ("Date", DATE)]},
            InvalidArgument,
        ),
        ({"sender": "me@example.org", "headers": [("Message-ID", "<a@x.y>")] * 2}, InvalidArgument),
        # ... or the field written wrong: "Date:" empty, an address-less Sender quoted.
        ({"sender": "me@example.org", "headers": [("Date", "yesterday")]}, InvalidArgument),
        ({"sender": "me@example.org", "headers": [("Message-ID", "no id")]}, InvalidArgument),
        ({"sender": "me@example.org", "headers": [("Sender", "the boss")]}, InvalidArgument),
        ({"sender": "me@example.org", "headers": [("Resent-Date", "today")]}, InvalidArgument),
    ],
)
def test_bad_input_is_refused_before_building(kwargs: dict[str, object], error: type) -> None:
    kwargs.setdefault("to", ["you@example.net"])
    with pytest.raises(error):
        compose(text="x", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["text", "html", "subject"])
def test_a_value_that_is_not_text_is_refused_before_building(name: str) -> None:
    """A lone surrogate (Python decodes a command-line argument's octets that
    are not UTF-8 so) was a UnicodeEncodeError from the email package."""
    values = {"text": "x", name: "caf\udce9"}
    with pytest.raises(InvalidArgument, match="the octet 0xE9, which is not UTF-8"):
        compose(sender="me@example.org", to=["you@example.net"], **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attachment", "where"),
    [
        ({"filename": "a\r\nBcc: x@example.com.txt"}, "file name"),
        ({"filename": "a\u2028b.txt"}, "file name"),
        ({"content_type": "text/plain\r\nBcc: x@example.com"}, "content type"),
        ({"content_type": "text/pl ain"}, "content type"),
        ({"content_type": "text/plain; charset=latin-1"}, "content type"),
        ({"inline": True, "content_id": "x\r\nBcc: y@example.com"}, "content_id"),
        ({"inline": True, "content_id": "a>b<c"}, "content_id"),
        ({"inline": True, "content_id": "ü@example.org"}, "content_id"),
    ],
)
def test_bad_attachment_values_are_input_errors(
    attachment: dict[str, Any], where: str, tmp_path: Path
) -> None:
    # Before: the email package's ValueError while building, or a malformed
    # field ("Content-ID: <a>b<c>", "Content-Type: text/pl ain") sent as it was.
    path = tmp_path / "a.txt"
    path.write_text("hello\n")
    with pytest.raises(InvalidArgument, match=where):
        compose(
            sender="me@example.org",
            to=["you@example.net"],
            html="<p>x</p>",
            attachments=[Attachment(path, **attachment)],
        )


@pytest.mark.parametrize("domain", ["ex ample.org", "a>b", "example.org\r\nBcc: x@y.z", "[1.2.3]"])
def test_a_bad_message_id_domain_is_an_input_error(domain: str) -> None:
    # Before: "Message-ID: <...@ex> " (the rest of the domain lost), or a ValueError.
    with pytest.raises(InvalidArgument, match="message_id_domain"):
        compose(sender="me@example.org", to=["you@example.net"], message_id_domain=domain)


def test_an_internationalised_message_id_domain_goes_as_a_labels() -> None:
    # Before: UnicodeEncodeError from as_bytes(), after the message was built.
    c = compose(sender="me@example.org", to=["you@example.net"], message_id_domain="bücher.example")
    assert parse(c.as_bytes())["Message-ID"].endswith("@xn--bcher-kva.example>")


def test_unreadable_attachment_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compose(
            sender="me@example.org",
            to=["you@example.net"],
            attachments=[Attachment(tmp_path / "missing.pdf")],
        )


RAW = (
    b"From: Me <me@example.org>\r\n"
    b"To: a@example.net, B <b@example.net>\r\n"
    b"Cc: c@example.net\r\n"
    b"Bcc: secret@example.net,\r\n"
    b"  folded-secret@example.net\r\n"
    b"Subject: raw\r\n"
    b"\r\n"
    b"body line\r\n"
    b".leading dot\r\n"
    b"Bcc: not a header, in the body\r\n"
)


def test_raw_envelope_from_headers_and_bcc_removed() -> None:
    raw = read_raw(io.BytesIO(RAW))
    envelope = raw.envelope(None, (), from_headers=True)
    assert envelope.sender == "me@example.org"
    assert envelope.recipients == (
        "a@example.net",
        "b@example.net",
        "c@example.net",
        "secret@example.net",
        "folded-secret@example.net",
    )
    out = b"".join(as_content(raw.chunks()).chunks)  # the chunks a send would take
    assert b"secret" not in out
    assert out.endswith(b"\r\n\r\nbody line\r\n.leading dot\r\nBcc: not a header, in the body\r\n")


def test_raw_resent_fields_win() -> None:
    data = b"From: a@example.org\nTo: old@example.net\nResent-From: r@example.org\n"
    data += b"Resent-To: new@example.net\n\nbody\n"
    envelope = read_raw(io.BytesIO(data)).envelope(None, (), from_headers=True)
    assert envelope.sender == "r@example.org"
    assert envelope.recipients == ("new@example.net",)


def test_raw_is_streamed_unchanged() -> None:
    body = bytes(range(256)) * 4000  # 8-bit, NUL and all: never re-encoded
    data = b"From: a@example.org\nTo: b@example.org\n\n" + body
    raw = read_raw(io.BytesIO(data))
    chunks = list(raw.chunks())
    assert len(chunks) > 2  # the body came in blocks, not read whole
    assert b"".join(chunks) == data


def test_composed_message_survives_a_real_server(smtpd: object, tmp_path: Path) -> None:
    from support.servers import RecordingServer

    assert isinstance(smtpd, RecordingServer)
    att = tmp_path / "notes.txt"
    att.write_text("ünïcode notes\n", encoding="utf-8")
    c = compose(
        sender="Zoë <zoe@example.org>",
        to=["you@example.net"],
        bcc=["hidden@example.net"],
        subject="Grüße",
        text="line one\n.dot line\n",
        attachments=[Attachment(att)],
    )
    with Client(smtpd.host, smtpd.port) as client:
        result = client.send(c.as_bytes(), envelope=c.envelope)
    assert result.ok
    (got,) = smtpd.messages
    assert got.rcpt_tos == ["you@example.net", "hidden@example.net"]
    msg = parse(got.content)
    assert str(msg["Subject"]) == "Grüße"
    assert b"hidden@example.net" not in got.content
    plain = msg.get_body(("plain",))
    assert plain is not None and plain.get_content() == "line one\n.dot line\n"
    (attachment,) = msg.iter_attachments()
    assert attachment.get_content() == "ünïcode notes\n"


def test_compose_is_public() -> None:
    import smtpmail

    assert smtpmail.compose is compose and smtpmail.Attachment is Attachment


def test_idn_domain_with_ascii_local_part_needs_no_smtputf8() -> None:
    c = compose(sender="me@bücher.example", to=["Jörg <j@münchen.example>"], text="x")
    head = c.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"me@xn--bcher-kva.example" in head and b"j@xn--mnchen-3ya.example" in head
    assert c.envelope.recipients == ("j@xn--mnchen-3ya.example",)
    assert not c.envelope.needs_smtputf8


def test_a_text_attachment_that_is_not_utf8_says_its_charset_is_unknown(tmp_path: Path) -> None:
    """RFC 1428: unknown-8bit, not the US-ASCII RFC 2046 assumes without a
    charset (a Latin-1 CSV showed garbage for each accented letter); the
    octets arrive as they were."""
    att = tmp_path / "people.csv"
    att.write_bytes("name\nRenée\n".encode("latin-1"))
    c = compose(
        sender="me@example.org", to=["you@example.net"], text="x", attachments=[Attachment(att)]
    )
    (attachment,) = parse(c.as_bytes()).iter_attachments()
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_param("charset") == "unknown-8bit"
    assert attachment.get_payload(decode=True) == "name\nRenée\n".encode("latin-1")
