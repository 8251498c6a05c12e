"""Folding a header field at its whitespace (RFC 5322 §2.2.3), words whole.

A field is folded by putting a line break before whitespace it has; nothing
is encoded, so a URL or a msg-id stays what it is (RFC 2047 §5 allows encoded
words in neither). Lines aim at 78 characters and must not pass 998 octets
(§2.1.1): a word too long for that makes the field unfoldable.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINE", "fold_field"]

#: RFC 5322 §2.1.1: a line SHOULD be at most 78 characters and MUST be at most 998 octets.
LINE = 78
MAX_LINE = 998
#: A word of a field's value with the whitespace before it (or trailing whitespace).
#: (Compiled on first use: a plain send folds nothing, and a CLI run should not pay it.)
_WORD = r"[ \t]*[^ \t]+|[ \t]+"


def fold_field(name: str, value: str, linesep: str) -> str | None:
    """``name: value`` folded before its whitespace, each line ended by
    ``linesep``; None when a word does not fit in 998 octets (UTF-8 counted)."""
    words = re.findall(_WORD, value)
    if words and words[0][0] not in " \t":
        words[0] = " " + words[0]
    lines = [f"{name}:"]
    for n, word in enumerate(words):
        # A fold goes before whitespace, never leaves a line of whitespace only,
        # and the first word stays on the field name's line.
        if n == 0 or not word.strip() or _octets(lines[-1]) + _octets(word) <= LINE:
            lines[-1] += word
        else:
            lines.append(word)
    if any(_octets(line) > MAX_LINE for line in lines):
        return None
    return "".join(line + linesep for line in lines)


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))
