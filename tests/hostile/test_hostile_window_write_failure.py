"""A write fails in the middle of a window of BDAT transactions (RFC 3030 §4.2), both clients.

The scripted server offers PIPELINING and CHUNKING and answers the first
transactions of the window in order (250s, a 550 to one recipient, a 554 to
a BDAT), reads one more whole without answering it, then leaves: with a 421
or without, closing or resetting the connection (SO_LINGER 0). The client
is still writing: the next message's end-of-data hook holds it until the
server is gone, so its writes fail. The replies the server sent before it
left are in the client's buffers; they decide their transactions exactly:
ok with its 250, failed with its 5xx, possibly delivered only where the end
of data left without a reply, not sent (a plain transient failure) after.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smtpmail import (
    ConnectionLost,
    DataRefused,
    Envelope,
    Options,
    SendResult,
    ServiceClosing,
)
from smtpmail.message.content import MarkedMessage
from smtpmail.outbox import Outbox, Worker
from smtpmail.transport.stream import connect_tcp
from support.harness import Outcome, drive, op
from support.hostile.scripted import (
    DEFAULT_EHLO,
    Conn,
    ScriptedServer,
    Step,
    call,
    close,
    ehlo_reply,
    expect,
    respond,
)

CHUNKING = (*DEFAULT_EHLO, b"CHUNKING")
BDAT = re.compile(rb"BDAT (\d+)( LAST)?\r\n\Z", re.IGNORECASE)
#: Transactions answered before the server leaves; the next is read, never answered.
ANSWERED = 4
COUNT = 8
#: Each transaction's replies (after the first ANSWERED, none).
REPLIES = {
    0: (b"250 2.1.0 ok", [b"250 2.1.5 ok"], b"250 2.0.0 queued as 0"),
    1: (b"250 2.1.0 ok", [b"250 2.1.5 ok", b"550 5.1.1 no such user"], b"250 2.0.0 queued as 1"),
    2: (b"250 2.1.0 ok", [b"250 2.1.5 ok"], b"554 5.6.0 message refused"),
    3: (b"250 2.1.0 ok", [b"250 2.1.5 ok"], b"250 2.0.0 queued as 3"),
}


def _reset(conn: Conn) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, not FIN."""
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def leaving_server(ending: str, holding: threading.Event, gone: threading.Event) -> Step:
    """Answer the first ANSWERED transactions from REPLIES, read one more whole,
    then leave as ``ending`` says ("421" or not, then "close" or "reset") and
    set ``gone`` once the socket is closed. ``first ...``: leave after EHLO, once
    the client holds its first message (``holding``: it has read the EHLO reply)."""

    async def leave() -> None:
        if "421" in ending:
            await conn.write(b"421 4.3.2 shutting down\r\n")
        if ending.endswith("reset"):
            _reset(conn)
        conn.close()
        await conn.writer.wait_closed()  # (the socket is closed once it returns)
        gone.set()

    async def step(c: Conn) -> None:
        nonlocal conn
        conn = c
        k = resets = 0
        while (line := await conn.readline()) is not None:
            verb = line[:4].upper()
            if verb == b"EHLO":
                await conn.write(ehlo_reply(CHUNKING))
                if ending.startswith("first"):
                    await asyncio.to_thread(holding.wait, 10)
                    return await leave()
            elif verb == b"RSET":  # (before each transaction in the window)
                resets += 1
            elif verb in (b"MAIL", b"RCPT"):
                pass  # answered with the transaction, once its BDAT is read
            elif verb == b"BDAT" and (m := BDAT.match(line)):
                await conn.readexactly(int(m.group(1)))
                if k < ANSWERED:
                    mail, rcpts, bdat = REPLIES[k]
                    replies = (*[b"250 2.0.0 ok"] * resets, mail, *rcpts, bdat)
                    await conn.write(b"".join(r + b"\r\n" for r in replies))
                    resets = 0
                    k += 1
                    continue
                return await leave()
            else:
                conn.errors.append(f"unexpected {line!r}")
                return

    conn: Conn
    return call(step)


def _message(i: int) -> bytes:
    return b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)


def _rcpts(i: int) -> list[str]:
    return [f"r{i}@x.net", f"s{i}@x.net"] if i == 1 else [f"r{i}@x.net"]


def _items(
    holding: threading.Event, gone: threading.Event, hold_at: int
) -> list[tuple[Envelope, object]]:
    """COUNT messages; the one at ``hold_at`` waits, just before its end of data,
    until the server is gone (so the client is still writing then)."""

    def hold(recipients: tuple[str, ...]) -> None:
        holding.set()
        assert gone.wait(10)

    items: list[tuple[Envelope, object]] = []
    for i in range(COUNT):
        message: object = _message(i)
        if i == hold_at:
            message = MarkedMessage(_message(i), hold)
        items.append((Envelope("a@example.org", _rcpts(i)), message))
    return items


