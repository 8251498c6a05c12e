"""The window of BDAT transactions (RFC 3030 §4.2, RFC 2920 §3.1), driven with no sockets.

With PIPELINING and CHUNKING, send_many writes whole transactions (RSET, MAIL,
RCPT, ``BDAT n LAST`` and the chunk) before reading their replies: at most
``Options.transaction_window`` of them, and at most ``Options.window_octets``
octets unanswered. Replies are matched to commands in order, so each
transaction and each recipient gets its own, also when some fail mid-window.
"""

from __future__ import annotations

import pytest

from smtpmail.errors import ConnectionLost, DataRefused, RecipientsRefused, SenderRefused
from smtpmail.protocol.actions import Content, Options, Receive, Send
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.session import Session
from support.harness import ScriptExhausted, Trace, drive_flow
from support.sessions import OK, QUEUED, ready

MAIL_REFUSED = b"550 5.7.1 sender refused\r\n"
NEED_MAIL = b"503 5.5.1 need MAIL\r\n"
RCPT_REFUSED = b"550 5.1.1 no such user\r\n"
NO_VALID = b"554 5.5.1 no valid recipients\r\n"
TOO_MANY = b"452 4.5.3 too many recipients\r\n"
BAD_SEQUENCE = b"503 5.5.1 pipelining after end of data refused\r\n"
DATA_REFUSED = b"554 5.6.0 content refused\r\n"
TAKEN = [OK, OK, QUEUED]  # MAIL, RCPT, BDAT LAST
#: A transaction in the window: RSET first (see test_every_recipient_refused_mid_window...).
WINDOWED = [OK, *TAKEN]


def item(i: int, *rcpts: str, size: int = 16) -> tuple[Envelope, Content]:
    data = (b"m%d\r\n" % i).ljust(size - 2, b"x") + b"\r\n"
    return Envelope("a@example.org", rcpts or (f"r{i}@x.org",)), Content([data], data=data)


def window(
    server: list[bytes], items: list[tuple[Envelope, Content]], options: Options | None = None
) -> tuple[Session, list[SendResult], Trace]:
    session = ready("PIPELINING", "CHUNKING", options=options)
    trace = Trace()
    results = drive_flow(session.transactions(items, keep_errors=True), server, trace)
    return session, results, trace


def in_flight_before_first_reply(trace: Trace) -> int:
    """How many transactions (``BDAT ... LAST``) were written before a reply was read."""
    sent = b""
    for kind, what in trace.steps:
        if kind == "recv":
            break
        sent += what
    return sent.count(b" LAST\r\n")


# -- the bound ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "size", "bound"),
    [
        (Options(), 16, 64),  # the default: 64 transactions
        (Options(transaction_window=5), 16, 5),
        # 1 KB messages, 3.5 KB of room: as many whole transactions as fit.
        (Options(window_octets=3500), 1000, 3),
        (Options(transaction_window=1), 16, 0),  # off: the next group rides with the end
    ],
    ids=["default", "by-transactions", "by-octets", "off"],
)
def test_transactions_in_flight_before_the_first_reply_is_read(
    options: Options, size: int, bound: int
) -> None:
    n = 80
    each = WINDOWED if bound else TAKEN
    _, results, trace = window(each * n, [item(i, size=size) for i in range(n)], options)
    assert [r.ok for r in results] == [True] * n
    assert in_flight_before_first_reply(trace) == bound
    # Every reply was read, one per command, in order: nothing left over (drive).
    assert len(trace.replies) == len(each) * n


def test_unanswered_octets_never_exceed_the_bound() -> None:
    options = Options(window_octets=5000)
    n = 30
    _, _, trace = window(WINDOWED * n, [item(i, size=700) for i in range(n)], options)
    unanswered: list[int] = []  # octets of each transaction whose replies are unread
    for kind, what in trace.steps:
        if kind == "send":
            unanswered.append(len(what))
            assert sum(unanswered) <= options.window_octets
        else:
            del unanswered[0]


