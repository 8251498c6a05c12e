"""The message-data encoder (RFC 5321 §2.3.8, §4.5.2): table-driven and Hypothesis."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpmail.message.content import as_content
from smtpmail.protocol.data import (
    AS_IS,
    CHECK,
    STUFF,
    DataEncoder,
    encode_buffer,
    encode_data,
    measure,
)
from support.messagedata import chunkings, messages, normalise


def encode(*chunks: bytes, dot_stuff: bool = True) -> bytes:
    return b"".join(encode_data(chunks, dot_stuff=dot_stuff))


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a\n", b"a\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
        (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),  # CR, CRLF, LF: three line breaks
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),  # a terminator in the content is stuffed
        (b"a\n..b", b"a\r\n...b\r\n.\r\n"),
        (b"a.b\n", b"a.b\r\n.\r\n"),  # a dot inside a line is left alone
        (b"\r.\r", b"\r\n..\r\n.\r\n"),
        (b"x\n\r\n.\n", b"x\r\n\r\n..\r\n.\r\n"),
        (b"\x00\xff", b"\x00\xff\r\n.\r\n"),
        # As many CRs as LFs, yet not paired: the counting fast path must not pass them.
        (b"a\n\rb", b"a\r\n\r\nb\r\n.\r\n"),
        (b"\n.\r", b"\r\n..\r\n.\r\n"),
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),  # already canonical: only stuffed
    ],
)
def test_dot_stuffing_and_line_endings(message: bytes, wire: bytes) -> None:
    assert encode(message) == wire


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a\r", b"\nb"],  # CRLF split across chunks
        [b"a\r", b"", b"\nb"],
        [b"a\n", b".b"],  # a line-leading dot in the next chunk
        [b"a\r", b".b"],
        [b"a\r\n", b".", b"b"],
        [b"a", b"\r", b"\n", b".", b"b"],
    ],
)
def test_chunk_boundaries(chunks: list[bytes]) -> None:
    assert encode(*chunks) == encode(b"".join(chunks))


def test_bdat_mode_normalises_without_stuffing_or_terminator() -> None:
    assert encode(b"a\n.b\r.", dot_stuff=False) == b"a\r\n.b\r\n.\r\n"
    assert encode(b"", dot_stuff=False) == b""
    assert encode(b"a\r\n", dot_stuff=False) == b"a\r\n"


def test_the_encoder_counts_input_octets() -> None:
    enc = DataEncoder()
    enc.feed(b"abc\n")
    enc.feed(b"de")
    assert enc.octets_in == 6


def unstuff(wire: bytes) -> bytes:
    """What a receiving server stores (RFC 5321 §4.5.2): strip the terminator and one dot."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@settings(max_examples=400)
@given(chunkings())
def test_any_chunking_gives_the_same_wire_bytes(case: tuple[bytes, list[bytes]]) -> None:
    message, chunks = case
    assert encode(*chunks) == encode(message)


@settings(max_examples=400)
@given(chunkings())
def test_no_bare_cr_or_lf_and_no_early_terminator(case: tuple[bytes, list[bytes]]) -> None:
    message, chunks = case
    wire = encode(*chunks)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", wire) is None
    assert wire.endswith(b".\r\n")
    # The terminator CRLF.CRLF appears exactly once, at the very end
    # (the wire starts after a CRLF, the DATA command's).
    assert (b"\r\n" + wire).find(b"\r\n.\r\n") == len(wire) - 3
    assert unstuff(wire) == normalise(message)


@settings(max_examples=200)
@given(chunkings())
def test_bdat_chunks_are_only_normalised(case: tuple[bytes, list[bytes]]) -> None:
    message, chunks = case
    assert encode(*chunks, dot_stuff=False) == normalise(message)


def test_streaming_holds_one_chunk_at_a_time() -> None:
    consumed = 0

    def source() -> object:
        nonlocal consumed
        for _ in range(1000):
            consumed += 1
            yield b"x" * 1000 + b"\n"

    encoded = encode_data(source())  # type: ignore[arg-type]
    first = next(encoded)
    # The encoder runs one chunk ahead of its output, no more.
    assert consumed <= 2
    assert len(first) == 1002


@given(messages)
def test_declared_size_is_the_normalised_size(message: bytes) -> None:
    from smtpmail.message.content import wire_size

    assert wire_size(message) == len(normalise(message))


def encode_whole(message: bytes, sizes: tuple[int, ...], dot_stuff: bool = True) -> bytes:
    encoder = DataEncoder(dot_stuff=dot_stuff)
    pieces = list(encode_buffer(message, encoder, sizes))
    assert encoder.octets_in == len(message)
    return b"".join(pieces) + encoder.end()


@settings(max_examples=400)
@given(messages, st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_in_memory_pieces_give_the_same_wire_bytes(message: bytes, sizes: list[int]) -> None:
    assert encode_whole(message, tuple(sizes)) == encode(message)
    assert encode_whole(message, tuple(sizes), dot_stuff=False) == encode(message, dot_stuff=False)


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"ab\r\n.c\r\n", b"ab\r\n..c\r\n.\r\n"),  # a line-leading dot inside a piece
        (b"ab\r\n\r\n.c\r\n", b"ab\r\n\r\n..c\r\n.\r\n"),  # ... at a piece's start
        (b"ab\nc\r\n", b"ab\r\nc\r\n.\r\n"),  # a bare LF
        (b"ab\rc\r\n", b"ab\r\nc\r\n.\r\n"),  # a bare CR
        (b"abcdefgh\r\n", b"abcdefgh\r\n.\r\n"),  # no line end within a piece
        (b"abc\r", b"abc\r\n.\r\n"),
    ],
)
def test_in_memory_pieces_repair_what_needs_it(message: bytes, wire: bytes) -> None:
    assert encode_whole(message, (4,)) == wire


