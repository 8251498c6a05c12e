"""Internationalised addresses are checked as they are written (RFC 5890, RFC 5891, RFC 6531).

Python's idna codec (IDNA 2003, no STD3 rules) folds fullwidth and other
compatibility forms into ASCII syntax: ``b@example.org`` + U+FF1E would go out as
``<b@example.org>>``. These tests pin the rule of smtpmail.protocol.idn: the
A-label written is LDH, a U-label written under SMTPUTF8 is its own U-label,
a non-ASCII local part stays a local part once normalised, and whatever is
accepted makes a command line that parses back to one path and nothing else,
even for a server that normalises (NFKC) the line before parsing it.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpmail.errors import InputError, InvalidAddress, InvalidArgument
from smtpmail.protocol import commands as cmd

# Written out from RFC 5321 §4.1.2 / RFC 6531 §3.3 (non-ASCII admitted), not
# imported from the code under test.
_ATOM = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]+'
_LOCAL = rf'(?:{_ATOM}(?:\.{_ATOM})*|"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*")'
_DOMAIN = rf"(?:{_ATOM}(?:\.{_ATOM})*|\[[\x21-\x5a\x5e-\x7e]+\])"
_RCPT = re.compile(rf"RCPT TO:<({_LOCAL})@({_DOMAIN})>\r\n")
_LDH = rb"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_LDH_DOMAIN = re.compile(rb"%s(?:\.%s)*" % (_LDH, _LDH))
_LITERAL = re.compile(rb"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]")

#: Characters that fold (NFKC, as nameprep and UTS #46 map) into SMTP syntax.
FOLDING = (
    "\uff1e\uff1c\uff20\uff1a\uff02\uff3c\uff0c\uff1b"  # fullwidth > < @ : " \\ , ;
    "\u3000\u2003\u00a0"  # ideographic, em and no-break spaces
    "\ufe65\ufe64\ufe6b\ufe55\ufe30"  # small > < @ :, vertical two-dot leader
    "\u2024\uff0e\u3002"  # one-dot leader, fullwidth and ideographic full stops
)
# Letters, digits, IDN letters, deviations, ignorables, separators, then anything.
_DOMAIN_CHARS = st.one_of(
    st.sampled_from("abcXYZ0129-.."),
    st.sampled_from(FOLDING),
    st.sampled_from("\u00fc\u00e9\u4f8b\u5b50\u0436\uff41\uff21\u00df\u03c2\u200d\u00ad\u0130"),
    st.characters(blacklist_categories=("Cs",)),
)
_domains = st.text(alphabet=_DOMAIN_CHARS, min_size=1, max_size=24)
_locals = st.one_of(
    st.just("user"),
    st.just("j\u00f6rg"),
    st.text(alphabet=st.one_of(st.sampled_from("ab.\u00f6\u7528"), _DOMAIN_CHARS), max_size=12),
)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@settings(max_examples=400)
@given(local=_locals, domain=_domains)
@example(local="b", domain="example.org\uff1e\u3000NOTIFY\uff1dNEVER")
@example(local="j\u00f6rg", domain="ex\uff41mple.org")
@example(local="b", domain="ex\uff41mple.org")
def test_an_accepted_address_is_written_as_one_clean_path(local: str, domain: str) -> None:
    try:
        path = cmd.parse_path(f"{local}@{domain}")
    except InputError:
        return
    line = cmd.rcpt_to(path)
    written = path.wire[1:-1].rpartition(b"@")[2]
    if _LITERAL.fullmatch(written) is None:
        if path.needs_smtputf8:
            text = written.decode("utf-8")
            # A U-label domain: no ASCII but letters, digits, hyphens and dots,
            # before or after normalisation; and it is what IDNA reads it as.
            for form in (text, _nfkc(text)):
                assert all(c.isalnum() or c in "-." for c in form if c.isascii()), form
            assert text.encode("idna").decode("idna").lower() == text.lower()
        else:
            assert _LDH_DOMAIN.fullmatch(written), written
            assert all(len(label) <= 63 for label in written.split(b"."))
    # One path, nothing after it: as written, and as a normalising server reads it.
    parsed = _RCPT.fullmatch(line.decode("utf-8"))
    assert parsed is not None, line
    assert f"{parsed[1]}@{parsed[2]}" == path.address
    assert _RCPT.fullmatch(_nfkc(line.decode("utf-8"))) is not None, _nfkc(line.decode())


@settings(max_examples=200)
@given(name=_domains)
@example(name="client\uff1e.example")
@example(name="b\u00fccher.example")
def test_an_accepted_ehlo_name_is_ldh_or_a_literal(name: str) -> None:
    try:
        written = cmd.ehlo_name(name).encode("ascii")
    except InvalidArgument:
        return
    assert _LDH_DOMAIN.fullmatch(written) or _LITERAL.fullmatch(written), written


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("b@b\u00fccher.example", b"<b@xn--bcher-kva.example>"),
        # IDNA mapping to LDH is fine: fullwidth letters, the full stops it maps.
        ("b@ex\uff41mple.org", b"<b@example.org>"),
        ("b@example\u3002org", b"<b@example.org>"),
        # A U-label under SMTPUTF8 stays as written; case does not matter.
        ("j\u00f6rg@B\u00fccher.example", "<j\u00f6rg@B\u00fccher.example>".encode()),
        ("\u7528@\u4f8b\u5b50.\u5e7f\u544a", "<\u7528@\u4f8b\u5b50.\u5e7f\u544a>".encode()),
        ('"a\u3000b"@example.org', '<"a\u3000b"@example.org>'.encode()),  # a space, but quoted
        ("u@[192.0.2.1]", b"<u@[192.0.2.1]>"),
        ("u@[IPv6:2001:db8::1]", b"<u@[IPv6:2001:db8::1]>"),
    ],
)
def test_written_forms(address: str, wire: bytes) -> None:
    assert cmd.parse_path(address).wire == wire


@pytest.mark.parametrize(
    ("address", "why"),
    [
        # The case: U+FF1E, U+3000 and U+FF1D fold into "> NOTIFY=NEVER".
        ("b@example.org\uff1e\u3000NOTIFY\uff1dNEVER", "maps to '>'"),
        ("b@ex\uff20ample.org", "maps to '@'"),
        ("b@ex\uff1aample.org", "maps to ':'"),
        ("b@ex\u3000ample.org", "maps to ' '"),
        ("b@ex\ufe65ample.org", "maps to '>'"),
        ("b@ex\ufe30ample.org", "'..'"),
        # Under SMTPUTF8 the U-label is written raw: it must need no mapping.
        ("j\u00f6rg@ex\uff41mple.org", "not a U-label"),
        ("j\u00f6rg@example\u3002org", "not letters, digits"),
        ("j\u00f6rg@b\u00fc\u00adcher.example", "not a U-label"),
        ("j\u00f6rg@ex\uff1eample.org", "maps to '>'"),
        # A local part that a normalising server would read as syntax.
        ("j\u00f6rg\uff1e@example.org", "becomes '>'"),
        ("j\u00f6rg\u3000x@example.org", "becomes ' '"),
        ("j\u00f6rg\ufe30x@example.org", "becomes '..'"),
        ('"j\u00f6rg\uff02x"@example.org', "becomes '\"'"),
        # IDNA 2003 and 2008 disagree: the codec would name another domain.
        ("b@stra\u00dfe.example", "IDNA 2003 and IDNA 2008"),
        ("b@\u03b5\u03bb\u03bb\u03ac\u03c2.example", "IDNA 2003 and IDNA 2008"),
        ("b@a\u200db.example", "IDNA 2003 and IDNA 2008"),
        ("j\u00f6rg@stra\u00dfe.example", "IDNA 2003 and IDNA 2008"),
        # LDH labels are at most 63 octets (RFC 1035 §2.3.4), A-labels included.
        ("b@" + "a" * 64 + ".org", "malformed domain"),
        ("b@" + "\u00fc" * 60 + ".org", "not valid IDNA"),
        # Address literals: real addresses only, no general literals.
        ("b@[192.0.2.256]", "address literal"),
        ("b@[IPv6:2001:db8::g]", "address literal"),
        ("b@[tag:x>y]", "address literal"),
    ],
)
def test_refused_before_anything_is_written(address: str, why: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(why)):
        cmd.parse_path(address)


def test_the_dns_name_of_a_domain_is_checked_the_same_way() -> None:
    from smtpmail.delivery.routing import lookup_name

    assert lookup_name("B\u00fccher.Example.") == "xn--bcher-kva.example"
    with pytest.raises(InvalidAddress, match="maps to '>'"):
        lookup_name("ex\uff1eample.org")
