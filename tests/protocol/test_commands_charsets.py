"""commands.py's character classes are written negated so they compile fast at import;
check they admit exactly what the RFC-shaped positive classes they replaced admit."""

from __future__ import annotations

import re

import pytest

from smtpmail.protocol import commands

# The original (positive, slow to compile) spellings.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
OLD = {
    "_FORBIDDEN": re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]"),
    "_QUOTED_STRING": re.compile(
        r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z'
    ),
    "_LABEL": re.compile(
        r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*"
        r"[A-Za-z0-9\u0080-\U0010ffff])?\Z"
    ),
}

# Every ASCII and Latin/BMP code point up to U+3000, then a stride through the rest
# (surrogates and the last code point included).
CODE_POINTS = [*range(0x3000), *range(0x3000, 0x110000, 0x3FF), 0xD800, 0xDFFF, 0x10FFFF]


def shapes(c: str) -> list[str]:
    return [c, c + c, "a" + c, c + "a", "a." + c, c + ".a", f'"{c}"', f'"\\{c}"', "a" + c + "b"]


@pytest.mark.parametrize("name", sorted(OLD))
def test_negated_classes_match_the_positive_ones(name: str) -> None:
    # (a pattern compiled on first use is kept as its source: compile it here)
    old, new = OLD[name], re.compile(getattr(commands, name))
    search = name == "_FORBIDDEN"
    for cp in CODE_POINTS:
        for text in shapes(chr(cp)):
            if search:
                assert bool(old.search(text)) == bool(new.search(text)), (name, hex(cp), text)
            else:
                assert bool(old.match(text)) == bool(new.match(text)), (name, hex(cp), text)
