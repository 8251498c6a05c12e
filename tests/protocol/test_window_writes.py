"""How the window of BDAT transactions fills its writes (RFC 2920 §3.1, RFC 3030 §4.2).

A server that pipelines answers several transactions in one segment. When the
window is full, the client waits for the oldest transaction's replies, takes
those of every later one that came with them (no wait), and writes as many
new transactions as that opened room for in one write: one segment each way
for several messages, not one per message. Before any reply has been read,
each transaction is written as soon as it is read, as the caller's items may
come slowly. Driven with no sockets: the server's replies come in segments,
one segment per read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from smtpmail.errors import ConnectionLost, SenderRefused
from smtpmail.protocol.actions import Content, Flow, Options, Receive, Send
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import ReplyParser
from support.sessions import OK, QUEUED, ready

TAKEN = [OK, OK, OK, QUEUED]  # RSET, MAIL, RCPT, BDAT LAST (every windowed transaction)
MAIL_REFUSED = b"550 5.7.1 sender refused\r\n"
NEED_MAIL = b"503 5.5.1 need MAIL\r\n"


def item(i: int) -> tuple[Envelope, Content]:
    data = b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i)
    return Envelope("a@example.org", [f"r{i}@x.org"]), Content([data], data=data)


def drive_segments(
    flow: Flow[Any],
    segments: list[bytes],
    *,
    broken_at: int | None = None,
    writes: list[bytes] | None = None,
) -> tuple[Any, list[bytes]]:
    """Run ``flow``; each read that waits brings the next segment of the server's
    replies, a read that does not wait gets only what is already in. Returns the
    flow's value and what each write carried (also appended to ``writes``).

    ``broken_at``: that write (counted from 1) fails with ConnectionLost, thrown
    in where it wrote; after it, a read that finds no reply fails too (the
    library's driver raises that one outside the flow, which ends it alike)."""
    pending = deque(segments)
    parser = ReplyParser()
    writes = [] if writes is None else writes
    broken = ConnectionLost("reset by the server")
    answer: Any = None
    thrown: Exception | None = None
    try:
        while True:
            action = flow.send(answer) if thrown is None else flow.throw(thrown)
            answer = thrown = None
            if isinstance(action, Send):
                writes.append(bytes(action.data))
                if len(writes) == broken_at:
                    thrown = broken
                continue
            assert isinstance(action, Receive)
            got = []
            while len(got) < action.count:
                reply = parser.maybe_next_reply()
                if reply is not None:
                    got.append(reply)
                elif action.arrived:
                    break
                elif broken_at is not None and len(writes) >= broken_at:
                    thrown = broken
                    break
                else:
                    parser.feed(pending.popleft())  # (IndexError: a read nobody answers)
            answer = got
    except StopIteration as stop:
        assert not pending and parser.buffered == 0, "replies left unread"
        return stop.value, writes


def per_write(writes: list[bytes]) -> list[int]:
    """The transactions (``BDAT ... LAST``) each write carried."""
    return [w.count(b" LAST\r\n") for w in writes]


@pytest.mark.parametrize(
    ("answered_together", "expected"),
    [
        # Four in flight, then each segment answers two: two go in each write.
        (2, [1, 1, 1, 1, 2, 2, 2, 2]),
        # Each segment answers the whole window: it is refilled in one write.
        (4, [1, 1, 1, 1, 4, 4]),
        # One at a time: one in each write, as a server replying per message gets.
        (1, [1] * 12),
    ],
    ids=["two-per-segment", "window-per-segment", "one-per-segment"],
)
def test_the_room_one_segment_of_replies_opens_is_filled_in_one_write(
    answered_together: int, expected: list[int]
) -> None:
    n = 12
    segments = [b"".join(TAKEN * answered_together) for _ in range(n // answered_together)]
    session = ready("PIPELINING", "CHUNKING", options=Options(transaction_window=4))
    flow = session.transactions([item(i) for i in range(n)], keep_errors=True)
    results, writes = drive_segments(flow, segments)
    assert [r.ok for r in results] == [True] * n
    assert per_write(writes) == expected
    # In order, each transaction whole: the bytes are those of one at a time.
    assert [w.split(b"\r\n", 1)[0] for w in writes][:1] == [b"RSET"]
    assert b"".join(writes).count(b"MAIL FROM:") == n


def test_segments_that_cut_a_transactions_replies_are_matched_in_order() -> None:
    """A segment may end between two replies of one transaction: those that came
    are kept with it, and the rest is waited for when it is the oldest."""
    n = 9
    replies = []
    for i in range(n):
        replies += [OK, MAIL_REFUSED, NEED_MAIL, NEED_MAIL] if i == 4 else TAKEN
    lines = b"".join(replies).split(b"\r\n")[:-1]
    # Segments of five replies: never aligned with the four of a transaction.
    segments = [b"".join(x + b"\r\n" for x in lines[k : k + 5]) for k in range(0, len(lines), 5)]
    session = ready("PIPELINING", "CHUNKING", options=Options(transaction_window=4))
    flow = session.transactions([item(i) for i in range(n)], keep_errors=True)
    results, writes = drive_segments(flow, segments)
    assert [r.ok for r in results] == [i != 4 for i in range(n)]
    assert isinstance(results[4].error, SenderRefused)
    assert results[4].recipients["r4@x.org"].reply.code == 550
    assert results[5].recipients["r5@x.org"].reply.code == 250
    assert sum(per_write(writes)) == n
    assert max(per_write(writes)) > 1


def test_before_any_reply_each_transaction_leaves_before_the_next_item_is_read() -> None:
    """The caller's items may come slowly (a rate limit, a queue): a transaction
    read is not held back waiting for the next one while there is room."""
    written_when_asked: list[int] = []
    writes: list[bytes] = []

    def items() -> Iterator[tuple[Envelope, Content]]:
        for i in range(3):
            written_when_asked.append(len(writes))
            yield item(i)

    session = ready("PIPELINING", "CHUNKING")
    flow = session.transactions(items(), keep_errors=True)
    answer: Any = None
    parser = ReplyParser()
    parser.feed(b"".join(TAKEN * 3))
    try:
        while True:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Send):
                writes.append(bytes(action.data))
            else:
                assert isinstance(action, Receive)
                got = [parser.maybe_next_reply() for _ in range(action.count)]
                answer = [r for r in got if r is not None] if action.arrived else got
    except StopIteration as stop:
        results = stop.value
    assert [r.ok for r in results] == [True] * 3
    assert written_when_asked == [0, 1, 2]
    assert per_write(writes) == [1, 1, 1]


def test_a_failed_write_of_several_transactions_may_have_sent_all_but_the_last() -> None:
    """How far a failed write got is unknown: each transaction in it but the
    last may have left whole (its end sent, unanswered: possibly delivered);
    the last one's end is the write's last byte, so it did not leave. The
    failure is raised once the transactions in flight have been read."""
    results: list[SendResult] = []
    session = ready("PIPELINING", "CHUNKING", options=Options(transaction_window=4))
    flow = session.transactions([item(i) for i in range(12)], keep_errors=True, results=results)
    writes: list[bytes] = []
    with pytest.raises(ConnectionLost):
        # The first four answered in one segment; the room they open refilled in
        # one write, which fails.
        drive_segments(flow, [b"".join(TAKEN * 4)], broken_at=5, writes=writes)
    assert per_write(writes) == [1, 1, 1, 1, 4]
    assert [r.ok for r in results[:4]] == [True] * 4
    assert [r.end_sent for r in results[4:8]] == [True, True, True, False]
    assert all(r.reply is None and r.error is None for r in results[4:8])
    assert len(results) == 8  # nothing more was taken from the items
