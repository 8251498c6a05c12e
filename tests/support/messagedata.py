"""Message data for the encoder tests (RFC 5321 §2.3.8, §4.5.2): what a message
should become on the wire, and Hypothesis strategies rich in line breaks and dots."""

from __future__ import annotations

import itertools
import re

from hypothesis import strategies as st


def normalise(message: bytes) -> bytes:
    """What a message should become: every CRLF, CR or LF one CRLF, last line ended."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text


# Line breaks and dots are what matters; make them common.
messages = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\x00", b"\xff", b" "]),
    max_size=60,
).map(b"".join) | st.binary(max_size=300)


@st.composite
def chunkings(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    message = draw(messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(message)), max_size=12)))
    bounds = [0, *cuts, len(message)]
    return message, [message[a:b] for a, b in itertools.pairwise(bounds)]