def _results(out: Outcome) -> list[SendResult]:
    if out.error is None:
        return list(out.results[0])
    return list(out.error.results)  # type: ignore[attr-defined]


def _answered(results: list[SendResult]) -> None:
    """The first ANSWERED transactions, exactly as the server answered them."""
    first, partial, refused, fourth = results[:ANSWERED]
    assert first.ok and first.reply is not None
    assert first.reply.text_oneline() == "2.0.0 queued as 0"
    assert partial.error is None and partial.accepted == ["r1@x.net"]
    assert partial.refused["s1@x.net"].code == 550
    assert isinstance(refused.error, DataRefused) and refused.error.is_permanent
    assert refused.recipients["r2@x.net"].reply.code == 554
    assert fourth.ok and fourth.reply is not None
    assert fourth.reply.text_oneline() == "2.0.0 queued as 3"


def _state(result: SendResult) -> str:
    if isinstance(result.error, ServiceClosing):
        return "421"  # not taken: the server took nothing from the command it answered on
    if result.reply is not None or result.error is not None:
        return "answered"
    return "unanswered" if result.end_sent else "not sent"


@dataclass
class Case:
    #: Transactions answered before the server left.
    answered: int
    #: The error the batch ends with.
    error: type[Exception]
    #: From transaction ANSWERED on: "unanswered" (its end left, no reply), "not
    #: sent", or "421" (cut short by the 421: not taken, the 421 its error).
    after: list[str]
    possibly_delivered: bool


# After a FIN the client's next write still succeeds (its end left, the server
# resets the connection in return) and the one after fails; after a reset the
# next write fails.
CASES: dict[str, Case] = {
    "421 close": Case(ANSWERED, ServiceClosing, ["421", "421", "421"], False),
    "421 reset": Case(ANSWERED, ServiceClosing, ["421", "421"], False),
    "close": Case(ANSWERED, ConnectionLost, ["unanswered", "unanswered", "not sent"], True),
    "reset": Case(ANSWERED, ConnectionLost, ["unanswered", "not sent"], True),
    # The very first write of the window fails: nothing is in flight.
    "first 421 reset": Case(0, ServiceClosing, ["not sent"], False),
    "first reset": Case(0, ConnectionLost, ["not sent"], False),
}


@pytest.mark.parametrize("ending", list(CASES))
def test_replies_sent_before_a_write_failed_decide_their_transactions(
    kind: str, ending: str
) -> None:
    case = CASES[ending]
    holding, gone = threading.Event(), threading.Event()
    with ScriptedServer([leaving_server(ending, holding, gone)]) as server:
        hold_at = case.answered + 1 if case.answered else 0
        out = drive(kind, server.port, [op("send_many", _items(holding, gone, hold_at))])
        conn = server.conn()
    assert conn.errors == []
    assert isinstance(out.error, case.error), out.error
    results = _results(out)
    if case.answered:
        _answered(results)
    assert [_state(r) for r in results[case.answered :]] == case.after
    if case.error is ServiceClosing:  # the 421 came before any other reply was due
        assert out.error.reply.code == 421  # type: ignore[union-attr]
    assert getattr(out.error, "possibly_delivered", False) is case.possibly_delivered


def refusing_mid_data(verb: bytes, holding: threading.Event, gone: threading.Event) -> list[Step]:
    """A plain server up to ``verb`` (DATA or the first BDAT); then it refuses the
    message while the client still sends it, and resets the connection."""

    async def step(conn: Conn) -> None:
        if verb == b"DATA":
            await conn.write(b"354 go ahead\r\n")
            refusal = b"554 5.3.4 message too big\r\n"
        else:
            m = BDAT.match(conn.lines[-1])
            assert m is not None
            await conn.readexactly(int(m.group(1)))
            refusal = b"552 5.3.4 message too big\r\n"
        await asyncio.to_thread(holding.wait, 10)  # (the client is sending the rest)
        await conn.write(refusal)
        _reset(conn)
        conn.close()
        await conn.writer.wait_closed()
        gone.set()

    keywords = CHUNKING if verb == b"BDAT" else DEFAULT_EHLO
    return [respond(keywords, stop_at=verb), call(step)]


