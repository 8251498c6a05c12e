"""A window of BDAT transactions (RFC 3030 §4.2) against a real Postfix ``smtpd``.

With PIPELINING and CHUNKING, ``send_many`` writes whole transactions (MAIL,
RCPT, ``BDAT n LAST`` and the chunk) without waiting for the replies of the
earlier ones. Postfix must take every message once, each with its own
envelope, and the client must have had many transactions in flight at once.
"""

from __future__ import annotations

import io
import uuid

import pytest

import smtpmail
from smtpmail.message.content import MarkedMessage
from support.harness import Connect, drive, op
from support.postfix import REFUSED, PostfixMTA
from support.streamspy import spy_connectors

pytestmark = pytest.mark.postfix

COUNT = 300


class Transcript(list[tuple[str, str]]):
    def __call__(self, kind: str, line: str) -> None:
        self.append((kind, line))


def most_in_flight(t: Transcript) -> int:
    """The most ``BDAT ... LAST`` lines written with no server line between them."""
    most = run = 0
    for kind, line in t:
        if kind == "server":
            run = 0
        elif kind == "client" and line.startswith("BDAT") and line.endswith("LAST"):
            run += 1
            most = max(most, run)
    return most


async def test_300_messages_each_delivered_once_with_its_envelope(connect: Connect) -> None:
    tag = uuid.uuid4().hex[:12]
    items = [
        (
            smtpmail.Envelope(f"s{i}-{tag}@example.org", [f"r{i}-{tag}@example.com"]),
            b"Subject: %d %s\r\n\r\nmessage %d\r\n" % (i, tag.encode(), i),
        )
        for i in range(COUNT)
    ]
    t = Transcript()
    with PostfixMTA() as mta:
        async with connect(mta.port, transcript=t) as client:
            assert {"PIPELINING", "CHUNKING"} <= set(client.extensions)
            results = await client.send_many(items)
        assert [r.ok for r in results] == [True] * COUNT
        delivered = mta.delivered(COUNT)
    seen: dict[str, tuple[str, str]] = {}
    for message in delivered:
        subject = str(message["Subject"])
        assert subject not in seen, f"delivered twice: {subject}"
        seen[subject] = (str(message["Return-Path"]), str(message["X-Original-To"]))
    assert seen == {
        f"{i} {tag}": (f"<s{i}-{tag}@example.org>", f"r{i}-{tag}@example.com") for i in range(COUNT)
    }
    assert most_in_flight(t) == smtpmail.Options().transaction_window


async def test_refusals_in_the_window_are_exact(connect: Connect) -> None:
    """A transaction whose only recipient Postfix refuses, in the middle of the
    window: its BDAT is refused too (the chunk still went); those around it arrive."""
    tag = uuid.uuid4().hex[:12]
    rcpts = [[f"a-{tag}@example.com"], [REFUSED], [f"b-{tag}@example.com", REFUSED]]
    items = [
        (
            smtpmail.Envelope(f"s{i}@example.org", r),
            b"Subject: %d %s\r\n\r\nx\r\n" % (i, tag.encode()),
        )
        for i, r in enumerate(rcpts)
    ]
    with PostfixMTA() as mta:
        async with connect(mta.port) as client:
            first, refused, partly = await client.send_many(items)
        delivered = mta.delivered(2)
    assert first.ok
    assert isinstance(refused.error, smtpmail.RecipientsRefused)
    assert refused.recipients[REFUSED].reply.code == 554
    assert partly.error is None and partly.accepted == [f"b-{tag}@example.com"]
    assert partly.refused[REFUSED].code == 554
    assert sorted(str(m["Subject"]) for m in delivered) == [f"0 {tag}", f"2 {tag}"]


async def test_each_windowed_message_is_marked_just_before_its_own_last(
    connect: Connect,
) -> None:
    """The outbox's "end of data sent" hook (``MarkedMessage``): once per message,
    just before that message's ``BDAT ... LAST`` is written, never after and not
    for one whose end never left; its RCPT replies are not in yet, so it names
    every recipient of the transaction."""
    tag = uuid.uuid4().hex[:12]
    t = Transcript()
    marks: list[tuple[int, tuple[str, ...], int]] = []  # (message, recipients, LASTs before)

    def marked(i: int) -> MarkedMessage:
        def hook(rcpts: tuple[str, ...]) -> None:
            lasts = sum(1 for kind, line in t if kind == "client" and line.endswith(" LAST"))
            marks.append((i, rcpts, lasts))

        return MarkedMessage(io.BytesIO(b"Subject: %d %s\r\n\r\nx\r\n" % (i, tag.encode())), hook)

    rcpts = [[f"a{i}-{tag}@example.com", REFUSED] if i == 3 else [f"a{i}-{tag}@example.com"]
             for i in range(10)]  # fmt: skip
    items = [(smtpmail.Envelope(f"s{i}@example.org", r), marked(i)) for i, r in enumerate(rcpts)]
    with PostfixMTA() as mta:
        async with connect(mta.port, transcript=t) as client:
            results = await client.send_many(items)
        mta.delivered(10)
    assert all(r.ok or r.refused for r in results)
    assert marks == [(i, tuple(r), i) for i, r in enumerate(rcpts)]
    assert most_in_flight(t) == 10  # the ten were in flight at once: the window's case


def test_the_room_replies_open_is_refilled_in_one_write(kind: str) -> None:
    """Postfix answers the transactions it read together in one segment; the
    client takes all those replies and writes as many new transactions in one
    write, so that the window does not go one message per segment each way."""
    tag = uuid.uuid4().hex[:12]
    count = 200
    items = [
        (
            smtpmail.Envelope("s@example.org", [f"r{i}-{tag}@example.com"]),
            b"Subject: %d %s\r\n\r\nx\r\n" % (i, tag.encode()),
        )
        for i in range(count)
    ]
    writes: list[bytes] = []
    connector, async_connector = spy_connectors(writes=writes)

    options = smtpmail.Options(transaction_window=8)
    with PostfixMTA() as mta:
        connect = connector if kind == "sync" else async_connector
        outcome = drive(kind, mta.port, [op("send_many", items)], options=options, connect=connect)
        assert outcome.error is None
        (results,) = outcome.results
        assert [r.ok for r in results] == [True] * count
        delivered = mta.delivered(count)
    assert sorted(str(m["Subject"]) for m in delivered) == sorted(
        f"{i} {tag}" for i in range(count)
    )
    per_write = [w.count(b" LAST\r\n") for w in writes if b" LAST\r\n" in w]
    assert sum(per_write) == count
    assert max(per_write) <= 8
    assert len(per_write) < count  # several transactions in some writes
