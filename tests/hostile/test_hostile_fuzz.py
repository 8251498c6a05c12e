"""Fuzzing the two parsers a hostile peer or a hostile message reaches.

- The reply parser: a Hypothesis state machine feeds it valid replies, junk
  and oversized floods in arbitrary chunks, and checks it against a small
  reference model written from RFC 5321 §4.2: the same replies come out in
  order, the only exception is RemoteProtocolError, and its buffer stays
  within its limits. A differential test compares it with a reference
  parser on near-valid byte streams.
- The data encoder: a state machine feeds arbitrary chunks and checks that
  what a server would read back (up to the first CRLF.CRLF, un-stuffed) is
  exactly the normalised input, whatever the chunking.
- atheris (coverage-guided) runs over the reply parser for a bounded time
  in a subprocess (``fuzz_reply.py``), when atheris is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from smtpmail.errors import RemoteProtocolError
from smtpmail.protocol.data import DataEncoder
from smtpmail.protocol.reply import Reply, ReplyParser

# -- the reply parser ---------------------------------------------------------------

codes = st.integers(200, 559).filter(lambda c: (c // 10) % 10 <= 5)
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=40
)


@st.composite
def replies(draw: st.DrawFn) -> tuple[Reply, bytes]:
    code = draw(codes)
    lines = tuple(draw(st.lists(texts, min_size=1, max_size=4)))
    wire = b"".join(
        f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode()
        for i, line in enumerate(lines)
    )
    return Reply(code, tuple(map(as_text, lines))), wire


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def as_text(text: str) -> str:
    """A reply's text as the parser gives it: a control character but HT (RFC 5321
    §4.2 allows none; it would drive a terminal) as U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


class ReplyParserMachine(RuleBasedStateMachine):
    """Valid replies in, in any chunking: the same replies out; junk: only RemoteProtocolError."""

    def __init__(self) -> None:
        super().__init__()
        self.parser = ReplyParser(max_line=512, max_reply=4096)
        self.expected: list[Reply] = []
        self.pending = b""  # wire bytes of expected replies not yet fed
        self.broken = False

    @rule(reply=replies())
    def queue_reply(self, reply: tuple[Reply, bytes]) -> None:
        if not self.broken:
            self.expected.append(reply[0])
            self.pending += reply[1]

    @rule(n=st.integers(1, 64))
    def feed_some(self, n: int) -> None:
        if self.broken:
            return
        chunk, self.pending = self.pending[:n], self.pending[n:]
        self.parser.feed(chunk)
        self._drain()

    @rule(junk=st.binary(min_size=1, max_size=80))
    def feed_junk(self, junk: bytes) -> None:
        """After junk the stream is unreliable: only the error type still matters."""
        self.parser.feed(self.pending + junk)
        self.pending = b""
        self.expected.clear()
        try:
            while self.parser.maybe_next_reply() is not None:
                pass
        except RemoteProtocolError:
            self.parser.clear()
        self.parser.clear()

    @rule(size=st.integers(513, 5000), newline=st.booleans())
    def flood(self, size: int, newline: bool) -> None:
        self.parser.clear()
        self.expected.clear()
        self.pending = b""
        self.parser.feed(b"250-" + b"x" * size + (b"\r\n" if newline else b""))
        with pytest.raises(RemoteProtocolError):
            self.parser.maybe_next_reply()
        self.parser.clear()

    def _drain(self) -> None:
        while (got := self.parser.maybe_next_reply()) is not None:
            assert self.expected, f"a reply nobody sent: {got!r}"
            assert got == self.expected.pop(0)

    @invariant()
    def buffer_is_bounded(self) -> None:
        # What the parser holds never exceeds its whole-reply limit plus one read.
        assert self.parser.buffered <= 4096 + 512 + 64 + 80

    def teardown(self) -> None:
        if not self.broken and self.pending:
            self.parser.feed(self.pending)
            self._drain()
            assert self.expected == []


TestReplyParserMachine = ReplyParserMachine.TestCase
TestReplyParserMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)

_REF_LINE = re.compile(rb"([2-5][0-5][0-9])([ -][^\r\n\x00]*)?\Z")


def reference_parse(stream: bytes) -> list[Reply] | None:
    """RFC 5321 §4.2 replies from ``stream``; None when it is malformed.

    The trailing incomplete line (no CRLF yet) is ignored, as the parser waits for it.
    """
    lines = stream.split(b"\r\n")[:-1]
    out: list[Reply] = []
    code: bytes | None = None
    texts: list[str] = []
    for line in lines:
        if b"\n" in line or b"\r" in line:
            return None
        m = _REF_LINE.match(line)
        if m is None:
            return None
        if code is not None and m.group(1) != code:
            return None
        code = m.group(1)
        rest = m.group(2) or b""
        texts.append(as_text(rest[1:].decode("utf-8", "replace")))
        if not rest.startswith(b"-"):
            out.append(Reply(int(code), tuple(texts)))
            code, texts = None, []
    return out


