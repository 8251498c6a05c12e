"""The reply parser, fed bytes directly (RFC 5321 §4.2, RFC 2034/3463)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail.errors import RemoteProtocolError
from smtpmail.protocol.reply import Reply, ReplyParser


def parse_all(data: bytes, **limits: int) -> list[Reply]:
    parser = ReplyParser(**limits)
    parser.feed(data)
    out = []
    while (reply := parser.maybe_next_reply()) is not None:
        out.append(reply)
    return out


@pytest.mark.parametrize(
    ("wire", "code", "lines"),
    [
        (b"250 OK\r\n", 250, ("OK",)),
        (b"250\r\n", 250, ("",)),
        (b"250 \r\n", 250, ("",)),
        (b"220-mx.example.org ESMTP\r\n220 ready\r\n", 220, ("mx.example.org ESMTP", "ready")),
        (b"250-a\r\n250-\r\n250 c\r\n", 250, ("a", "", "c")),
        (b"354 End data with <CR><LF>.<CR><LF>\r\n", 354, ("End data with <CR><LF>.<CR><LF>",)),
        (b"550 5.1.1 <x@y>: no such user\r\n", 550, ("5.1.1 <x@y>: no such user",)),
        (b"250 caf\xc3\xa9\r\n", 250, ("café",)),
        (b"421 closing\r\n", 421, ("closing",)),
    ],
)
def test_well_formed_replies(wire: bytes, code: int, lines: tuple[str, ...]) -> None:
    (reply,) = parse_all(wire)
    assert reply.code == code
    assert reply.lines == lines


@pytest.mark.parametrize(
    "wire",
    [
        b"25O OK\r\n",  # letter O, not zero
        b"2500 OK\r\n",  # four digits
        b"250_OK\r\n",  # neither space nor hyphen after the code
        b"25\r\n",  # too short
        b"\r\n",  # empty line
        b"OK\r\n",
        b"250 OK\n",  # bare LF
        b"250-a\r\n251 b\r\n",  # mixed codes in one reply
        b"250-a\r\n550 b\r\n",
        b"250 O\x00K\r\n",  # NUL
        b"250 O\rK\r\n",  # bare CR inside a line
        b"150 what\r\n",  # no such reply class in SMTP
        b"650 what\r\n",
        b"260 what\r\n",  # second digit above 5
        b" 250 OK\r\n",
    ],
)
def test_malformed_replies_raise(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(wire)


def test_incomplete_reply_waits_for_more() -> None:
    parser = ReplyParser()
    for piece in (b"2", b"50-fir", b"st\r", b"\n250 la", b"st\r"):
        parser.feed(piece)
        assert parser.maybe_next_reply() is None
    parser.feed(b"\n")
    reply = parser.maybe_next_reply()
    assert reply == Reply(250, ("first", "last"))
    assert parser.buffered == 0


def test_several_replies_in_one_read_come_out_in_order() -> None:
    replies = parse_all(b"250 a\r\n251 b\r\n354 go\r\n")
    assert [r.code for r in replies] == [250, 251, 354]


def test_line_limit_bounds_memory_without_newline() -> None:
    parser = ReplyParser(max_line=100)
    parser.feed(b"250 " + b"x" * 200)
    with pytest.raises(RemoteProtocolError, match="line longer"):
        parser.maybe_next_reply()


def test_line_limit_with_newline() -> None:
    with pytest.raises(RemoteProtocolError, match="line longer"):
        parse_all(b"250 " + b"x" * 200 + b"\r\n", max_line=100)


def test_line_just_under_the_limit_is_fine() -> None:
    line = b"250 " + b"x" * 94 + b"\r\n"
    assert len(line) == 100
    assert parse_all(line, max_line=100)[0].code == 250


def test_reply_limit_bounds_a_server_that_never_stops() -> None:
    parser = ReplyParser(max_line=100, max_reply=1000)
    with pytest.raises(RemoteProtocolError, match="reply longer"):
        for _ in range(100):
            parser.feed(b"250-" + b"y" * 40 + b"\r\n")
            assert parser.maybe_next_reply() is None


@pytest.mark.parametrize(
    ("text", "code", "status"),
    [
        ("5.1.1 no such user", 550, "5.1.1"),
        ("2.0.0 Ok: queued as 123", 250, "2.0.0"),
        ("4.7.0 try later", 451, "4.7.0"),
        ("5.1.1 wrong class", 250, None),  # class must agree with the code
        ("no status", 550, None),
        ("5.1.1x", 550, None),
        ("5.1234.1 too long", 550, None),
    ],
)
def test_enhanced_status(text: str, code: int, status: str | None) -> None:
    assert Reply(code, (text,)).enhanced_status == status


@pytest.mark.parametrize(
    ("code", "positive", "intermediate", "transient", "permanent"),
    [
        (250, True, False, False, False),
        (354, True, True, False, False),
        (421, False, False, True, False),
        (452, False, False, True, False),
        (550, False, False, False, True),
    ],
)
def test_reply_classes(
    code: int, positive: bool, intermediate: bool, transient: bool, permanent: bool
) -> None:
    reply = Reply(code, ("x",))
    assert (reply.is_positive, reply.is_intermediate) == (positive, intermediate)
    assert (reply.is_transient, reply.is_permanent) == (transient, permanent)


def test_str_round_trips_to_the_wire_form() -> None:
    wire = b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
    (reply,) = parse_all(wire)
    assert (str(reply).replace("\n", "\r\n") + "\r\n").encode() == wire


def test_clear_drops_partial_state() -> None:
    parser = ReplyParser()
    parser.feed(b"250-half\r\n250 par")
    assert parser.maybe_next_reply() is None
    assert parser.buffered > 0
    parser.clear()
    assert parser.buffered == 0
    parser.feed(b"354 go\r\n")
    assert parser.maybe_next_reply() == Reply(354, ("go",))


_codes = st.sampled_from([220, 221, 250, 251, 354, 421, 450, 451, 452, 500, 550, 554])
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=40,
)


@given(
    st.lists(st.tuples(_codes, st.lists(_text, min_size=1, max_size=4)), max_size=6),
    st.data(),
)
def test_any_chunking_gives_the_same_replies(
    replies: list[tuple[int, list[str]]], data: st.DataObject
) -> None:
    wire = _wire(replies)
    got = _parsed_in_pieces(wire, data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    shown = [(code, [_as_text(line) for line in lines]) for code, lines in replies]
    assert [(r.code, list(r.lines)) for r in got] == shown


def _wire(replies: list[tuple[int, list[str]]]) -> bytes:
    return b"".join(
        (str(Reply(code, tuple(lines))).replace("\n", "\r\n") + "\r\n").encode()
        for code, lines in replies
    )


def _parsed_in_pieces(wire: bytes, cuts: list[int]) -> list[Reply]:
    """What one parser makes of ``wire`` fed in pieces cut at ``cuts``; it ends empty."""
    parser = ReplyParser()
    got = []
    last = 0
    for cut in [*sorted(cuts), len(wire)]:
        parser.feed(wire[last:cut])
        last = cut
        while (reply := parser.maybe_next_reply()) is not None:
            got.append(reply)
    assert parser.buffered == 0
    return got


def _as_text(line: str) -> str:
    """A control character but HT (RFC 5321 §4.2 allows none) comes out as U+FFFD."""
    return "".join("\ufffd" if _is_control(c) else c for c in line)


def _is_control(c: str) -> bool:
    return c != "\t" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"220 hi \x1b[31mred\x1b[0m\r\n", "hi \ufffd[31mred\ufffd[0m"),  # colours
        (b"250 ok \x1b]52;c;cHduZWQ=\x07\r\n", "ok \ufffd]52;c;cHduZWQ=\ufffd"),  # clipboard
        (b"554 \x1b[2K\x08\x7f\xc2\x9bgone\r\n", "\ufffd[2K\ufffd\ufffd\ufffdgone"),  # C1 CSI
        (b"250 tab\tkept, \xc3\xa9 too\r\n", "tab\tkept, \u00e9 too"),
    ],
)
def test_control_characters_in_text_are_replaced(wire: bytes, text: str) -> None:
    parser = ReplyParser()
    parser.feed(wire)
    reply = parser.maybe_next_reply()
    assert reply is not None and reply.lines == (text,)


EHLO = b"250-mx.example.org\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250 8BITMIME\r\n"


def test_a_multi_line_reply_seen_before_is_the_same_reply_again() -> None:
    """A new connection's EHLO reply, the same as the last one's, is found whole
    (one comparison of its octets) and is the same immutable object."""
    first = parse_all(EHLO + b"250 OK\r\n")
    again = parse_all(EHLO + b"250 OK\r\n")
    assert again == first
    assert again[0] is first[0]
    assert again[0].lines == (
        "mx.example.org",
        "PIPELINING",
        "AUTH PLAIN LOGIN CRAM-MD5",
        "8BITMIME",
    )


@pytest.mark.parametrize(
    "wire",
    [
        # The same first line, then other lines: parsed, not taken for the one seen.
        b"250-mx.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
        b"250-mx.example.org\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250 DSN\r\n",
        # The one seen, with one more line.
        EHLO.replace(b"250 8BITMIME", b"250-8BITMIME") + b"250 DSN\r\n",
    ],
)
def test_a_reply_that_only_begins_like_one_seen_is_parsed_for_what_it_is(wire: bytes) -> None:
    parse_all(EHLO)
    (reply,) = parse_all(wire)
    assert reply.lines == tuple(line[4:].decode() for line in wire.split(b"\r\n")[:-1])


def test_a_reply_seen_whole_is_still_refused_by_a_parser_with_smaller_limits() -> None:
    parse_all(EHLO)
    # The first line (20 octets) fits; the AUTH line (31) does not.
    with pytest.raises(RemoteProtocolError, match="line longer"):
        parse_all(EHLO, max_line=25)
    with pytest.raises(RemoteProtocolError, match="reply longer"):
        parse_all(EHLO, max_reply=60)


def test_a_reply_seen_before_and_cut_between_reads_comes_out_the_same() -> None:
    (whole,) = parse_all(EHLO)
    for cut in range(1, len(EHLO)):
        parser = ReplyParser()
        parser.feed(EHLO[:cut])
        assert parser.maybe_next_reply() is None
        parser.feed(EHLO[cut:])
        assert parser.maybe_next_reply() == whole
        assert parser.buffered == 0


@given(
    st.lists(st.tuples(_codes, st.lists(_text, min_size=1, max_size=4)), max_size=6),
    st.data(),
)
def test_replies_seen_before_come_out_as_a_fresh_parser_reads_them(
    replies: list[tuple[int, list[str]]], data: st.DataObject
) -> None:
    """The caches (single lines, whole replies) change nothing: parsing the same
    bytes again, cut anywhere, gives what the first parse gave."""
    wire = _wire(replies)
    first = parse_all(wire)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    assert _parsed_in_pieces(wire, cuts) == first


def test_what_an_ehlo_reply_seen_before_offers_is_read_once_per_switched_off_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smtpmail.protocol import extensions
    from smtpmail.protocol.extensions import Extensions

    # An empty cache: one the earlier tests filled is cleared when full, which
    # would drop the first entry here when the second is added.
    monkeypatch.setattr(extensions, "_OFFERED", {})
    (reply,) = parse_all(EHLO)
    offered = Extensions.from_ehlo(reply)
    assert Extensions.from_ehlo(reply) is offered
    assert dict(offered) == {"PIPELINING": "", "AUTH": "PLAIN LOGIN CRAM-MD5", "8BITMIME": ""}
    without = Extensions.from_ehlo(reply, ("PIPELINING",))
    assert "PIPELINING" not in without and "AUTH" in without
    assert Extensions.from_ehlo(reply) is offered
