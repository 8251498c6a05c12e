"""A message source that gives text instead of bytes is named as such.

Iterators and files are streamed; a chunk that is not bytes (a str, from a
text-mode file that io.TextIOBase does not recognise, such as a
SpooledTemporaryFile opened "w+", or a generator of str) used to fail deep
inside with "can't concat str to bytearray" or "cannot use a bytes pattern
on a string-like object". It is a TypeError that says what was wrong: before
connecting when it is the first chunk; mid-message, the connection is closed
without the end of data, so the real aiosmtpd here keeps nothing, and the
client sends the next message on a new connection.
"""

from __future__ import annotations

import io
import socket
import tempfile
from collections.abc import Iterator

import pytest

from smtpmail import ConnectError
from support.harness import Connect, drive, op
from support.servers import RecordingServer

GOOD = b"Subject: next\r\n\r\nnext\r\n"


def _text_file() -> tempfile.SpooledTemporaryFile[str]:
    f = tempfile.SpooledTemporaryFile(mode="w+")  # noqa: SIM115 (the test sends it)
    f.write("Subject: text\n\nbody\n")
    f.seek(0)
    return f


def _late_str() -> Iterator[object]:
    yield b"Subject: late\r\n\r\n"
    yield b"line\r\n" * 200_000  # past the header section read ahead, into DATA
    yield "a str at the end\r\n"


@pytest.mark.parametrize(
    ("source", "named"),
    [
        (lambda: iter(["Subject: s\r\n\r\nbody\r\n"]), "iterator yielded str, not bytes"),
        (lambda: [b"Subject: s\r\n\r\n", 42], "iterator yielded int, not bytes"),
        (_text_file, r"read\(\) returned str, not bytes"),
        (_late_str, "iterator yielded str, not bytes"),
    ],
    ids=["str-first", "int-second", "text-file", "str-mid-data"],
)
async def test_a_source_of_text_is_a_type_error_that_says_so(
    source: object, named: str, smtpd: RecordingServer, connect: Connect
) -> None:
    async with connect(smtpd.port) as client:
        with pytest.raises(TypeError, match=named):
            await client.send(source(), "a@example.org", ["b@example.org"])  # type: ignore[operator]
        result = await client.send(GOOD, "a@example.org", ["c@example.org"])
    assert result.ok
    assert [(m.rcpt_tos, m.content) for m in smtpd.messages] == [(["c@example.org"], GOOD)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("first", ["connect-refused", "rehearsal"])
def test_a_file_not_sent_goes_back_where_it_was_given(
    kind: str, first: str, smtpd: RecordingServer
) -> None:
    """``send`` reads a file's header section (here, all of it) before it
    connects, to check the message first. When the connection then failed,
    the file stayed read: sent again, the message went empty. A rehearsal,
    which sends no data, left it read as well. The file goes back where it
    was handed over."""
    f = io.BytesIO(b"prefix" + GOOD)
    f.seek(len(b"prefix"))
    if first == "connect-refused":
        outcome = drive(kind, _closed_port(), [op("send", f, "a@example.org", ["b@example.org"])])
        assert isinstance(outcome.error, ConnectError)
    else:
        ops = [op("rehearse", "rcpt", f, "a@example.org", ["b@example.org"])]
        assert drive(kind, smtpd.port, ops).error is None
    outcome = drive(kind, smtpd.port, [op("send", f, "a@example.org", ["c@example.org"])])
    assert outcome.error is None
    assert [m.content for m in smtpd.messages] == [GOOD]