def test_in_memory_clean_pieces_are_views_not_copies() -> None:
    line = b"The quick brown fox. Jumps.\r\n"
    message = line * 10_000
    pieces = list(encode_buffer(message, DataEncoder(), (1000, 100_000)))
    assert all(isinstance(p, memoryview) and p.obj is message for p in pieces)
    assert all(bytes(p).endswith(b"\r\n") for p in pieces)
    assert b"".join(pieces) == message
    assert len(pieces[0]) <= 1000 < len(pieces[1]) <= 100_000


# Messages whose every line ends in CRLF (what measure() reports as canonical),
# with dots where dot-stuffing must still happen.
canonical_messages = st.lists(
    st.lists(st.sampled_from([b".", b"..", b"a", b" ", b"\x00", b"\xff"]), max_size=6).map(
        b"".join
    ),
    max_size=30,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def expected_form(message: bytes) -> int:
    """What measure() should find, said the slow plain way."""
    if re.search(rb"\r(?!\n)|(?<!\r)\n", message):
        return CHECK
    if message.startswith(b".") or b"\r\n." in message:
        return STUFF
    return AS_IS


@given(messages | canonical_messages)
def test_measure_gives_the_normalised_size_and_what_encoding_needs(message: bytes) -> None:
    size, form = measure(message)
    assert size == len(normalise(message))
    assert form == expected_form(message)


@pytest.mark.parametrize(
    ("message", "form"),
    [
        (b"", AS_IS),
        (b"a", AS_IS),  # an unended last line is the encoder's to end
        (b"a\r\nb\r\n", AS_IS),
        (b"a.b\r\n", AS_IS),
        (b".a\r\n", STUFF),  # the first line begins with a dot
        (b"a\r\n.b\r\n", STUFF),
        (b"a\r\n.", STUFF),
        (b"a\r\n.\r\n", STUFF),
        (b"a\r\n.b\rc\r\n", CHECK),  # a lone CR after the dot line: both are found
        (b"a\r\n.b\nc\r\n", CHECK),
        (b"a\rb\r\n", CHECK),
        (b"a\r", CHECK),
        (b"a\rb", CHECK),  # a lone CR just before the end, where a CRLF would be
        (b"a\r\r", CHECK),
        (b"\r\n", AS_IS),
        (b"\n", CHECK),
        (b"a\n", CHECK),
        (b"\r\n\n", CHECK),
    ],
)
def test_measure_tells_what_encoding_is_left(message: bytes, form: int) -> None:
    assert measure(message)[1] == form


@settings(max_examples=400)
@given(
    messages | canonical_messages,
    st.lists(st.integers(1, 40), min_size=1, max_size=4),
    st.booleans(),
)
def test_pieces_of_a_measured_message_give_the_same_wire_bytes(
    message: bytes, sizes: list[int], dot_stuff: bool
) -> None:
    """What measure() proved is not scanned again, and the wire stays the same."""
    form = measure(message)[1]
    encoder = DataEncoder(dot_stuff=dot_stuff)
    pieces = list(encode_buffer(message, encoder, tuple(sizes), form=form))
    assert b"".join(pieces) + encoder.end() == encode(message, dot_stuff=dot_stuff)
    assert encoder.octets_in == len(message)


def test_pieces_of_a_message_that_needs_nothing_are_all_views() -> None:
    message = b"a.b\r\n" * 100 + b"c"  # its last line unended
    assert measure(message)[1] == AS_IS
    encoder = DataEncoder()
    pieces = list(encode_buffer(message, encoder, (64,), form=AS_IS))
    assert all(isinstance(p, memoryview) for p in pieces[:-1])
    assert b"".join(pieces) + encoder.end() == encode(message)


@settings(max_examples=400)
@given(canonical_messages, st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_known_canonical_pieces_are_still_dot_stuffed(message: bytes, sizes: list[int]) -> None:
    assert measure(message)[1] != CHECK
    for dot_stuff in (True, False):
        encoder = DataEncoder(dot_stuff=dot_stuff)
        pieces = encode_buffer(message, encoder, tuple(sizes), form=STUFF)
        wire = b"".join(pieces) + encoder.end()
        assert wire == encode(message, dot_stuff=dot_stuff)


@pytest.mark.parametrize(
    ("message", "form"),
    [(b"a\r\n.b\r\n", STUFF), (b"a\n.b\n", CHECK), (b"a\rb\r\n", CHECK), (b"", AS_IS)],
)
def test_content_measured_for_size_remembers_the_verdict(message: bytes, form: int) -> None:
    content = as_content(message)
    assert content.form is None  # not scanned unless SIZE is offered
    assert content.declared_size() == len(normalise(message))
    assert content.form == form


@pytest.mark.parametrize(
    ("message", "sizes"),
    [
        (b"ab\r\n.c\r\nde\r\n", (4,)),  # the dot starts the second piece
        (b"ab\r\ncd\r\n.e\r\n", (5, 8)),  # the dot after a CRLF inside a piece
        (b"abcd\r\n\r\n.\r\n", (6,)),
    ],
)
def test_line_leading_dots_at_piece_boundaries_are_stuffed(
    message: bytes, sizes: tuple[int, ...]
) -> None:
    for form in (CHECK, STUFF):
        encoder = DataEncoder()
        pieces = encode_buffer(message, encoder, sizes, form=form)
        assert b"".join(pieces) + encoder.end() == encode(message)
