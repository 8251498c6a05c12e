"""``send_many`` takes the next message only once this one's content is written
(issue 19).

Planning the next transaction may scan its message whole for SIZE (RFC 1870
§5): done after this message's content has gone out, the server has that
data to read meanwhile instead of waiting. The next transaction's commands
still ride in one write with this message's end of data (RFC 2920 §3.1).
Both clients, against Postfix's smtp-sink (PIPELINING).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import smtpmail
from smtpmail.message.content import MarkedMessage
from support.harness import Connect
from support.postfix import SmtpSink

ENVELOPE = smtpmail.Envelope("a@example.org", ["b@example.org"])
COUNT = 3


def _message(i: int) -> bytes:
    return b"Subject: %d\r\n\r\n" % i + b"a line of the body\r\n" * 20_000


class Batch:
    """Items for send_many that note, as each is taken, which messages had ended."""

    def __init__(self) -> None:
        self.ended: list[int] = []
        self.taken_after: list[list[int]] = []
        self.transcript: list[str] = []

    def items(self) -> Iterator[tuple[smtpmail.Envelope, MarkedMessage]]:
        for i in range(COUNT):
            self.taken_after.append(list(self.ended))
            yield ENVELOPE, MarkedMessage(_message(i), lambda _rcpts, i=i: self.ended.append(i))

    def hook(self, kind: str, line: str) -> None:
        if kind in ("client", "server"):
            self.transcript.append(f"{kind} {re.split('[ :]', line, maxsplit=1)[0]}")


async def _send(connect: Connect, port: int) -> Batch:
    batch = Batch()
    async with connect(port, transcript=batch.hook) as client:
        results = await client.send_many(batch.items())
    assert [r.ok for r in results] == [True] * COUNT
    return batch


@pytest.mark.postfix
async def test_the_next_message_is_taken_once_this_ones_content_is_written(
    connect: Connect,
) -> None:
    with SmtpSink() as sink:  # PIPELINING
        batch = await _send(connect, sink.port)
        stored = [m.content for m in sink.messages(COUNT)]  # (smtp-sink stores LF line ends)
    # (In any order: dump files written within one timestamp tick sort either way.)
    assert sorted(stored) == [_message(i).replace(b"\r\n", b"\n") for i in range(COUNT)]
    assert batch.taken_after == [[], [0], [0, 1]]
    # Still one write: the next MAIL follows the end of data with no reply between.
    end = batch.transcript.index("client .")
    after = ["client .", "client MAIL", "client RCPT", "client DATA"]
    assert batch.transcript[end : end + 4] == after