@pytest.mark.parametrize(("verb", "code"), [(b"DATA", 554), (b"BDAT", 552)])
def test_a_refusal_sent_before_a_write_failed_is_the_message_fate(
    kind: str, verb: bytes, code: int
) -> None:
    """Without a window (one message, DATA or BDAT in chunks): the server refuses
    the message mid-data and leaves; the refusal decides it (bounced, not retried)."""
    holding, gone = threading.Event(), threading.Event()

    def hold(recipients: tuple[str, ...]) -> None:
        holding.set()
        assert gone.wait(10)

    message = b"Subject: big\r\n\r\n" + b"line of the body\r\n" * 500
    sent = MarkedMessage(message, hold)
    with ScriptedServer(refusing_mid_data(verb, holding, gone)) as server:
        out = drive(
            kind,
            server.port,
            [op("send", sent, sender="a@example.org", recipients=["r@x.net"])],
            options=Options(chunk_size=1024),
        )
        conn = server.conn()
    assert conn.errors == []
    error = out.raised(DataRefused)
    assert isinstance(error, DataRefused)
    assert (error.reply.code, error.is_permanent) == (code, True)
    assert out.released  # (the connection is gone all the same)


class _Holding:
    """A real TCP stream whose write of one message waits until the server is gone
    (the outbox sets its own end-of-data hook, so the hold goes here)."""

    def __init__(self, stream: Any, marker: bytes, gone: threading.Event) -> None:
        self.stream, self.marker, self.gone = stream, marker, gone

    def write(self, data: bytes | memoryview, timeout: float) -> None:
        if self.marker in bytes(data):
            assert self.gone.wait(10)
        self.stream.write(data, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def test_the_outbox_records_what_the_replies_before_a_failed_write_said(tmp_path: Path) -> None:
    gone = threading.Event()
    box = Outbox(tmp_path)
    for i in range(COUNT):
        box.add(_message(i), "a@example.org", _rcpts(i))
    marker = b"Subject: %d\r\n" % (ANSWERED + 1)

    def holding(host: str, port: int, **kwargs: Any) -> _Holding:
        return _Holding(connect_tcp(host, port, **kwargs), marker, gone)

    later = [expect(b"EHLO", b"421 4.3.2 not now\r\n"), close()]  # (other connections)
    with ScriptedServer([leaving_server("reset", threading.Event(), gone)], then=[later]) as server:
        worker = Worker(box, port=server.port, connections=1, timeout=10.0, connect=holding)
        stats = worker.run()
        assert server.conn(0).errors == []
    states = {
        r.address: (r.state.value, r.code, r.possibly_delivered)
        for m in box.messages()
        for r in m.recipients
    }
    assert (stats.delivered, stats.failed, stats.possibly_delivered) == (3, 2, 1)
    assert states == {
        "r0@x.net": ("delivered", 250, False),
        "r1@x.net": ("delivered", 250, False),
        "s1@x.net": ("failed", 550, False),
        "r2@x.net": ("failed", 554, False),
        "r3@x.net": ("delivered", 250, False),
        # Its end of data left and no reply came: the retry may be a copy.
        "r4@x.net": ("deferred", None, True),
        # Its write failed; the others were never written.
        **{f"r{i}@x.net": ("deferred", None, False) for i in range(ANSWERED + 1, COUNT)},
    }


def test_a_big_last_chunk_whose_quit_failed_may_have_been_delivered(kind: str) -> None:
    """The one-shot send's QUIT rides after the end of the data; a last chunk
    over 64 KiB is written apart from it. When the server read the whole chunk
    and reset the connection before QUIT was written, the message may have been
    delivered: the write that failed was QUIT's, not the data's."""
    gone = threading.Event()

    async def leave(conn: Conn) -> None:
        m = BDAT.match(conn.lines[-1])
        assert m is not None and m.group(2)  # one chunk, the last
        await conn.readexactly(int(m.group(1)))
        _reset(conn)
        conn.close()
        await conn.writer.wait_closed()
        gone.set()

    def transcript(kind: str, text: str) -> None:
        if text == "QUIT":  # (called just before QUIT is written)
            assert gone.wait(10)

    message = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" + (b"y" * 78 + b"\r\n") * 2_500
    with ScriptedServer([respond(CHUNKING, stop_at=b"BDAT"), call(leave)]) as server:
        out = drive(
            kind,
            server.port,
            [op("send", message, "a@example.org", "r@x.net", then_quit=True)],
            transcript=transcript,
        )
    assert isinstance(out.error, ConnectionLost), out.error
    assert out.error.possibly_delivered
    (result,) = out.error.results  # type: ignore[attr-defined]
    assert result.end_sent and result.reply is None
