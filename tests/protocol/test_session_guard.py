"""One flow at a time per session (issue 15): starting a flow while another is
suspended raises LocalProtocolError; nested flows and flows one after another
are fine. No sockets: the flows are driven by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smtpmail.errors import LocalProtocolError
from smtpmail.protocol import Envelope, Reply, Send, Session
from smtpmail.protocol.actions import Content
from support.harness import drive_flow

EHLO = b"250-mx.example\r\n250 PIPELINING\r\n"
ITEM = (Envelope("a@example.org", ["b@example.org"]), Content(b"Subject: x\r\n\r\nx\r\n"))

SECOND: dict[str, Callable[[Session], Any]] = {
    "greet": Session.greet,
    "hello": lambda s: s.hello("client.example"),
    "starttls": Session.starttls,
    "command": lambda s: s.command("HELP", "HELP"),
    "noop": Session.noop,
    "rset": Session.rset,
    "vrfy": lambda s: s.vrfy("postmaster"),
    "quit": Session.quit,
    "envelope_only": lambda s: s.envelope_only(*ITEM, rcpt=True),
    "transactions": lambda s: s.transactions([ITEM], keep_errors=False),
}


def _greeted() -> Session:
    session = Session()
    drive_flow(session.greet(), b"220 mx.example\r\n")
    drive_flow(session.hello("client.example"), EHLO)
    return session


@pytest.mark.parametrize("second", SECOND)
def test_a_second_flow_while_one_is_suspended_is_refused(second: str) -> None:
    session = _greeted()
    first = session.noop()
    assert isinstance(next(first), Send)  # NOOP written; now waiting for its reply
    with pytest.raises(LocalProtocolError, match=f"cannot start {second}"):
        next(SECOND[second](session))
    # The first flow is untouched and ends normally; then the session is free.
    first.send(None)
    with pytest.raises(StopIteration) as done:
        first.send([Reply(250, ("2.0.0 ok",))])
    assert done.value.value.code == 250
    assert drive_flow(session.noop(), b"250 ok\r\n").code == 250


def test_a_closed_flow_frees_the_session() -> None:
    session = _greeted()
    first = session.rset()
    next(first)
    first.close()
    assert drive_flow(session.vrfy("postmaster"), b"252 maybe\r\n").code == 252


def test_nested_flows_are_not_interleaved() -> None:
    # hello runs command (and HELO after a refused EHLO) inside itself.
    session = Session()
    drive_flow(session.greet(), b"220 mx.example\r\n")
    reply = drive_flow(session.hello("client.example"), [b"502 no EHLO\r\n", b"250 hi\r\n"])
    assert reply.code == 250 and not session.esmtp
