"""Bcc fields never reach the server, whatever the message's line endings.

The wire sends a lone CR as CRLF (smtpmail.protocol.data), so a message with
old Mac line endings, or a header line with a stray CR before ``Bcc:``, has
a Bcc field as the server reads it. The Bcc rule must see those lines as
the server will: a real aiosmtpd stores what arrived, for both clients and
each form a message may take; the blind recipient still gets it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from email import message_from_bytes

import pytest

from support.harness import Connect
from support.servers import RecordingServer

MESSAGES = {
    "CR line endings": b"From: a@example.org\rTo: b@example.org\rBcc: hidden@example.org\r"
    b"Subject: s\r\rbody\r",
    "a stray CR before Bcc": b"From: a@example.org\r\nTo: b@example.org\rBcc: hidden@example.org"
    b"\r\nSubject: s\r\n\r\nbody\r\n",
}
FORMS: dict[str, Callable[[bytes], object]] = {
    "bytes": lambda m: m,
    "str": lambda m: m.decode(),
    "file": io.BytesIO,
    "chunks": lambda m: iter([m[:9], m[9:]]),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", MESSAGES)
async def test_no_bcc_field_arrives(
    name: str, form: str, smtpd: RecordingServer, connect: Connect
) -> None:
    message = FORMS[form](MESSAGES[name])
    async with connect(smtpd.port) as client:
        result = await client.send(
            message, "a@example.org", ["b@example.org", "hidden@example.org"]
        )
    assert result.ok
    (stored,) = smtpd.messages
    assert stored.rcpt_tos == ["b@example.org", "hidden@example.org"]
    assert b"hidden" not in stored.content
    parsed = message_from_bytes(stored.content)
    assert parsed["Bcc"] is None and parsed["Subject"] == "s"
