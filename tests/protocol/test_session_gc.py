"""A dropped session leaves the replies it held whole when the cycle collector runs.

In the compiled build (setup.py) each native class tells the collector which
objects it holds. An attribute declared in a class and again in a subclass
(``helo_reply`` in Transactions and in Session.__init__) was reported twice for
one reference: a Session in a garbage cycle then made the collector take its
HELO reply for garbage too and clear it while still in use. The parser's cache
of one-line replies shares such a reply across sessions, so a later EHLO read
the cleared reply and the interpreter crashed (an intermittent segfault of
tests/protocol against the compiled build). Run under both builds; the pure
Python one is the reference.
"""

from __future__ import annotations

import gc

from smtpmail.protocol import Session
from support.harness import drive_flow
from support.sessions import ehlo_reply


def test_a_session_collected_in_a_cycle_leaves_its_helo_reply_whole() -> None:
    session = Session()
    drive_flow(session.greet(), b"220 mx.example.org ESMTP\r\n")
    # Multiline: the parser caches no such reply, so only this test holds it.
    drive_flow(session.hello("client.example.org"), ehlo_reply("PIPELINING", "SIZE 1000"))
    reply = session.helo_reply
    assert reply is not None
    expected = reply.lines
    cycle: list[object] = [session]
    cycle.append(cycle)  # only the cycle collector can free the session now
    del session, cycle
    gc.collect()
    # Before the fix the reply's fields were cleared here: reading them raised
    # AttributeError (compiled code that trusts its types crashed instead).
    assert reply.lines == expected
    assert reply.code == 250
