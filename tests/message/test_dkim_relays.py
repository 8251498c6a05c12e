"""A message signed by smtpmail still verifies after a real MTA added the fields
it lacked.

Postfix (like Exim, and any submission server: RFC 6409 §8) adds Date and
Message-ID to a message without them. The signer listed both in h= even when
absent (oversigning, RFC 6376 §8.15), so that addition broke every such
signature (dkimpy: verification failed).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import smtpmail
from smtpmail.message.content import as_content
from support.dkimcheck import make_key, signed_fields, verify
from support.harness import drive, op
from support.postfix import PostfixMTA


def test_a_signature_survives_postfix_adding_date_and_message_id(kind: str, tmp_path: Path) -> None:
    key = make_key(tmp_path, "rsa-sha256")
    tag = uuid.uuid4().hex
    message = (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {tag}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nh\xe9llo\r\n"
    ).encode()
    with PostfixMTA() as mta:
        outcome = drive(
            kind, mta.port, [op("send", message, "a@example.org", ["b@example.org"])], dkim=key
        )
        assert outcome.error is None
        (received,) = mta.find(tag.encode())
    head = received.split(b"\n\n", 1)[0]
    assert b"\nMessage-Id: " in head and b"\nDate: " in head  # added by Postfix
    assert "date" not in signed_fields(received) and "message-id" not in signed_fields(received)
    assert signed_fields(received).count("from") == 2  # present: still oversigned
    assert verify(received, key)


def test_present_date_and_message_id_are_still_oversigned(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ed25519-sha256")
    composed = smtpmail.compose(sender="a@example.org", to=["b@example.org"], text="x")
    data = b"".join(as_content(composed.message, dkim=key).chunks)
    fields = signed_fields(data)
    assert fields.count("date") == 2 and fields.count("message-id") == 2