def test_a_message_over_the_octet_bound_goes_alone_between_windows() -> None:
    big = item(2, size=200_000)
    items = [item(0), item(1), big, item(3), item(4)]
    server = WINDOWED * 2 + [OK, OK] + [QUEUED] + WINDOWED * 2
    _, results, trace = window(server, items)
    assert all(r.ok for r in results)
    # Both earlier transactions' replies are in before the big one's MAIL goes,
    # and its chunk only after its MAIL and RCPT replies.
    assert [kind for kind, _ in trace.steps] == [
        "send",
        "send",
        "recv",
        "recv",  # the window: 2 transactions, landed
        "send",
        "recv",
        "send",
        "send",
        "recv",  # the big one: commands, then its chunk
        "send",
        "send",
        "recv",
        "recv",  # the window again
    ]


def test_a_data_server_is_served_as_before() -> None:
    """No CHUNKING: one transaction's end in flight at a time (DATA needs its 354)."""
    session = ready("PIPELINING")
    trace = Trace()
    go = b"354 go\r\n"
    results = drive_flow(
        session.transactions([item(0), item(1)], keep_errors=True),
        [OK, OK, go, QUEUED, OK, OK, go, QUEUED],
        trace,
    )
    assert all(r.ok for r in results)
    # The second group rides with the first end of data, as before the window.
    assert [kind for kind, _ in trace.steps] == [
        "send",
        "recv",
        "send",
        "recv",
        "recv",
        "send",
        "recv",
    ]


# -- failures in the middle of the window: exact per transaction, per recipient --------


def test_a_refused_sender_mid_window() -> None:
    server = WINDOWED * 2 + [OK, MAIL_REFUSED, NEED_MAIL, NEED_MAIL] + WINDOWED * 2
    _, results, _ = window(server, [item(i) for i in range(5)])
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert isinstance(results[2].error, SenderRefused)
    assert results[2].recipients["r2@x.org"].reply.code == 550


def test_every_recipient_refused_mid_window_the_chunk_still_went() -> None:
    server = WINDOWED * 2 + [OK, OK, RCPT_REFUSED, NO_VALID] + WINDOWED * 2
    _, results, trace = window(server, [item(i) for i in range(5)])
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert isinstance(results[2].error, RecipientsRefused)
    assert results[2].recipients["r2@x.org"].reply.code == 550
    assert trace.wire.count(b"BDAT 16 LAST\r\nm2") == 1  # RFC 3030 §2: sent all the same
    # Its MAIL may still stand (Exim keeps it after that 503 to BDAT): every
    # transaction in the window begins with RSET, or the next one's RCPT and
    # BDAT would land in it (tests/transport/test_exim_window.py).
    assert trace.wire.count(b"RSET\r\nMAIL FROM:") == 5


def test_some_recipients_refused_mid_window() -> None:
    items = [item(0), item(1, "b@x.org", "c@x.org"), item(2)]
    server = [*WINDOWED, OK, OK, RCPT_REFUSED, OK, QUEUED, *WINDOWED]
    _, results, _ = window(server, items)
    assert results[1].error is None
    assert results[1].refused["b@x.org"].code == 550
    assert results[1].accepted == ["c@x.org"]
    assert results[1].recipients["c@x.org"].reply == results[1].reply


def test_the_data_refused_mid_window() -> None:
    server = [*WINDOWED, OK, OK, OK, DATA_REFUSED, *WINDOWED]
    _, results, _ = window(server, [item(i) for i in range(3)])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, DataRefused)


def test_recipients_over_the_limit_go_in_a_further_transaction() -> None:
    items = [item(0), item(1, "b@x.org", "c@x.org", "d@x.org"), item(2)]
    first = [OK, OK, TOO_MANY, TOO_MANY, QUEUED]
    server = [*WINDOWED, OK, *first, *WINDOWED, OK, OK, OK, OK, QUEUED]
    _, results, trace = window(server, items)
    assert all(r.ok for r in results)
    assert results[1].accepted == ["b@x.org", "c@x.org", "d@x.org"]
    assert trace.wire.endswith(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<c@x.org>\r\nRCPT TO:<d@x.org>\r\n"
        b"BDAT 16 LAST\r\n" + items[1][1].chunks[0]  # type: ignore[index]
    )


