"""message.wire: a Message's header fields as a receiving server gets them.

The email package folds a long ASCII word of an unstructured field into RFC
2047 encoded words (a List-Unsubscribe URL arrived as
``=?utf-8?q?=3Chttps=3A//...?=``, which no receiver reads as a URL), refolded
the fields of a parsed message the same way (a DKIM-Signature's b= tag
became encoded words), and wrote a non-ASCII domain as an encoded word inside
the address. Every message is sent to a real server and read back there.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smtpmail
from smtpmail.message.fold import fold_field
from smtpmail.message.wire import flatten
from support.harness import drive, op
from support.servers import RecordingServer

URL = "<https://example.org/unsubscribe/one-click?token=" + "0123456789abcdef" * 8 + ">"
LONG_ID = "<" + "c0ffee" * 15 + "@mail.example.org>"
TOKEN = "a" * 300 + " b " + "c" * 500


def _field(content: bytes, name: bytes) -> bytes:
    """The field ``name`` as it arrived, folded lines and all."""
    head = content.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\r\n".join(lines[start:end])


def _send(kind: str, message: EmailMessage | bytes) -> bytes:
    with RecordingServer() as server:
        outcome = drive(
            kind, server.port, [op("send", message, "a@example.org", ["b@example.org"])]
        )
        assert outcome.error is None
    (received,) = server.messages
    return received.content


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("List-Unsubscribe", URL),  # RFC 2369/8058: a receiver reads the URL in the brackets
        ("List-Unsubscribe", f"<mailto:unsub@example.org?subject=x>, {URL}"),
        ("In-Reply-To", LONG_ID),  # a msg-id: encoded words are not allowed in it
        ("X-Token", TOKEN),  # folded at its spaces, its words whole
        ("List-Unsubscribe", f"<mailto:unsub@example.org>,\t{URL}"),  # a tab is WSP too
    ],
)
def test_an_ascii_field_arrives_without_encoded_words(kind: str, name: str, value: str) -> None:
    composed = smtpmail.compose(
        sender="a@example.org", to=["b@example.org"], text="hi", headers=[(name, value)]
    )
    content = _send(kind, composed.message)
    field = _field(content, name.encode())
    assert b"=?" not in field
    assert all(len(line) <= 998 for line in field.split(b"\r\n"))
    # Unfolded (RFC 5322 §2.2.3: the CRLFs removed), the field is what was given.
    assert field.replace(b"\r\n", b"") == f"{name}: {value}".encode()
    parsed = email.message_from_bytes(content, policy=policy.default)
    assert str(parsed[name]) == value


def test_a_parsed_message_goes_with_its_fields_as_they_came(kind: str) -> None:
    source = (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n"
        b"\th=from:to:subject:list-unsubscribe; bh=" + b"B" * 44 + b";\r\n"
        b"\tb=" + b"S" * 340 + b"\r\n"
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n"
        b"List-Unsubscribe: " + URL.encode() + b"\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    )
    for parse_policy in (policy.default, policy.compat32):
        message = email.message_from_bytes(source, policy=parse_policy)
        assert _send(kind, message) == source  # type: ignore[arg-type]


def test_a_non_ascii_domain_arrives_in_a_labels(kind: str) -> None:
    message = EmailMessage()
    message["From"] = "Zoë <zoe@bücher.example>"
    message["To"] = "friends: bob@bücher.example, carol@example.org;"
    message["Subject"] = "hi"
    message.set_content("hi")
    with RecordingServer() as server:
        outcome = drive(kind, server.port, [op("send", message)])
        assert outcome.error is None
    (received,) = server.messages
    assert received.mail_from == "zoe@xn--bcher-kva.example"
    assert "SMTPUTF8" not in received.mail_options
    assert (
        _field(received.content, b"From")
        == b"From: =?utf-8?q?Zo=C3=AB?= <zoe@xn--bcher-kva.example>"
    )
    assert _field(received.content, b"To") == (
        b"To: friends: bob@xn--bcher-kva.example, carol@example.org;"
    )


_WORDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="=?"),
                 min_size=1, max_size=400)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=8))
def test_ascii_unstructured_values_round_trip_unencoded(words: list[str]) -> None:
    value = " ".join(words)
    message = EmailMessage()
    message["X-Value"] = value
    message.set_content("x")
    data = flatten(message)
    field = _field(data, b"X-Value")
    assert b"=?" not in field
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert str(email.message_from_bytes(data, policy=policy.default)["X-Value"]) == value


_TEXT_WORDS = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
                      min_size=1, max_size=300)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXT_WORDS, min_size=1, max_size=10), st.sampled_from([" ", "  ", "\t"]))
def test_fold_field_only_breaks_before_whitespace(words: list[str], space: str) -> None:
    value = space.join(words)
    folded = fold_field("X-Value", value, "\r\n")
    if folded is None:  # a word too long for any line
        assert any(len(f"X-Value: {w}".encode()) > 998 for w in words)
        return
    lines = folded.encode().split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 998 for line in lines)
    assert all(line[:1] in (b" ", b"\t") and line.strip() for line in lines[1:-1])
    assert folded.replace("\r\n", "") == f"X-Value: {value}"
