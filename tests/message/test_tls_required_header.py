"""``TLS-Required: No`` (RFC 8689 §5) is read from the header section only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail.message.tlsrequired import tls_required_no

CASES = [
    (b"TLS-Required: No\r\nSubject: x\r\n\r\nbody\r\n", True),
    (b"Subject: x\r\ntls-required:no\r\n\r\nbody\r\n", True),
    (b"Subject: x\r\nTLS-Required:\r\n No\r\n\r\nbody\r\n", True),  # folded
    (b"Subject: x\nTLS-Required: NO\n\nbody\n", True),
    (b"Subject: x\r\nTLS-Required: Yes\r\n\r\nbody\r\n", False),
    (b"Subject: x\r\nTLS-Required: No thanks\r\n\r\nbody\r\n", False),
    (b"Subject: x\r\nX-TLS-Required: No\r\n\r\nbody\r\n", False),
    (b"Subject: x\r\n\r\nTLS-Required: No\r\n", False),  # in the body: content
    (b"", False),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_tls_required_no(data: bytes, expected: bool) -> None:
    assert tls_required_no(data) is expected


@given(st.binary(max_size=200))
def test_tls_required_no_never_raises(data: bytes) -> None:
    assert tls_required_no(data) in (True, False)
