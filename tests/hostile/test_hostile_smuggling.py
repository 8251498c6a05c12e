"""SMTP smuggling: no body, however its line endings are broken, ends the data early.

Each body is sent as str, bytes, a binary file and 1-byte chunks, with DATA
and with BDAT (CHUNKING), by the blocking and the asyncio client. The
scripted server records the wire: it must hold no bare CR or LF, exactly one
end-of-data (at the end), the exact BDAT sizes, and nothing after the end of
data before the server's reply. Un-stuffed, the data must equal the body with
its line endings normalised (CRLF, a lone CR and a lone LF each one CRLF).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.harness import drive, op
from support.hostile.scripted import DEFAULT_EHLO, ScriptedServer, respond

BODIES = {
    "lf-dot-lf": b"a\n.\nb",
    "cr-dot-cr": b"a\r.\rb",
    "cr-dot-lf": b"a\r.\nb",
    "lf-dot-cr": b"a\n.\rb",
    "lf-dot-crlf": b"a\n.\r\nb",
    "crlf-dot-lf": b"a\r\n.\nb",
    "cr-dot-crlf": b"a\r.\r\nb",
    "crlf-dot-cr": b"a\r\n.\rb",
    "crlf-nul-dot-crlf": b"a\r\n\x00.\r\nb",
    "cr-cr-lf": b"a\r\r\nb",
    "only-dot": b".",
    "leading-dots": b".one\r\n..two\r\n...\r\n.\r\nend",
    "no-final-newline": b"Subject: x\r\n\r\nlast line",
    "ends-in-terminator": b"Subject: x\r\n\r\nbody\r\n.\r\n",
    "smuggled-mail": b"hi\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n.\r\n",
    "empty": b"",
}

FORMS = ("bytes", "str", "file", "1-byte-chunks")

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def normalised(body: bytes) -> bytes:
    """What RFC 5321 data the body stands for: every line ending CRLF, last line ended."""
    out = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def unstuffed(raw: bytes) -> bytes:
    """Message data from DATA's wire form: terminator removed, leading dots un-doubled."""
    assert raw.endswith(b".\r\n")
    body = raw[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def message_as(form: str, body: bytes, tmp_path: Path) -> Any:
    if form == "bytes":
        return body
    if form == "str":
        return body.decode("latin-1")  # every body here is ASCII; latin-1 keeps \x00 as is
    if form == "file":
        path = tmp_path / "message.eml"
        path.write_bytes(body)
        return path.open("rb")

    def one_byte() -> Iterator[bytes]:
        for i in range(len(body)):
            yield body[i : i + 1]

    return one_byte()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_body_cannot_end_the_data_early(
    kind: str, form: str, name: str, verb: str, tmp_path: Path
) -> None:
    body = BODIES[name]
    keywords = DEFAULT_EHLO + ((b"CHUNKING",) if verb == "BDAT" else ())
    with ScriptedServer([respond(keywords)]) as server:
        message = message_as(form, body, tmp_path)
        # Small BDAT chunks so that the 1-byte and file forms span several chunks.
        from smtpmail import Options

        outcome = drive(
            kind,
            server.port,
            [op("connect"), op("send", message, "a@example.org", ["b@example.org"]), op("quit")],
            options=Options(chunk_size=4),
        )
        if hasattr(message, "close"):
            message.close()
        assert outcome.error is None, outcome.error
        conn = server.conn()
    assert conn.errors == []
    (record,) = conn.data
    assert record.kind == verb
    assert record.trailing == b"", "bytes followed the end of data before the reply"
    assert BARE.search(record.raw) is None, f"bare CR or LF on the wire: {record.raw!r}"
    if verb == "DATA":
        # The only end-of-data sequence is the one at the very end.
        assert record.raw.endswith(b"\r\n.\r\n") or record.raw == b".\r\n"
        assert b"\r\n.\r\n" not in record.raw[:-3]
        assert unstuffed(record.raw) == normalised(body)
    else:
        assert record.raw == normalised(body)
        assert sum(record.sizes) == len(record.raw)
        # The declared sizes are what the server read: it then saw the next command.
    commands = [line.split(b" ")[0].rstrip(b"\r\n").upper() for line in conn.lines]
    assert commands[-1] == b"QUIT", commands
    assert b"MAIL" in commands and commands.count(b"MAIL") == 1, "a smuggled command got through"


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_many_messages_on_one_connection_stay_apart(kind: str, verb: str) -> None:
    """With pipelining, one message's end and the next MAIL share a write: still apart."""
    from smtpmail import Envelope

    keywords = DEFAULT_EHLO + ((b"CHUNKING",) if verb == "BDAT" else ())
    bodies = list(BODIES.values())
    items = [(Envelope("a@example.org", ["b@example.org"]), body) for body in bodies]
    with ScriptedServer([respond(keywords)]) as server:
        outcome = drive(kind, server.port, [op("connect"), op("send_many", items), op("quit")])
        assert outcome.error is None, outcome.error
        conn = server.conn()
    assert conn.errors == []
    assert [r.kind for r in conn.data] == [verb] * len(bodies)
    for record, body in zip(conn.data, bodies, strict=True):
        assert BARE.search(record.raw) is None
        got = unstuffed(record.raw) if verb == "DATA" else record.raw
        assert got == normalised(body)
    assert all(r.ok for r in outcome.results[1])
