"""Checks written with str and bytes methods (no regular expression to compile
at every CLI start) against the patterns they replaced, which stay here as
the definition: each must decide exactly as its pattern did."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from smtpmail.protocol import commands, idn
from smtpmail.protocol.reply import Reply, ReplyParser

ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
DOT_STRING = re.compile(rf"{ATEXT}+(?:\.{ATEXT}+)*\Z")
ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]{7,15}|IPv6:[0-9A-Fa-f:.]{2,45})\]\Z")
KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*\Z")
VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+\Z")
LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\Z")
ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

# Every code point up to U+3000, then a stride through the rest.
CODE_POINTS = [*range(0x3000), *range(0x3000, 0x110000, 0x3FF), 0xD800, 0xDFFF, 0x10FFFF]


def shapes(c: str) -> list[str]:
    return [c, c + c, "a" + c, c + "a", "a." + c, c + ".a", "a" + c + "b", c * 70, "a-" + c]


def near(alphabet: str) -> st.SearchStrategy[str]:
    """Text mostly from ``alphabet`` (what the check is about), some of anything."""
    return st.text(st.sampled_from(alphabet) | st.characters(), max_size=70)


def test_each_character_is_judged_as_the_patterns_judged_it() -> None:
    for cp in CODE_POINTS:
        for text in shapes(chr(cp)):
            assert commands._is_dot_string(text) == bool(DOT_STRING.match(text)), (hex(cp), text)
            assert commands._is_keyword(text) == bool(KEYWORD.match(text)), (hex(cp), text)
            assert commands._is_value(text) == bool(VALUE.match(text)), (hex(cp), text)
            assert idn._is_ldh_label(text) == bool(LDH_LABEL.match(text)), (hex(cp), text)
            assert commands._is_address_literal(f"[{text}]") == bool(
                ADDRESS_LITERAL.match(f"[{text}]")
            )


@given(near('ab.-"@ \x7f\u00e9'))
@example("")
@example(".a")
@example("a..b")
@example("a.")
def test_dot_string(text: str) -> None:
    assert commands._is_dot_string(text) == bool(DOT_STRING.match(text))


@given(near("aZ09-=. \x7f\u00e9"))
@example("-A")
@example("A-")
@example("")
def test_keyword_and_value(text: str) -> None:
    assert commands._is_keyword(text) == bool(KEYWORD.match(text))
    assert commands._is_value(text) == bool(VALUE.match(text))


@given(st.text(st.sampled_from("[]IPv6:0123456789.abcdefABCDEFx"), max_size=60) | near("[]1.:"))
@example("[1.2.3.4]")
@example("[IPv6:]")
@example("[IPv6:::1]")
@example("[IPv6:" + "1" * 45 + "]")
@example("[IPv6:" + "1" * 46 + "]")
@example("[1." + "2" * 13 + "]")
@example("[1234567890123456]")
@example("[]")
@example("[")
def test_address_literal(text: str) -> None:
    assert commands._is_address_literal(text) == bool(ADDRESS_LITERAL.match(text))


@given(st.text(st.sampled_from("aZ09-"), max_size=70) | near("a-\u00e9"))
@example("a" * 63)
@example("a" * 64)
@example("-")
def test_ldh_label(text: str) -> None:
    assert idn._is_ldh_label(text) == bool(LDH_LABEL.match(text))


def enhanced_by_pattern(code: int, text: str) -> tuple[int, int, int] | None:
    m = ENHANCED.match(text)
    if m is None or int(m.group(1)) != code // 100:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@given(
    st.sampled_from([211, 220, 250, 354, 421, 450, 500, 550, 554]),
    st.text(st.sampled_from("2345.0123456789 \t\u00a0x\u0663"), max_size=14) | st.text(max_size=14),
)
@example(250, "2.1.0 Ok")
@example(250, "2.1.0")
@example(250, "2.1.0.")
@example(550, "5.1.1\u00a0unknown")
@example(550, "5.1.1234 x")
@example(550, "5..1 x")
@example(550, "4.1.1 x")
@example(354, "3.0.0 x")
@example(550, " 5.1.1 x")
@example(550, "5.\u0661.1 x")
def test_enhanced_status(code: int, text: str) -> None:
    assert Reply(code, (text,))._enhanced_tuple() == enhanced_by_pattern(code, text)


@given(st.binary(max_size=40))
@example(b"ok\x1b[2J\x85\x9f\xc2\x9f\t")
def test_control_characters_become_fffd_as_the_pattern_made_them(text: bytes) -> None:
    parser = ReplyParser()
    line = b"250 " + text.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"") + b"\r\n"
    parser.feed(line)
    reply = parser.maybe_next_reply()
    expected = CONTROL.sub("\ufffd", line[4:-2].decode("utf-8", "replace"))
    assert reply is not None
    assert reply.lines == (expected,)
