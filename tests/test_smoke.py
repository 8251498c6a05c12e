"""The first end-to-end check: both clients send through a real aiosmtpd server."""

from __future__ import annotations

import smtpmail
from support.servers import RecordingServer


def test_sync_client_sends_through_aiosmtpd(smtpd: RecordingServer) -> None:
    result = smtpmail.send(
        b"Subject: hi\n\n.dot\nbody", "a@example.org", ["b@example.org"], port=smtpd.port
    )
    assert result.ok and result.accepted == ["b@example.org"]
    (msg,) = smtpd.messages
    assert msg.mail_from == "a@example.org"
    assert msg.content == b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"


async def test_async_client_sends_through_aiosmtpd(smtpd: RecordingServer) -> None:
    result = await smtpmail.send_async("héllo", "a@example.org", "b@example.org", port=smtpd.port)
    assert result.ok
    assert smtpd.messages[0].content == "héllo\r\n".encode()
