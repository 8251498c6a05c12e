"""When the next transaction is taken, on a server that answers each transaction alone.

Without PIPELINING (or with ``pipeline_messages=False``) every command waits
for its reply, so whatever the client does between reading a reply and
writing the next command, the server waits for. Taking the next item (the
caller's iterator, the Bcc rule, the SIZE scan, the plan) is that kind of
work: it is done once a message's end of data has left and before its reply
is awaited, while the server reads the data, and no sooner (the server, with
the data still to read, would wait for it). Driven with no sockets; the log
is what the flow did, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from smtpmail.errors import ExtensionNotSupported
from smtpmail.protocol.actions import Content, Flow, Options, Receive, Send
from smtpmail.protocol.envelope import Envelope
from smtpmail.protocol.reply import ReplyParser
from support.sessions import GO, OK, QUEUED, ready

N = 3
MAIL = "write MAIL FROM:<a@example.org>"


def items(log: list[str], n: int = N, bad: int | None = None) -> Iterator[tuple[Envelope, Content]]:
    for i in range(n):
        log.append(f"item {i}")
        data = b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i)
        # (a UTF-8 address: the server offers no SMTPUTF8, so planning it fails)
        rcpt = f"rü{i}@x.org" if i == bad else f"r{i}@x.org"
        yield Envelope("a@example.org", [rcpt]), Content([data], data=data)


def drive(flow: Flow[Any], replies: list[bytes], log: list[str]) -> Any:
    """Run ``flow`` answering each Receive from ``replies``, logging each write
    (its first line) and each wait (its label)."""
    parser = ReplyParser()
    parser.feed(b"".join(replies))
    answer: Any = None
    try:
        while True:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Send):
                log.append("write " + bytes(action.data).split(b"\r\n", 1)[0].decode())
                continue
            assert isinstance(action, Receive)
            log.append("wait " + action.label)
            answer = [parser.maybe_next_reply() for _ in range(action.count)]
    except StopIteration as stop:
        assert parser.buffered == 0, "replies left unread"
        return stop.value


def around(log: list[str], entry: str) -> list[str]:
    """The log from the write before ``entry`` to the entry after it."""
    i = log.index(entry)
    return log[i - 1 : i + 2]


LOCKSTEP = pytest.param((), None, [OK, OK, GO, QUEUED] * N, id="lock-step")
NO_CROSS_MESSAGE = pytest.param(
    ("PIPELINING",),
    Options(pipeline_messages=False),
    [OK, OK, GO, QUEUED] * N,
    id="pipelining-not-across-messages",
)


@pytest.mark.parametrize(("keywords", "options", "replies"), [LOCKSTEP, NO_CROSS_MESSAGE])
def test_the_next_item_is_taken_while_the_server_reads_the_end_of_data(
    keywords: tuple[str, ...], options: Options | None, replies: list[bytes]
) -> None:
    log: list[str] = []
    session = ready(*keywords, options=options)
    results = drive(session.transactions(items(log), keep_errors=True), replies, log)
    assert [r.ok for r in results] == [True] * N
    for i in (1, 2):
        # After the previous message's final dot, before its reply is awaited.
        assert around(log, f"item {i}") == [
            f"write Subject: {i - 1}",
            f"item {i}",
            "wait end of data",
        ]
    # The first is taken before anything is written; each MAIL follows the reply before it.
    assert log[:2] == ["item 0", MAIL]
    assert log.count(MAIL) == N


def test_an_item_that_cannot_be_sent_waits_for_the_message_before_it() -> None:
    """Taking the next item raises (a bad address, without ``keep_errors``):
    the message before it still gets its reply, then the error is raised."""
    log: list[str] = []
    session = ready()
    flow = session.transactions(items(log, bad=1), keep_errors=False)
    with pytest.raises(ExtensionNotSupported):
        drive(flow, [OK, OK, GO, QUEUED], log)
    assert log[-3:] == ["write Subject: 0", "item 1", "wait end of data"]


def test_with_keep_errors_a_bad_item_is_recorded_and_the_next_sent() -> None:
    log: list[str] = []
    session = ready()
    flow = session.transactions(items(log, bad=1), keep_errors=True)
    results = drive(flow, [OK, OK, GO, QUEUED] * 2, log)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, ExtensionNotSupported)
    # Both taken while the first message's end of data was read by the server.
    assert around(log, "item 1") == ["write Subject: 0", "item 1", "item 2"]


def test_a_refused_transaction_takes_the_next_item_after_its_reply() -> None:
    """No data went: there is nothing for the server to read meanwhile."""
    log: list[str] = []
    session = ready()
    refused = b"550 5.7.1 no\r\n"
    results = drive(
        session.transactions(items(log, n=2), keep_errors=True),
        [refused, OK, OK, GO, QUEUED],
        log,
    )
    assert [r.ok for r in results] == [False, True]
    assert log[:4] == ["item 0", MAIL, "wait MAIL", "item 1"]
