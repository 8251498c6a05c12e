"""Faults in the middle of a window of BDAT transactions (RFC 3030 §4.2), both clients.

The scripted server offers PIPELINING and CHUNKING and answers each command
in order as it arrives, as a real server does, with one fault at the third
transaction. The client has every transaction in flight before the first
reply, so each fault lands mid-window: the results must still be exact, per
transaction and per recipient (replies matched to commands in order), and a
transaction whose ``BDAT ... LAST`` left without a reply is possibly delivered.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpmail import ConnectionLost, Envelope, RecipientsRefused, SenderRefused, ServiceClosing
from smtpmail.outbox import Outbox, Worker
from support.harness import Outcome, drive, op
from support.hostile.scripted import (
    DEFAULT_EHLO,
    Conn,
    DataRecord,
    ScriptedServer,
    Step,
    call,
    ehlo_reply,
)

CHUNKING = (*DEFAULT_EHLO, b"CHUNKING")
COUNT = 6
AT = 2  # the transaction (from 0) where the fault happens
BDAT = re.compile(rb"BDAT (\d+)( LAST)?\r\n\Z", re.IGNORECASE)


def window_server(fault: str) -> Step:
    """Answer in order; at transaction ``AT``: ``mail`` refuses MAIL, ``rcpt`` every
    RCPT, ``452`` a second RCPT (too many), ``421`` answers MAIL with 421 and
    closes, ``drop`` reads on until the client stops writing, then closes
    without a word. ``late`` holds every reply until the
    client has stopped writing (no input pending), as a pipelining server that
    flushes its replies only when its input is drained (RFC 2920 §3.2)."""

    async def step(conn: Conn) -> None:
        k, mail_ok, rcpts = -1, False, 0
        held = bytearray()

        async def reply(data: bytes) -> None:
            if fault != "late":
                await conn.write(data)
                return
            held.extend(data)
            if not conn.buf:
                with contextlib.suppress(TimeoutError):
                    await conn.fill(timeout=0.05)
            if not conn.buf:
                await conn.write(bytes(held))
                held.clear()

        while (line := await conn.readline()) is not None:
            verb = line[:4].upper()
            here = k == AT
            if verb == b"EHLO":
                await conn.write(ehlo_reply(CHUNKING))
            elif verb == b"MAIL":
                k += 1
                here = k == AT
                if here and fault in ("421", "drop"):
                    if fault == "421":
                        await conn.write(b"421 4.3.2 shutting down\r\n")
                    # The rest of the window is read, never answered (closing
                    # with unread input would reset the connection, and the
                    # client might lose the 421 with it).
                    with contextlib.suppress(TimeoutError):
                        while await conn.fill(timeout=1.0):
                            pass
                    conn.close()
                    return
                mail_ok, rcpts = not (here and fault == "mail"), 0
                await reply(b"250 2.1.0 ok\r\n" if mail_ok else b"550 5.7.1 not you\r\n")
            elif verb == b"RSET":  # (before each transaction in the window)
                mail_ok, rcpts = False, 0
                await reply(b"250 2.0.0 ok\r\n")
            elif verb == b"RCPT":
                if not mail_ok:
                    await reply(b"503 5.5.1 need MAIL\r\n")
                elif here and fault == "rcpt":
                    await reply(b"550 5.1.1 no such user\r\n")
                elif here and fault == "452" and rcpts:
                    await reply(b"452 4.5.3 too many recipients\r\n")
                else:
                    rcpts += 1
                    await reply(b"250 2.1.5 ok\r\n")
            elif verb == b"BDAT" and (m := BDAT.match(line)):
                chunk = await conn.readexactly(int(m.group(1)))
                conn.data.append(DataRecord("BDAT", chunk or b""))
                if not mail_ok:
                    await reply(b"503 5.5.1 need MAIL\r\n")
                elif not rcpts:
                    await reply(b"554 5.5.1 no valid recipients\r\n")
                else:
                    await reply(b"250 2.0.0 queued as %d\r\n" % k)
                mail_ok = False
            elif verb == b"QUIT":
                await conn.write(b"221 2.0.0 bye\r\n")
                conn.close()
                return
            else:
                conn.errors.append(f"unexpected {line!r}")
                await conn.write(b"500 5.5.1 what?\r\n")

    return call(step)


def _message(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)


def _items(count: int = COUNT, two_at: int | None = None) -> list[tuple[Envelope, bytes]]:
    def rcpts(i: int) -> list[str]:
        return [f"r{i}@x.net", f"s{i}@x.net"] if i == two_at else [f"r{i}@x.net"]

    return [(Envelope("a@example.org", rcpts(i)), _message(i)) for i in range(count)]


def _results(out: Outcome) -> list:  # type: ignore[type-arg]
    return out.results[0] if out.error is None else out.error.results  # type: ignore[attr-defined]


def _mail_refused(out: Outcome, conn: Conn) -> None:
    results = _results(out)
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert isinstance(results[AT].error, SenderRefused)
    assert results[AT].recipients[f"r{AT}@x.net"].reply.code == 550
    assert [r.reply.text_oneline() for r in results if r.ok] == [
        f"2.0.0 queued as {i}" for i in (0, 1, 3, 4, 5)
    ]


def _all_rcpt_refused(out: Outcome, conn: Conn) -> None:
    results = _results(out)
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert isinstance(results[AT].error, RecipientsRefused)
    assert results[AT].recipients[f"r{AT}@x.net"].reply.code == 550
    # RFC 3030 §2: the chunk was sent all the same (the server read it).
    assert conn.data[AT].raw == _message(AT)


def _too_many(out: Outcome, conn: Conn) -> None:
    results = _results(out)
    assert [r.ok for r in results] == [True] * COUNT
    assert results[AT].accepted == [f"r{AT}@x.net", f"s{AT}@x.net"]
    # The recipient over the limit got the message in a further transaction.
    assert len(conn.data) == COUNT + 1
    assert conn.data[-1].raw == _message(AT)


def _closing(out: Outcome, conn: Conn) -> None:
    assert isinstance(out.error, ServiceClosing)
    results = _results(out)
    assert [r.ok for r in results[:AT]] == [True, True]
    # The 421 answered the third MAIL: nothing after it was taken, and each
    # result says so (they were left "unanswered", as if possibly delivered).
    assert all(r.reply is None and r.error is out.error for r in results[AT:])


def _dropped(out: Outcome, conn: Conn) -> None:
    assert isinstance(out.error, ConnectionLost)
    results = _results(out)
    assert [r.ok for r in results[:AT]] == [True, True]
    # Each of the others went whole (its BDAT LAST left) and got no reply.
    assert [(r.reply, r.error, r.end_sent) for r in results[AT:]] == [(None, None, True)] * 4


def _late(out: Outcome, conn: Conn) -> None:
    assert out.error is None
    assert [r.ok for r in _results(out)] == [True] * COUNT
    assert [d.raw for d in conn.data] == [_message(i) for i in range(COUNT)]


CASES: dict[str, tuple[list[tuple[Envelope, bytes]], Callable[[Outcome, Conn], None]]] = {
    "mail": (_items(), _mail_refused),
    "rcpt": (_items(), _all_rcpt_refused),
    "452": (_items(two_at=AT), _too_many),
    "421": (_items(), _closing),
    "drop": (_items(), _dropped),
    "late": (_items(), _late),
}


@pytest.mark.parametrize("fault", list(CASES))
def test_a_fault_mid_window(kind: str, fault: str) -> None:
    items, check = CASES[fault]
    with ScriptedServer([window_server(fault)]) as server:
        out = drive(kind, server.port, [op("send_many", items)])
        conn = server.conn()
    assert conn.errors == []
    check(out, conn)


def test_the_outbox_worker_records_a_drop_mid_window_as_possibly_delivered(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path)
    for envelope, message in _items():
        box.add(message, envelope.sender, list(envelope.recipients))
    with ScriptedServer([window_server("drop")]) as server:
        worker = Worker(box, port=server.port, connections=1, timeout=10.0)
        stats = worker.run()
    assert (stats.delivered, stats.possibly_delivered) == (AT, COUNT - AT)
    states = sorted(
        (r.address, r.state.value, r.possibly_delivered)
        for m in box.messages()
        for r in m.recipients
    )
    assert states[:AT] == [(f"r{i}@x.net", "delivered", False) for i in range(AT)]
    assert states[AT:] == [(f"r{i}@x.net", "deferred", True) for i in range(AT, COUNT)]
