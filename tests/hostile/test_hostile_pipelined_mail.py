"""A server that answers 503 to a MAIL pipelined after the end of data.

RFC 2920 §3.1 lets the next transaction's MAIL, RCPT and DATA share a write
with the end of the previous message's data; a server guarding against SMTP
smuggling may refuse them with 503 (the issue reports Haraka doing so). The
scripted server here refuses every command that arrived before its reply to
the end of data. Deliverable mail must still be delivered: the transaction is
sent again alone, the connection (and the client's next one, and the outbox
worker's next one to that server) stops pipelining across messages, and
nothing is ever recorded as failed for a 503.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpmail import Envelope
from smtpmail.outbox import Outbox, Worker
from support.harness import drive, op
from support.hostile.scripted import DEFAULT_EHLO, ScriptedServer, respond

CHUNKING = (*DEFAULT_EHLO, b"CHUNKING")


def _message(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)


def _items(count: int, first: int = 0) -> list[tuple[Envelope, bytes]]:
    return [
        (Envelope("a@example.org", [f"r{i}@example.net"]), _message(i))
        for i in range(first, first + count)
    ]


@pytest.mark.parametrize(
    ("keywords", "group", "most"),
    # With BDAT, all three transactions went in one window: the later ones that
    # arrived before the first end of data's reply are refused whole (RSET,
    # MAIL, RCPT, BDAT each): the second, and the third when it came in time.
    [(DEFAULT_EHLO, 3, 3), (CHUNKING, 4, 8)],
    ids=["data", "bdat"],
)
def test_send_many_sends_the_refused_transaction_again_alone(
    kind: str, keywords: tuple[bytes, ...], group: int, most: int
) -> None:
    with ScriptedServer([respond(keywords, refuse_after_data=True)]) as server:
        out = drive(kind, server.port, [op("send_many", _items(3))])
        conn = server.conn()
    assert out.error is None and conn.errors == []
    (results,) = out.results
    assert [(r.ok, r.error) for r in results] == [(True, None)] * 3
    assert len(conn.data) == 3
    # Refused once, for coming with the first end of data; after the reply it came
    # again alone, and no later group came with an end of data.
    assert len(conn.refused_early) in range(group, most + 1, group)
    assert conn.refused_early[group - 3].startswith(b"MAIL FROM:<a@example.org>")
    assert [d.trailing for d in conn.data] == [conn.data[0].trailing, b"", b""]
    assert conn.data[0].trailing.removeprefix(b"RSET\r\n").startswith(b"MAIL FROM:")
    assert out.client.session.refuses_pipelined_mail


def test_a_client_keeps_what_it_learned_for_its_next_connection(kind: str) -> None:
    with ScriptedServer([respond(refuse_after_data=True)]) as server:
        ops = [op("send_many", _items(2)), op("close"), op("send_many", _items(2, 2))]
        out = drive(kind, server.port, ops)
        first, second = server.conn(0), server.conn(1)
    assert out.error is None
    assert [r.ok for r in [*out.results[0], *out.results[2]]] == [True] * 4
    assert len(first.refused_early) == 3
    assert out.client.options.pipeline_messages is False
    assert second.refused_early == []
    assert [d.trailing for d in second.data] == [b"", b""]


def test_the_outbox_worker_fails_nothing_and_remembers_the_server(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    with ScriptedServer([respond(refuse_after_data=True)]) as server:
        worker = Worker(box, port=server.port, connections=1, timeout=10.0)
        for i in range(3):
            box.add(_message(i), "a@example.org", [f"r{i}@example.net"])
        first = worker.run()
        for i in range(3, 6):
            box.add(_message(i), "a@example.org", [f"r{i}@example.net"])
        second = worker.run()
        conns = [server.conn(0), server.conn(1)]
    assert (first.delivered, first.deferred, first.failed) == (3, 0, 0)
    assert (second.delivered, second.deferred, second.failed) == (3, 0, 0)
    assert {m.status for m in box.messages()} == {"delivered"}
    assert len(conns[0].refused_early) == 3
    # The next connection to that server does not pipeline across messages.
    assert conns[1].refused_early == []
    assert [d.trailing for d in conns[1].data] == [b"", b"", b""]
