"""``MarkedMessage``'s hook (``Content.before_end``): called just before each end
of data leaves, with that transaction's accepted recipients; what it raises
stops the final dot. Both clients, against a real aiosmtpd.
"""

from __future__ import annotations

import io

import pytest

import smtpmail
from smtpmail.message.content import MarkedMessage
from support.harness import Connect
from support.servers import RecordingServer

MSG = b"Subject: test\r\n\r\nline one\r\n"


async def test_the_hook_gets_each_transactions_accepted_recipients(
    smtpd: RecordingServer, connect: Connect
) -> None:
    smtpd.handler.refuse["nobody@example.org"] = "550 5.1.1 no such user"
    smtpd.handler.rcpt_limit = 2  # a further transaction for the third (RFC 5321 §4.5.3.1.10)
    calls: list[tuple[int, tuple[str, ...]]] = []

    def marked(i: int) -> MarkedMessage:
        return MarkedMessage(io.BytesIO(MSG), lambda rcpts: calls.append((i, rcpts)))

    rcpts = ["b@example.org", "nobody@example.org", "c@example.org", "d@example.org"]
    items = [
        (smtpmail.Envelope("a@example.org", rcpts), marked(0)),
        (smtpmail.Envelope("a@example.org", ["e@example.org"]), marked(1)),
        (smtpmail.Envelope("a@example.org", ["nobody@example.org"]), marked(2)),  # no data
    ]
    async with connect(smtpd.port) as client:
        results = await client.send_many(items)  # pipelined: several ends in flight
    assert [r.ok for r in results] == [False, True, False]
    assert calls == [
        (0, ("b@example.org", "c@example.org")),
        (0, ("d@example.org",)),
        (1, ("e@example.org",)),
    ]
    assert [m.rcpt_tos for m in smtpd.messages] == [
        ["b@example.org", "c@example.org"],
        ["d@example.org"],
        ["e@example.org"],
    ]


async def test_a_failing_hook_stops_the_final_dot(smtpd: RecordingServer, connect: Connect) -> None:
    def cannot(rcpts: tuple[str, ...]) -> None:
        raise OSError(28, "No space left on device")

    async with connect(smtpd.port) as client:
        with pytest.raises(smtpmail.MessageReadError, match="No space left"):
            await client.send(MarkedMessage(MSG, cannot), "a@example.org", ["b@example.org"])
        assert not client.is_connected
    assert smtpd.messages == []
    assert b"\r\n.\r\n" not in smtpd.raw
