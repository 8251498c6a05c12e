"""``TLS-Required: No`` (RFC 8689 §5) is read from the header section only, and REQUIRETLS
is refused where it cannot be kept (the outbox)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smtpmail
from smtpmail.message.tlsrequired import tls_required_no
from smtpmail.outbox.store import Outbox

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


def test_outbox_refuses_requiretls(tmp_path: Path) -> None:
    store = Outbox(tmp_path)
    envelope = smtpmail.Envelope("a@example.org", ["b@example.org"], requiretls=True)
    with pytest.raises(smtpmail.InvalidArgument, match="REQUIRETLS"):
        store.add(b"Subject: x\r\n\r\nbody\r\n", envelope=envelope)
    assert not any(p.suffix == ".eml" for p in tmp_path.rglob("*"))
