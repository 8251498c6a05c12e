"""Both clients against a scripted server that misbehaves on purpose.

Timeouts (a deadline per whole reply, the long wait after the final dot),
a server that closed an idle connection, unsolicited replies, 421 in the
middle of a pipelined group, and the source address. Real servers cover
behaviour; these are the faults they will not produce on demand.
"""

from __future__ import annotations

import threading

import pytest

import smtpmail
from support.harness import Connect
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    Step,
    call,
    drip,
    expect,
    hello,
    read_data,
    send,
    signal,
    sleep,
    transaction,
)

FAST = smtpmail.Timeouts(connect=5, greeting=5, command=0.3, data_block=5, data_end=5)
EHLO = (b"PIPELINING", b"8BITMIME")


def lines(conn: Conn) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in conn.lines]


async def test_a_dripping_reply_still_times_out(connect: Connect) -> None:
    # Each byte comes well within the deadline; the whole reply does not.
    script = [*hello(EHLO), expect(b"NOOP"), drip(b"250 " + b"x" * 30 + b"\r\n", 0.03)]

    with ScriptedServer(script) as server:
        client = connect(server.port, timeout=FAST)
        await client.connect()
        with pytest.raises(smtpmail.ReplyTimeout) as info:
            await client.noop()
        assert info.value.is_transient
        assert not info.value.possibly_delivered
        assert not client.is_connected


async def test_the_wait_after_the_final_dot_uses_data_end(connect: Connect) -> None:
    # The reply to the final dot comes later than the command timeout allows,
    # within data_end: a client that used the command timeout would give up
    # and retry a message the server took (a duplicate).
    script = [
        *hello(EHLO),
        *transaction(data_reply=None),
        sleep(1.0),  # longer than the command timeout (0.3 s)
        send(b"250 queued\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]

    with ScriptedServer(script) as server:
        async with connect(server.port, timeout=FAST) as client:
            result = await client.send(b"x", "a@example.org", "b@example.org")
        assert result.ok
        assert (await server.aconn()).errors == []


async def test_no_reply_after_the_final_dot_may_have_been_delivered(connect: Connect) -> None:
    # After the data, no reply: the server waits for the client to give up and go.
    script = [*hello(EHLO), *transaction(data_reply=None)]

    timeouts = FAST.replace(data_end=0.3)
    with ScriptedServer(script) as server:
        client = connect(server.port, timeout=timeouts)
        await client.connect()
        with pytest.raises(smtpmail.ReplyTimeout) as info:
            await client.send(b"x", "a@example.org", "b@example.org")
    assert info.value.possibly_delivered


QUEUED = b"250 2.0.0 queued\r\n"
IDLE = b"421 4.4.2 idle too long\r\n"
PARTINGS = {
    "421 then close": [*transaction(), send(IDLE)],
    "close": transaction(),
    # The 421 read with the end-of-data reply: already in the parser, not the stream.
    "421 with the last reply": transaction(QUEUED + IDLE),
    # Half the 421 read with the last reply, the rest later: the poll sees "4.2 ...".
    "421 split": [*transaction(QUEUED + IDLE[:5]), sleep(0.1), send(IDLE[5:])],
}


@pytest.mark.parametrize("parting", PARTINGS.values(), ids=PARTINGS.keys())
async def test_reconnect_after_the_server_closed_an_idle_connection(
    connect: Connect, parting: list[Step]
) -> None:
    closed = threading.Event()

    async def hang_up(conn: Conn) -> None:
        conn.close()
        # Closed once this returns (close() alone leaves it to a later turn of the
        # server's loop): the client's next send must find it closed, not race it.
        await conn.writer.wait_closed()
        closed.set()

    first = [*hello(EHLO), *parting, call(hang_up)]
    second = [*hello(EHLO), *transaction(), expect(b"QUIT", b"221 bye\r\n")]

    with ScriptedServer(first, then=[second]) as server:
        async with connect(server.port, timeout=FAST) as client:
            assert (await client.send(b"1", "a@example.org", "b@example.org")).ok
            assert closed.wait(10)
            assert (await client.send(b"2", "a@example.org", "b@example.org")).ok
        assert len(server.connections) == 2
        assert (await server.aconn(0)).errors == (await server.aconn(1)).errors == []


async def test_unsolicited_reply_is_never_paired_with_the_next_command(
    connect: Connect,
) -> None:
    sent = threading.Event()
    script = [
        *hello(EHLO),
        send(b"250 nobody asked for this\r\n"),
        signal(sent),
        expect(b"NOOP", b"250 2.0.0 the real answer\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]

    with ScriptedServer(script) as server:
        async with connect(server.port, timeout=FAST) as client:
            assert sent.wait(10)  # it is on its way before NOOP is written
            assert (await client.noop()).text == "2.0.0 the real answer"
        assert (await server.aconn()).errors == []

    # A reply with junk glued behind it in the same segment.
    script2 = [
        *hello(EHLO),
        expect(b"NOOP", b"250 first\r\n250 junk after it\r\n"),
        expect(b"NOOP", b"250 second\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]

    with ScriptedServer(script2) as server:
        async with connect(server.port, timeout=FAST) as client:
            assert (await client.noop()).text == "first"
            assert (await client.noop()).text == "second"
        assert (await server.aconn()).errors == []


async def test_421_in_a_pipelined_group(connect: Connect) -> None:
    script = [
        *hello(EHLO),
        *(expect(verb) for verb in (b"MAIL", b"RCPT", b"RCPT", b"DATA")),
        send(b"250 ok\r\n421 4.3.2 shutting down\r\n"),
    ]

    with ScriptedServer(script) as server:
        client = connect(server.port, timeout=FAST)
        await client.connect()
        with pytest.raises(smtpmail.ServiceClosing) as info:
            await client.send(b"x", "a@example.org", ["b@example.org", "c@example.org"])
        assert info.value.is_transient
        assert not client.is_connected
        assert lines(server.connections[0])[1:] == [
            b"MAIL FROM:<a@example.org>",
            b"RCPT TO:<b@example.org>",
            b"RCPT TO:<c@example.org>",
            b"DATA",
        ]


async def test_all_refused_after_354_in_a_pipelined_group(connect: Connect) -> None:
    script = [
        *hello(EHLO),
        *(expect(verb) for verb in (b"MAIL", b"RCPT", b"DATA")),
        send(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n"),
        read_data(b"554 5.5.1 no valid recipients\r\n"),
        expect(b"QUIT", b"221 bye\r\n"),
    ]

    with ScriptedServer(script) as server:
        async with connect(server.port, timeout=FAST) as client:
            with pytest.raises(smtpmail.RecipientsRefused):
                await client.send(b"secret body", "a@example.org", "b@example.org")
        conn = await server.aconn()
        assert conn.errors == []
        assert [d.raw for d in conn.data] == [b".\r\n"]  # the terminator alone, no content
        assert b"secret body" not in conn.received


async def test_source_address(connect: Connect) -> None:
    script = [*hello(EHLO), expect(b"QUIT", b"221 bye\r\n")]

    with ScriptedServer(script) as server:
        async with connect(server.port, source_address=("127.0.0.2", 0)):
            pass
        assert server.connections[0].peer[0] == "127.0.0.2"
