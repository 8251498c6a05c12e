"""The Bcc rule (smtpmail.message.bcc): Bcc and Resent-Bcc never reach the wire.

Table-driven cases for the header-section filter, Hypothesis for what it must
never do (touch the body, change a message without Bcc), and the streaming
side: files and chunk iterators, cut at every place, give the same bytes, and
the SIZE a Content declares is the size of what is sent.
"""

from __future__ import annotations

import io
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smtpmail.errors import InvalidArgument
from smtpmail.message.bcc import MAX_HEADER_SECTION, drop_bcc, split_header_section
from smtpmail.message.content import as_content, wire_size
from smtpmail.protocol.data import AS_IS

# (name, message, what must go out)
CASES = [
    (
        "plain Bcc",
        b"To: a@x\r\nBcc: b@x\r\nSubject: s\r\n\r\nbody\r\n",
        b"To: a@x\r\nSubject: s\r\n\r\nbody\r\n",
    ),
    (
        "folded Bcc",
        b"To: a@x\r\nBcc: b@x,\r\n  c@x,\r\n\td@x\r\nSubject: s\r\n\r\nbody\r\n",
        b"To: a@x\r\nSubject: s\r\n\r\nbody\r\n",
    ),
    ("upper case", b"BCC: b@x\r\nTo: a@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    ("mixed case", b"bCc: b@x\r\nTo: a@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    (
        "Resent-Bcc",
        b"Resent-To: a@x\r\nRESENT-bcc: b@x\r\n\r\nb\r\n",
        b"Resent-To: a@x\r\n\r\nb\r\n",
    ),
    ("blank before colon", b"To: a@x\r\nBcc : b@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    ("empty Bcc", b"To: a@x\r\nBcc:\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    ("empty folded Bcc", b"Bcc:\r\n b@x\r\nTo: a@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    ("Bcc last header", b"To: a@x\r\nBcc: b@x\r\n\r\nbody\r\n", b"To: a@x\r\n\r\nbody\r\n"),
    ("Bcc last, no body", b"To: a@x\r\nBcc: b@x\r\n", b"To: a@x\r\n"),
    ("Bcc last, no newline", b"To: a@x\r\nBcc: b@x", b"To: a@x\r\n"),
    ("only Bcc", b"Bcc: b@x\r\n\r\nbody\r\n", b"\r\nbody\r\n"),
    ("two Bcc fields", b"Bcc: b@x\r\nTo: a@x\r\nBcc: c@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    (
        "LF endings",
        b"To: a@x\nBcc: b@x,\n c@x\nSubject: s\n\nbody\n",
        b"To: a@x\nSubject: s\n\nbody\n",
    ),
    (
        "mixed endings",
        b"To: a@x\nBcc: b@x\r\nSubject: s\n\r\nbody\n",
        b"To: a@x\nSubject: s\n\r\nbody\n",
    ),
    ("stray CR in Bcc", b"Bcc: b@x\rc@x\r\nTo: a@x\r\n\r\nb\r\n", b"To: a@x\r\n\r\nb\r\n"),
    # A lone CR goes on the wire as CRLF: a field after one is a field there.
    (
        "CR endings",
        b"To: a@x\rBcc: b@x,\r c@x\rSubject: s\r\rbody\r",
        b"To: a@x\rSubject: s\r\rbody\r",
    ),
    (
        "lone CR before Bcc",
        b"To: a@x\rBcc: b@x\r\nSubject: s\r\n\r\nb\r\n",
        b"To: a@x\rSubject: s\r\n\r\nb\r\n",
    ),
    # Not b"To: a@x\r\nb\n": the CR and the empty line's LF joined into one CRLF,
    # the empty line was gone, and the body's first line read as part of the
    # header section (a "Bcc:" line there went out as a field).
    ("lone CR before Resent-Bcc", b"To: a@x\rresent-bcc: b@x\n\nb\n", b"To: a@x\r\n\nb\n"),
    ("CR empty line ends it", b"To: a@x\r\rBcc: b@x\n\nb\n", b"To: a@x\r\rBcc: b@x\n\nb\n"),
    ("mbox From line", b"From a@x Mon\nBcc: b@x\nTo: a@x\n\nb\n", b"From a@x Mon\nTo: a@x\n\nb\n"),
    ("Bcc with 8-bit", "Bcc: jörg@x\r\nTo: a@x\r\n\r\nb\r\n".encode(), b"To: a@x\r\n\r\nb\r\n"),
    # What must stay: the rule is about Bcc fields of the header section only.
    ("Bcc in the body", b"To: a@x\r\n\r\nBcc: b@x\r\n", b"To: a@x\r\n\r\nBcc: b@x\r\n"),
    (
        "Bcc-Like field",
        b"Bcc-Like: b@x\r\nX-Bcc: c@x\r\n\r\nb\r\n",
        b"Bcc-Like: b@x\r\nX-Bcc: c@x\r\n\r\nb\r\n",
    ),
    ("Bcc in a value", b"Subject: Bcc: b@x\r\n\r\nb\r\n", b"Subject: Bcc: b@x\r\n\r\nb\r\n"),
    (
        "Bcc folded into a value",
        b"Subject: s\r\n Bcc: b@x\r\n\r\nb\r\n",
        b"Subject: s\r\n Bcc: b@x\r\n\r\nb\r\n",
    ),
    ("no header section", b"\r\nBcc: b@x\r\n", b"\r\nBcc: b@x\r\n"),
    (
        "body-only text",
        b"hello there\r\nBcc: b@x\r\n\r\nmore\r\n",
        b"hello there\r\nBcc: b@x\r\n\r\nmore\r\n",
    ),
    (
        "not a field line ends it",
        b"To: a@x\r\nnot a field\r\nBcc: b@x\r\n\r\nb\r\n",
        b"To: a@x\r\nnot a field\r\nBcc: b@x\r\n\r\nb\r\n",
    ),
    ("empty message", b"", b""),
]


@pytest.mark.parametrize(("name", "message", "expected"), CASES, ids=[c[0] for c in CASES])
def test_drop_bcc(name: str, message: bytes, expected: bytes) -> None:
    assert drop_bcc(message) == expected


@pytest.mark.parametrize(("name", "message", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("form", ["bytes", "str", "file", "chunks", "1-octet chunks"])
def test_every_input_form_sends_the_same(
    name: str, message: bytes, expected: bytes, form: str
) -> None:
    if form == "str":
        try:
            given_input: object = message.decode("utf-8")
        except UnicodeDecodeError:
            pytest.skip("not UTF-8")
    elif form == "file":
        given_input = io.BytesIO(message)
    elif form == "chunks":
        given_input = iter([message[:7], message[7:]])
    elif form == "1-octet chunks":
        given_input = (message[i : i + 1] for i in range(len(message)))
    else:
        given_input = message
    content = as_content(given_input)  # type: ignore[arg-type]
    size = content.declared_size()
    assert b"".join(content.chunks) == expected
    if form in ("bytes", "str"):
        assert size == wire_size(expected)  # what SIZE declares: CRLF counted
    assert b"".join(as_content(message, keep_bcc=True).chunks) == message


def test_a_file_declares_the_size_of_what_is_sent(tmp_path: Path) -> None:
    message = b"To: a@x\r\nBcc: b@x,\r\n c@x\r\n\r\n" + b"x" * 1_000_000 + b"\r\n"
    (tmp_path / "m.eml").write_bytes(message)
    with open(tmp_path / "m.eml", "rb") as f:
        content = as_content(f)
        assert content.declared_size() == len(message) - len(b"Bcc: b@x,\r\n c@x\r\n")
        assert content.declared_size() == len(b"".join(content.chunks))
    with open(tmp_path / "m.eml", "rb") as f:
        assert as_content(f, keep_bcc=True).declared_size() == len(message)


def test_flags_are_those_of_what_is_sent() -> None:
    # The only 8-bit octets were in the Bcc field: what goes out is ASCII.
    content = as_content("Bcc: jörg@x\r\nTo: a@x\r\n\r\nbody\r\n")
    assert content.eight_bit is False and content.smtputf8 is False
    kept = as_content("Bcc: jörg@x\r\nTo: a@x\r\n\r\nbody\r\n", keep_bcc=True)
    assert kept.eight_bit is True and kept.smtputf8 is True
    # The form (all CRLF, no line-leading dot) is measured on the data that goes out.
    crlf = as_content(b"Bcc: b@x\nTo: a@x\r\n\r\nbody\r\n")
    assert crlf.declared_size() == len(b"To: a@x\r\n\r\nbody\r\n") and crlf.form == AS_IS


def test_email_message_loses_bcc_and_resent_bcc() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg["Bcc"] = "Secret <c@example.org>, d@example.org"
    msg["Resent-Bcc"] = "e@example.org"
    msg["Subject"] = "Bcc: in the subject stays"
    msg.set_content("Bcc: in the body stays\n")
    sent = b"".join(as_content(msg).chunks)
    assert b"c@example.org" not in sent and b"e@example.org" not in sent
    assert b"Subject: Bcc: in the subject stays\r\n" in sent
    assert sent.endswith(b"\r\n\r\nBcc: in the body stays\r\n")
    assert b"Bcc: Secret <c@example.org>" in b"".join(as_content(msg, keep_bcc=True).chunks)


def test_the_body_of_a_stream_is_not_read_ahead() -> None:
    head = b"To: a@x\r\nBcc: b@x\r\n\r\n"
    pulled: list[int] = []

    def chunks() -> object:
        yield head
        for i in range(1000):
            pulled.append(i)
            yield b"body block %d\r\n" % i

    content = as_content(chunks())  # type: ignore[arg-type]
    assert len(pulled) < 500  # about as much body as there was header at most
    assert b"".join(content.chunks).startswith(b"To: a@x\r\n\r\nbody block 0\r\n")
    assert len(pulled) == 1000


def test_a_huge_header_section_is_refused_before_sending() -> None:
    line = b"X-Filler: " + b"y" * 990 + b"\r\n"
    endless = (line for _ in range(2 * MAX_HEADER_SECTION // len(line)))
    with pytest.raises(InvalidArgument, match="header section"):
        split_header_section(endless)


# -- properties -----------------------------------------------------------------

_name = st.sampled_from(
    ["To", "Cc", "Subject", "X-Bcc", "Bcc-Like", "Message-ID", "bcc", "Bcc", "BCC", "Resent-Bcc"]
)
_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
_eol = st.sampled_from([b"\r\n", b"\n", b"\r"])
_body = st.binary(max_size=300)


@st.composite
def messages(draw: st.DrawFn, with_bcc: bool = True) -> tuple[bytes, bytes, bytes]:
    """(message, the message as it must go out, its body); the body follows an empty line."""
    names = _name if with_bcc else _name.filter(lambda n: n.lower() not in ("bcc", "resent-bcc"))
    eol = draw(_eol)
    head = kept = b""
    for _ in range(draw(st.integers(0, 6))):
        name = draw(names)
        folds = draw(st.lists(_value.map(lambda v: b" " + v.encode()), max_size=2))
        field = name.encode() + b": " + draw(_value).encode() + b"".join(eol + f for f in folds)
        head += field + eol
        if name.lower() not in ("bcc", "resent-bcc"):
            kept += field + eol
    body = eol + draw(_body)
    return head + body, kept + body, body


@given(messages())
def test_removal_never_touches_the_body(case: tuple[bytes, bytes, bytes]) -> None:
    message, expected, body = case
    out = drop_bcc(message)
    assert out.endswith(body)
    assert out == expected


@given(messages(with_bcc=False), st.integers(1, 50))
def test_no_bcc_field_no_change(case: tuple[bytes, bytes, bytes], cut: int) -> None:
    message = case[0]
    assert drop_bcc(message) is message  # not even a copy
    pieces = [message[i : i + cut] for i in range(0, len(message), cut)]
    assert b"".join(as_content(iter(pieces)).chunks) == message


@given(messages(), st.integers(1, 50))
def test_streams_cut_anywhere_send_what_bytes_send(
    case: tuple[bytes, bytes, bytes], cut: int
) -> None:
    message, expected, _ = case
    pieces = [message[i : i + cut] for i in range(0, len(message), cut)]
    assert b"".join(as_content(iter(pieces)).chunks) == expected
    assert b"".join(as_content(io.BytesIO(message)).chunks) == expected


# -- what the server sees ---------------------------------------------------------

_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")
_WIRE_BCC = re.compile(rb"(?i)(?:resent-)?bcc[ \t]*:")


def _wire_header_fields(message: bytes) -> list[bytes]:
    """The header section's field lines as a server reads the message off the
    wire, where every CR, LF and CRLF is one CRLF (smtpmail.protocol.data)."""
    lines = re.split(rb"\r\n|\r|\n", message)
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation
        if not _FIELD_START.match(line):
            break  # the empty line, or a line that ends the header section
        fields.append(line)
    return fields


_piece = st.one_of(
    _value.map(str.encode),
    st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"Bcc: b@x", b"resent-BCC :c@x", b"To: a@x"]),
)


# (Not starting with a folded line: no field precedes it, so the section is
# empty; Python's email parser alone reads fields after one.)
@given(st.lists(_piece, max_size=12).map(b"".join).filter(lambda m: m[:1] not in (b" ", b"\t")))
# A field ending in a lone CR before a dropped Bcc field, then the empty line:
# joined, CR and LF became one CRLF, the empty line vanished, and the body's
# "Bcc:" line went out as a field.
@example(b"0Bcc: b@x\rBcc: b@x\n\nBcc: b@x")
def test_no_bcc_field_reaches_the_wire_whatever_the_line_endings(message: bytes) -> None:
    """Line endings of every kind and stray CRs anywhere: after the rule, the
    header section the server reads has no Bcc field, and every other field
    it would have read is still there."""
    out = drop_bcc(message)
    assert not any(_WIRE_BCC.match(f) for f in _wire_header_fields(out))
    kept = [f for f in _wire_header_fields(message) if not _WIRE_BCC.match(f)]
    assert _wire_header_fields(out)[: len(kept)] == kept
