"""A server that refuses RSET between the transactions of a batch.

RFC 5321 §4.1.1.5: a server MUST accept RSET. One that refuses it has left
the connection in a state the client cannot know, so (as Postfix does) the
connection carries nothing more: QUIT, then close. The message that was to go
next was not sent and says so with a transient error (the outbox retries it,
never bounces it); the one before keeps its own verdict; the messages not
taken from the batch were not attempted.
"""

from __future__ import annotations

import pytest

from smtpmail import Envelope, RecipientsRefused, RemoteProtocolError
from support.harness import drive, op
from support.hostile.scripted import ScriptedServer, ehlo_reply, expect

LOCKSTEP = (b"8BITMIME", b"SIZE 100000000")  # no PIPELINING: RSET waits for its reply


def _items(count: int) -> list[tuple[Envelope, bytes]]:
    return [
        (Envelope("a@example.org", [f"r{i}@example.net"]), b"Subject: %d\r\n\r\nbody\r\n" % i)
        for i in range(count)
    ]


@pytest.mark.parametrize("rset_reply", [b"451 4.3.0 try later", b"502 5.5.1 not now"])
def test_a_refused_rset_ends_the_batch_with_the_next_message_not_sent(
    kind: str, rset_reply: bytes
) -> None:
    """The first message's only recipient is refused (MAIL was accepted, so RSET
    goes before the second's MAIL); RSET is refused. The batch ended with
    ``ReplyError('RSET refused')`` and the second message's result empty (and,
    for a 5xx, the outbox bounced it)."""
    script = [
        expect(b"EHLO", ehlo_reply(LOCKSTEP)),
        expect(b"MAIL FROM:<a@example.org>", b"250 2.1.0 ok\r\n"),
        expect(b"RCPT TO:<r0@example.net>", b"550 5.1.1 no such user\r\n"),
        expect(b"RSET", rset_reply + b"\r\n"),
        expect(b"QUIT", b"221 2.0.0 bye\r\n"),
    ]
    with ScriptedServer(script) as server:
        out = drive(kind, server.port, [op("send_many", _items(3))])
        conn = server.connections[0]
        assert conn.eof.wait(5), "the client kept the connection open"
    assert conn.errors == []
    error = out.raised(RemoteProtocolError)
    assert out.released
    assert error.is_transient
    assert "RSET" in str(error) and rset_reply.decode() in str(error)
    first, second = error.results  # the third was never taken from the batch
    assert isinstance(first.error, RecipientsRefused)
    assert first.refused and not first.accepted
    assert second.error is error and second.error.is_transient
    assert second.recipients == {} and second.reply is None and not second.end_sent
    assert b"QUIT\r\n" in bytes(conn.received)
    assert bytes(conn.received).count(b"MAIL FROM") == 1


def test_pipelined_a_mail_out_of_step_after_a_refused_rset_has_its_result(kind: str) -> None:
    """With PIPELINING the RSET goes in one write with the next transaction, so
    its refusal shows in what follows: the old transaction still open, MAIL gets
    503 (out of step) and the connection is closed. That message's result was
    left empty (neither reply nor error); it now holds the transient error."""
    script = [
        expect(b"EHLO", ehlo_reply((b"PIPELINING", b"8BITMIME"))),
        expect(b"MAIL FROM:<a@example.org>", b"250 2.1.0 ok\r\n"),
        expect(b"RCPT TO:<r0@example.net>", b"550 5.1.1 no such user\r\n"),
        expect(b"DATA", b"554 5.5.1 no valid recipients\r\n"),
        expect(b"RSET", b"451 4.3.0 try later\r\n"),
        expect(b"MAIL FROM:<a@example.org>", b"503 5.5.1 sender already given\r\n"),
        expect(b"RCPT TO:<r1@example.net>", b"250 2.1.5 ok\r\n"),
        expect(b"DATA", b"503 5.5.1 bad sequence\r\n"),
    ]
    with ScriptedServer(script) as server:
        out = drive(kind, server.port, [op("send_many", _items(3))])
        conn = server.connections[0]
    assert conn.errors == []
    error = out.raised(RemoteProtocolError)
    assert out.released
    first, second = error.results
    assert isinstance(first.error, RecipientsRefused)
    assert second.error is error and error.is_transient
    assert second.recipients == {} and second.reply is None