near_valid_lines = st.one_of(
    st.builds(lambda c, t: f"{c} {t}\r\n".encode(), codes, texts),
    st.builds(lambda c, t: f"{c}-{t}\r\n".encode(), codes, texts),
    st.sampled_from([b"250\r\n", b"250 ok\n", b"25 ok\r\n", b"2x0 ok\r\n", b"\r\n"]),
    st.sampled_from([b"250 a\rb\r\n", b"250-a\r\n251 b\r\n", b"250-\r\n"]),
    st.sampled_from([b"600 x\r\n", b"199 x\r\n", b"260 x\r\n", b"250 \x00\r\n", b"250ok\r\n"]),
    st.binary(max_size=12),
)


@given(st.lists(near_valid_lines, max_size=12), st.integers(1, 17))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_parser_agrees_with_the_reference(lines: list[bytes], step: int) -> None:
    stream = b"".join(lines)
    expected = reference_parse(stream)
    parser = ReplyParser()
    got: list[Reply] = []
    try:
        for i in range(0, len(stream), step):
            parser.feed(stream[i : i + step])
            while (reply := parser.maybe_next_reply()) is not None:
                got.append(reply)
    except RemoteProtocolError:
        assert expected is None or _reference_fails_later(stream), (stream, got)
        return
    if expected is None:
        # The reference saw a bad complete line; the parser must not have passed it.
        pytest.fail(f"accepted a malformed stream {stream!r} as {got!r}")
    assert got == expected


def _reference_fails_later(stream: bytes) -> bool:
    """A bare LF is an error only for the parser (the reference splits on CRLF)."""
    return b"\n" in stream.replace(b"\r\n", b"")


# -- the data encoder -----------------------------------------------------------------

chunks = st.lists(
    st.one_of(
        st.binary(max_size=20),
        st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\x00"]), max_size=10).map(b"".join),
    ),
    max_size=20,
)


def normalised(body: bytes) -> bytes:
    out = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return out + b"\r\n" if out and not out.endswith(b"\r\n") else out


def server_reads(wire: bytes) -> tuple[bytes, bytes]:
    """What a server takes as the message (up to its first end of data), and the rest."""
    if wire.startswith(b".\r\n"):
        return b"", wire[3:]
    end = wire.find(b"\r\n.\r\n")
    assert end >= 0, "no end of data"
    body = wire[: end + 2]
    lines = body.split(b"\r\n")
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    return unstuffed, wire[end + 5 :]


class EncoderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = DataEncoder()
        self.bdat = DataEncoder(dot_stuff=False)
        self.fed = b""
        self.wire = b""
        self.raw = b""

    @rule(chunk=st.one_of(st.binary(max_size=30), st.sampled_from([b"\r", b"\n", b".", b"\r\n."])))
    def feed(self, chunk: bytes) -> None:
        self.fed += chunk
        out = self.encoder.feed(chunk)
        self.wire += out
        self.raw += self.bdat.feed(chunk)
        assert len(out) <= 2 * len(chunk) + 2  # bounded: no buffering beyond a CR

    @invariant()
    def never_an_early_end(self) -> None:
        assert b"\r\n.\r\n" not in self.wire and not self.wire.startswith(b".\r\n")
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", self.wire) is None or self.wire.endswith(b"\r")

    def teardown(self) -> None:
        wire = self.wire + self.encoder.end()
        body, rest = server_reads(wire)
        assert rest == b""
        assert body == normalised(self.fed)
        assert self.raw + self.bdat.end() == normalised(self.fed)


TestEncoderMachine = EncoderMachine.TestCase
TestEncoderMachine.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)


@given(chunks)
@settings(max_examples=500)
def test_server_reads_back_exactly_the_message(parts: list[bytes]) -> None:
    encoder = DataEncoder()
    wire = b"".join(encoder.feed(p) for p in parts) + encoder.end()
    body, rest = server_reads(wire)
    assert rest == b"" and body == normalised(b"".join(parts))


# -- atheris ---------------------------------------------------------------------------

FUZZ_SECONDS = int(os.environ.get("SMTPMAIL_FUZZ_SECONDS", "20"))


# The condition under which pyproject.toml's test extra brings atheris (no wheels elsewhere).
ATHERIS_HERE = sys.platform == "linux" and sys.version_info < (3, 13)


@pytest.mark.skipif(not ATHERIS_HERE, reason="atheris has no wheels for this platform or Python")
def test_atheris_over_the_reply_parser(tmp_path: Path) -> None:
    """Coverage-guided fuzzing for a bounded time: any other exception or >512 MB fails."""
    if importlib.util.find_spec("atheris") is None:
        pytest.fail("atheris is not installed: pip install -e '.[test]' (scripts/test.sh does)")
    script = Path(__file__).resolve().parent.parent / "support" / "hostile" / "fuzz_reply.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            f"-max_total_time={FUZZ_SECONDS}",
            "-rss_limit_mb=512",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 60,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    assert runs is not None and int(runs.group(1)) > 1000, out[-2000:]
