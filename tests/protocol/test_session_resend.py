"""Transactions the session sends again, driven by plain lists of replies (no sockets).

- A MAIL pipelined after the end of the previous message's data and refused
  with 503 (RFC 2920 §3.1 allows the pipelining; some servers refuse it): the
  transaction is sent again alone, and the connection stops pipelining across
  messages. A 503 is never recorded as the message's fate.
- Recipients refused as too many (452, RFC 5321 §4.5.3.1.10): the same content
  goes to them in further transactions on the same connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from smtpmail.errors import (
    DataRefused,
    RecipientsRefused,
    RemoteProtocolError,
    SenderRefused,
)
from smtpmail.protocol.actions import Content, Options, Receive, Send
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply, ReplyParser
from support.harness import Trace, drive_flow
from support.sessions import GO, OK, QUEUED, env, ready, send

T = TypeVar("T")

BAD_SEQUENCE = b"503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n"
NEED_MAIL = b"503 5.5.1 Use MAIL before RCPT\r\n"
NEED_RCPT = b"503 5.5.1 MAIL required first\r\n"
NO_RCPT = b"554 5.5.1 No valid recipients\r\n"
TOO_MANY = b"452 4.5.3 Error: too many recipients\r\n"


def content(data: bytes = b"Subject: t\r\n\r\nbody\r\n") -> Content:
    """Content held in memory, as bytes, str and Message are: it can be sent again."""
    return Content([data], data=data)


def group(*rcpts: str) -> bytes:
    lines = [b"MAIL FROM:<a@example.org>", *(b"RCPT TO:<%s>" % r.encode() for r in rcpts)]
    return b"".join(line + b"\r\n" for line in [*lines, b"DATA"])


def items(n: int) -> list[tuple[Envelope, Content]]:
    return [(env(f"r{i}@x.org"), content(b"m%d\r\n" % i)) for i in range(n)]


# -- 503 to a MAIL pipelined after the end of data ------------------------------------

#: The replies to a group refused because it came with the end of data, as
#: servers word them: the RCPT and DATA replies are consequences of the MAIL's.
REFUSED_GROUPS = {
    "haraka-like": [BAD_SEQUENCE, NEED_MAIL, NEED_RCPT],
    "no-valid-recipients": [BAD_SEQUENCE, NEED_MAIL, NO_RCPT],
}


@pytest.mark.parametrize("refusal", REFUSED_GROUPS.values(), ids=list(REFUSED_GROUPS))
def test_mail_refused_after_end_of_data_is_sent_again_alone(refusal: list[bytes]) -> None:
    session = ready("PIPELINING")
    server = [OK, OK, GO, QUEUED, *refusal, OK, OK, GO, QUEUED, OK, OK, GO, QUEUED]
    results, trace = send(session, server, *items(3), keep=True)
    assert [r.ok for r in results] == [True, True, True]
    assert [r.error for r in results] == [None, None, None]
    assert session.refuses_pipelined_mail
    assert trace.sends == [
        group("r0@x.org"),
        b"m0\r\n.\r\n" + group("r1@x.org"),  # refused: it came with the end of data
        group("r1@x.org"),  # again, alone, after the reply to the data
        b"m1\r\n.\r\n",  # from now on, no group shares a write with an end of data
        group("r2@x.org"),
        b"m2\r\n.\r\n",
    ]


def test_data_accepted_after_a_refused_mail_is_ended_before_the_resend() -> None:
    session = ready("PIPELINING")
    server = [OK, OK, GO, QUEUED, BAD_SEQUENCE, NEED_MAIL, GO, NO_RCPT, OK, OK, GO, QUEUED]
    results, trace = send(session, server, *items(2), keep=True)
    assert [r.ok for r in results] == [True, True]
    assert trace.sends[2:] == [b".\r\n", group("r1@x.org"), b"m1\r\n.\r\n"]


def test_bdat_group_refused_after_bdat_last_is_sent_again() -> None:
    # Without the window of transactions (its own case: test_window.py).
    session = ready("PIPELINING", "CHUNKING", options=Options(transaction_window=1))
    server = [OK, OK, QUEUED, BAD_SEQUENCE, NEED_MAIL, OK, OK, QUEUED]
    results, trace = send(session, server, *items(2), keep=True)
    assert [r.ok for r in results] == [True, True]
    assert session.refuses_pipelined_mail
    mail_rcpt = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@x.org>\r\n"
    assert trace.sends[1] == b"BDAT 4 LAST\r\nm0\r\n" + mail_rcpt
    assert trace.sends[2] == mail_rcpt
    assert trace.sends[3] == b"BDAT 4 LAST\r\nm1\r\n"


def test_a_503_to_the_mail_sent_again_alone_is_transient_and_not_the_messages_fate() -> None:
    session = ready("PIPELINING")
    results: list[SendResult] = []
    flow = session.transactions(items(2), keep_errors=True, results=results)
    server = [OK, OK, GO, QUEUED, BAD_SEQUENCE, NEED_MAIL, NEED_RCPT]
    with pytest.raises(RemoteProtocolError) as info:
        drive_flow(flow, [*server, BAD_SEQUENCE, NEED_MAIL, NEED_RCPT])
    assert info.value.is_transient
    assert results[0].ok
    # No reply of the server is the second message's fate: its result holds the
    # transient error raised (not sent), no recipient's reply.
    assert (results[1].error, results[1].reply, results[1].recipients) == (info.value, None, {})


@pytest.mark.parametrize(
    ("extensions", "server"),
    [
        (("PIPELINING",), [BAD_SEQUENCE, NEED_MAIL, NEED_RCPT]),  # MAIL alone, not after data
        (("PIPELINING",), [OK, NEED_MAIL, NEED_RCPT]),
        (("PIPELINING",), [OK, OK, NEED_RCPT]),
        (("PIPELINING",), [OK, OK, GO, NEED_RCPT]),  # to the end of data
        (("PIPELINING", "CHUNKING"), [OK, OK, OK, NEED_RCPT]),  # to BDAT (RSET first)
        ((), [BAD_SEQUENCE]),  # lock-step
        ((), [OK, NEED_MAIL]),
        ((), [OK, OK, NEED_RCPT]),
    ],
)
def test_any_other_503_is_a_transient_protocol_error(
    extensions: tuple[str, ...], server: list[bytes]
) -> None:
    session = ready(*extensions)
    with pytest.raises(RemoteProtocolError) as info:
        send(session, server, keep=True)
    assert info.value.is_transient
    assert not session.refuses_pipelined_mail


@pytest.mark.parametrize(
    ("server", "error"),
    [
        ([b"451 4.3.0 later\r\n", NEED_MAIL, NEED_RCPT], SenderRefused),
        ([b"550 5.7.1 no\r\n", NEED_MAIL, NEED_RCPT], SenderRefused),
        ([OK, b"550 5.1.1 no\r\n", NEED_RCPT], RecipientsRefused),
    ],
)
def test_a_503_caused_by_an_earlier_refusal_is_not_an_error_of_its_own(
    server: list[bytes], error: type[Exception]
) -> None:
    session = ready("PIPELINING")
    (result,), _ = send(session, server, keep=True)
    assert isinstance(result.error, error)
    assert result.error.reply.code != 503  # type: ignore[attr-defined]


def test_pipelining_across_messages_can_be_switched_off() -> None:
    session = ready("PIPELINING", options=Options(pipeline_messages=False))
    results, trace = send(session, [OK, OK, GO, QUEUED] * 2, *items(2), keep=True)
    assert [r.ok for r in results] == [True, True]
    assert trace.sends == [group("r0@x.org"), b"m0\r\n.\r\n", group("r1@x.org"), b"m1\r\n.\r\n"]
    assert not session.refuses_pipelined_mail


# -- recipients over the server's limit (RFC 5321 §4.5.3.1.10) ---------------------------

FIVE = ("r1@x.org", "r2@x.org", "r3@x.org", "r4@x.org", "r5@x.org")


@pytest.mark.parametrize(
    "too_many",
    [TOO_MANY, b"452 too many recipients\r\n", b"452-4.5.3 too many\r\n452 4.5.3 recipients\r\n"],
)
def test_recipients_over_the_limit_go_in_further_transactions(too_many: bytes) -> None:
    session = ready("PIPELINING")
    server = [
        *[OK, OK, OK, too_many, too_many, too_many, GO, QUEUED],
        *[OK, OK, OK, too_many, GO, QUEUED],
        *[OK, OK, GO, b"250 2.0.0 queued as 3\r\n"],
    ]
    (result,), trace = send(session, server, (env(*FIVE), content(b"x\r\n")))
    assert result.ok and result.error is None
    assert result.accepted == list(FIVE)
    assert result.reply is not None and result.reply.text == "2.0.0 queued as 3"
    assert result.recipients["r5@x.org"].reply.text == "2.0.0 queued as 3"
    assert result.recipients["r1@x.org"].reply.text == "2.0.0 queued"
    assert trace.sends == [
        group(*FIVE),
        b"x\r\n.\r\n" + group("r3@x.org", "r4@x.org", "r5@x.org"),
        b"x\r\n.\r\n" + group("r5@x.org"),
        b"x\r\n.\r\n",
    ]


@pytest.mark.parametrize(
    "refusal",
    [
        b"452 4.2.2 mailbox full\r\n",  # a 452 about that recipient, not about the count
        b"451 4.5.3 too many recipients\r\n",
        b"550 5.5.3 too many recipients\r\n",
    ],
)
def test_other_refusals_are_not_retried(refusal: bytes) -> None:
    session = ready("PIPELINING")
    (result,), trace = send(
        session, [OK, OK, refusal, GO, QUEUED], (env("r1@x.org", "r2@x.org"), content())
    )
    assert trace.writes == 2
    assert result.accepted == ["r1@x.org"]
    assert result.refused["r2@x.org"].code == int(refusal[:3])


def test_too_many_as_the_first_recipient_is_final_and_never_loops() -> None:
    session = ready("PIPELINING")
    server = [OK, OK, TOO_MANY, GO, QUEUED, OK, TOO_MANY, NO_RCPT]
    (result,), trace = send(session, server, (env("r1@x.org", "r2@x.org"), content()), keep=False)
    assert trace.writes == 2  # the second transaction's group rode with the first's data
    assert result.error is None and result.accepted == ["r1@x.org"]
    assert result.refused["r2@x.org"].enhanced_status == "4.5.3"
    assert result.recipients["r2@x.org"].is_transient
    assert session.needs_rset  # its MAIL was accepted


def test_every_recipient_over_the_limit_in_a_lone_transaction_raises() -> None:
    session = ready("PIPELINING")
    with pytest.raises(RecipientsRefused) as info:
        send(session, [OK, TOO_MANY, NO_RCPT])
    assert info.value.is_transient


def test_send_many_goes_on_after_the_further_transactions() -> None:
    session = ready("PIPELINING")
    server = [OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO, QUEUED, OK, OK, GO, QUEUED]
    results, trace = send(
        session,
        server,
        (env("r1@x.org", "r2@x.org"), content(b"one\r\n")),
        (env("s@x.org"), content(b"two\r\n")),
        keep=True,
    )
    assert [r.accepted for r in results] == [["r1@x.org", "r2@x.org"], ["s@x.org"]]
    assert trace.sends == [
        group("r1@x.org", "r2@x.org"),
        b"one\r\n.\r\n" + group("r2@x.org"),
        b"one\r\n.\r\n" + group("s@x.org"),
        b"two\r\n.\r\n",
    ]


def test_lock_step_sends_further_transactions_too() -> None:
    session = ready()
    (result,), trace = send(
        session,
        [OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO, QUEUED],
        (env("r1@x.org", "r2@x.org"), content()),
    )
    assert result.ok
    assert trace.lines().count(b"MAIL FROM:<a@example.org>") == 2


def test_bdat_further_transaction() -> None:
    session = ready("PIPELINING", "CHUNKING")
    server = [OK, OK, TOO_MANY, QUEUED, OK, OK, QUEUED]
    (result,), trace = send(session, server, (env("r1@x.org", "r2@x.org"), content(b"x\r\n")))
    assert result.ok
    assert trace.sends[1:] == [
        b"BDAT 3 LAST\r\nx\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r2@x.org>\r\n",
        b"BDAT 3 LAST\r\nx\r\n",
    ]


def test_lmtp_further_transaction_replies_per_recipient() -> None:
    session = ready("PIPELINING", options=Options(lmtp=True))
    server = [OK, OK, TOO_MANY, TOO_MANY, GO, QUEUED, OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO]
    server.append(b"452 4.2.2 r3 full\r\n")
    (result,), _ = send(session, server, (env("r1@x.org", "r2@x.org", "r3@x.org"), content()))
    assert result.accepted == ["r1@x.org", "r2@x.org"]
    assert result.refused["r3@x.org"].enhanced_status == "4.2.2"
    assert result.error is None


@pytest.mark.parametrize(
    ("first", "second", "accepted", "error"),
    [
        (QUEUED, b"554 5.7.1 spam\r\n", ["r1@x.org"], None),
        (b"451 4.3.0 later\r\n", QUEUED, ["r2@x.org"], None),
        (b"554 5.7.1 spam\r\n", b"554 5.7.1 spam\r\n", [], DataRefused),
    ],
)
def test_the_message_result_merges_every_transaction(
    first: bytes, second: bytes, accepted: list[str], error: type[Exception] | None
) -> None:
    session = ready("PIPELINING")
    server = [OK, OK, TOO_MANY, GO, first, OK, OK, GO, second]
    (result,), _ = send(session, server, (env("r1@x.org", "r2@x.org"), content()), keep=True)
    assert result.accepted == accepted
    assert set(result.recipients) == {"r1@x.org", "r2@x.org"}
    assert all(not r.at_rcpt for r in result.recipients.values())  # each has its final reply
    assert type(result.error) is error if error else result.error is None
    if error:  # the first transaction's verdict
        assert result.error.reply.code == 554  # type: ignore[union-attr]


def _stream(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks


def test_a_one_shot_stream_leaves_the_recipients_over_the_limit_deferred() -> None:
    session = ready("PIPELINING")
    one_shot = Content(_stream(b"x\r\n"), size=3)
    (result,), trace = send(
        session, [OK, OK, TOO_MANY, GO, QUEUED], (env("r1@x.org", "r2@x.org"), one_shot)
    )
    assert trace.writes == 2
    assert result.error is None and result.accepted == ["r1@x.org"]
    assert result.recipients["r2@x.org"].is_transient


def test_a_stream_that_can_be_replayed_is_sent_again() -> None:
    session = ready("PIPELINING")
    replays: list[int] = []

    def replay() -> Iterator[bytes]:
        replays.append(1)
        return _stream(b"line\r\n", b"two\r\n")

    streamed = Content(replay(), replay=replay)
    replays.clear()
    server = [OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO, QUEUED]
    (result,), trace = send(session, server, (env("r1@x.org", "r2@x.org"), streamed))
    assert result.ok and len(replays) == 1
    assert trace.wire.count(b"line\r\ntwo\r\n.\r\n") == 2


def _at_each_receive(record: Callable[[SendResult], T]) -> tuple[list[T], SendResult]:
    """A message for two recipients to a server that takes one per transaction
    (PIPELINING): ``record(result)`` at each wait for replies, and the result."""
    session = ready("PIPELINING")
    results: list[SendResult] = []
    flow = session.transactions(
        [(env("r1@x.org", "r2@x.org"), content())], keep_errors=True, results=results
    )
    parser = ReplyParser()
    parser.feed(b"".join([OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO, QUEUED]))
    seen: list[T] = []
    answer: list[Reply] | None = None
    with pytest.raises(StopIteration):
        while True:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Receive):
                seen.append(record(results[0]))
                answer = [parser.maybe_next_reply() for _ in range(action.count)]  # type: ignore[misc]
            else:
                assert isinstance(action, Send)
    return seen, results[0]


def test_the_result_is_complete_only_after_the_last_transaction() -> None:
    """The outbox settles a message when its result has a reply or an error: not
    before its further transactions are over."""
    seen, result = _at_each_receive(lambda r: (r.reply, r.error))
    assert seen == [(None, None)] * 4  # group, end of data, group, end of data
    assert result.ok


def test_end_sent_is_that_of_the_transaction_under_way() -> None:
    """After the first transaction's end was answered, a cut before the further
    one's end leaves nothing unanswered: the client's possibly_delivered (an end
    sent, no reply, drive.sending) must not count the first one's end."""
    seen, result = _at_each_receive(lambda r: r.end_sent)
    # group, end of data, the further group (with that end), its end of data
    assert seen == [False, True, False, True]
    assert result.ok and result.end_sent


def test_trace_of_the_further_transaction() -> None:
    """The further transaction repeats the MAIL parameters and its recipients' own."""
    session = ready("PIPELINING", "SIZE 1000", "DSN")
    envelope = Envelope("a@example.org", ["r1@x.org", "r2@x.org"], notify=["FAILURE"])
    trace = Trace()
    drive_flow(
        session.transactions([(envelope, content(b"x\r\n"))], keep_errors=False),
        [OK, OK, TOO_MANY, GO, QUEUED, OK, OK, GO, QUEUED],
        trace,
    )
    mails = [line for line in trace.lines() if line.startswith(b"MAIL")]
    assert mails == [b"MAIL FROM:<a@example.org> SIZE=3"] * 2
    assert trace.lines().count(b"RCPT TO:<r2@x.org> NOTIFY=FAILURE") == 2