def test_a_server_refusing_mail_after_the_end_of_data_gets_them_again_one_at_a_time() -> None:
    refused = [BAD_SEQUENCE, NEED_MAIL, NEED_MAIL]
    again = [OK, OK, QUEUED]
    # (It refuses the RSET before each MAIL too: that reply decides nothing.)
    server = WINDOWED + [BAD_SEQUENCE, *refused] * 3 + again * 3
    session, results, trace = window(server, [item(i) for i in range(4)])
    assert [r.ok for r in results] == [True] * 4
    assert session.refuses_pipelined_mail
    # All four in the window, then the three refused sent again one at a time:
    # each one's commands alone, its BDAT LAST after their replies.
    assert [kind for kind, _ in trace.steps] == ["send"] * 4 + ["recv"] * 4 + [
        "send",
        "recv",
        "send",
        "recv",
    ] * 3
    again_sent = [what for kind, what in trace.steps[8:] if kind == "send"]
    assert [w.startswith(b"MAIL FROM") for w in again_sent] == [True, False] * 3
    assert [b" LAST\r\n" in w for w in again_sent] == [False, True] * 3


def test_a_cut_mid_window_marks_which_ends_were_sent() -> None:
    """The replies stop after the third transaction: three more went as the
    first three landed, so the fourth to the 35th were written whole (the end
    of their data left, unanswered: possibly delivered); the 36th, taken from
    the items, was not written: not tried, it is not listed."""
    items = [item(i) for i in range(40)]
    results: list[SendResult] = []
    session = ready("PIPELINING", "CHUNKING", options=Options(transaction_window=32))
    with pytest.raises(ScriptExhausted):
        drive_flow(session.transactions(items, keep_errors=True, results=results), WINDOWED * 3)
    assert [r.ok for r in results[:3]] == [True] * 3
    assert [r.end_sent for r in results] == [True] * 35
    assert all(r.reply is None and r.error is None for r in results[3:])


def test_a_stream_of_unknown_size_ends_the_window_for_the_rest() -> None:
    """Its size is known only once it is read: it and the rest go as without the
    window (the next group riding with each end of data), never slower."""
    stream = (Envelope("a@example.org", ["r2@x.org"]), Content([b"m2\r\n"]))
    items = [item(0), item(1), stream, item(3)]
    server = WINDOWED * 2 + [OK, OK, QUEUED, OK, OK, QUEUED]
    _, results, trace = window(server, items)
    assert all(r.ok for r in results)
    assert [kind for kind, _ in trace.steps] == [
        *("send", "send", "recv", "recv"),  # the window
        *("send", "recv", "send", "recv", "recv", "send", "recv"),  # the group rides along
    ]
    assert trace.sends[3].startswith(b"BDAT 4 LAST\r\nm2\r\nMAIL FROM:")


def test_a_big_last_chunk_that_left_before_the_next_commands_failed_was_sent() -> None:
    """A last chunk over 64 KiB is written apart from the next transaction's
    commands riding with it: when only that second write fails, the end of
    the data has left (possibly delivered), and the outbox must know it."""
    data = b"x" * 100_000 + b"\r\n"
    stream = (Envelope("a@example.org", ["r0@x.org"]), Content([data]))  # size unknown
    results: list[SendResult] = []
    flow = ready("PIPELINING", "CHUNKING").transactions(
        [stream, item(1)], keep_errors=True, results=results
    )
    sends: list[bytes] = []
    answer: list[Reply] | None = None
    failure: Exception | None = None
    with pytest.raises(ConnectionLost):
        while True:
            action = flow.send(answer) if failure is None else flow.throw(failure)
            answer, failure = None, None
            if isinstance(action, Receive):
                answer = [Reply(250, ("OK",))] * action.count
                continue
            assert isinstance(action, Send)
            if bytes(action.data).startswith(b"MAIL FROM:") and sends:
                failure = ConnectionLost("reset by the server")  # the next one's commands
            sends.append(bytes(action.data))
    assert sends[-2] == data  # the whole chunk was written before the failure
    assert results[0].end_sent
    assert results[0].reply is None and results[0].error is None
