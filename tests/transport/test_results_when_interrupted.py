"""The results an interrupting error carries say which messages were taken.

A 421 (RFC 5321 §3.8: the server closes the transmission channel) or a lost
connection interrupts a send; the error's ``results`` then hold each message
sent so far on that connection, the one cut short included (its recipients
and whether its end of data left). That one was not taken: its result must
not say ``ok``, whichever step the 421 answered. Against a real aiosmtpd
whose handler answers 421 at the step under test, for both clients.
"""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

import smtpmail
from support.harness import Connect
from support.servers import Recorder, RecordingServer

CLOSING = "421 4.3.0 closing the channel"
MSG = b"Subject: cut\r\n\r\nx\r\n"


class ClosingAt(Recorder):
    """Answers 421 at one step ("MAIL", "RCPT" or "DATA": the end of data)
    of the transaction whose recipient is ``victim``; the others go through."""

    def __init__(self, step: str, victim: str = "late@example.org") -> None:
        super().__init__()
        self.step = step
        self.victim = victim

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # MAIL comes before the recipients: "MAIL" refuses every transaction's.
        if self.step == "MAIL":
            return CLOSING
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.step == "RCPT" and address == self.victim:
            return CLOSING
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.step == "DATA" and self.victim in envelope.rcpt_tos:
            return CLOSING
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("step", ["MAIL", "RCPT", "DATA"])
async def test_a_message_cut_short_by_421_is_not_ok(step: str, connect: Connect) -> None:
    with RecordingServer(handler=ClosingAt(step)) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.ServiceClosing) as info:
                await client.send(MSG, "a@example.org", ["b@example.org", "late@example.org"])
    assert server.messages == []
    (result,) = info.value.results
    assert not result.ok
    assert result.reply is None


async def test_send_many_421_keeps_the_taken_messages_ok_and_not_the_cut_one(
    connect: Connect,
) -> None:
    first = smtpmail.Envelope("a@example.org", ["b@example.org"])
    second = smtpmail.Envelope("a@example.org", ["late@example.org"])
    with RecordingServer(handler=ClosingAt("DATA")) as server:
        async with connect(server.port) as client:
            with pytest.raises(smtpmail.ServiceClosing) as info:
                await client.send_many(
                    [(first, b"Subject: 1\r\n\r\nx\r\n"), (second, b"Subject: 2\r\n\r\nx\r\n")]
                )
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"]]
    taken, cut = info.value.results
    assert taken.ok and taken.reply is not None and taken.reply.code == 250
    assert not cut.ok and cut.reply is None and cut.end_sent
