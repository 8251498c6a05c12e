"""Both clients against a cued server that misbehaves on purpose.

Timeouts (a deadline per whole reply, the long wait after the final dot),
a server that closed an idle connection, unsolicited replies, 421 in the
middle of a pipelined group, and the source address. Real servers cover
behaviour; these are the faults they will not produce on demand.
"""

from __future__ import annotations

import threading

import pytest

import smtpmail
from support.cuedserver import Conn, CuedServer
from support.harness import Connect

FAST = smtpmail.Timeouts(connect=5, greeting=5, command=0.3, data_block=5, data_end=5)


def transaction(conn: Conn, data_reply: bytes = b"250 2.0.0 queued\r\n") -> bytes:
    conn.expect(b"MAIL", b"250 ok\r\n")
    conn.expect(b"RCPT", b"250 ok\r\n")
    conn.expect(b"DATA", b"354 go\r\n")
    content = conn.data()
    conn.send(data_reply)
    return content


async def test_a_dripping_reply_still_times_out(connect: Connect) -> None:
    # Each byte comes well within the deadline; the whole reply does not.
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"NOOP")
        conn.drip(b"250 " + b"x" * 30 + b"\r\n", every=0.03)

    async with CuedServer(script) as server:
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
    release = threading.Event()

    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL", b"250 ok\r\n")
        conn.expect(b"RCPT", b"250 ok\r\n")
        conn.expect(b"DATA", b"354 go\r\n")
        conn.data()
        release.wait(1.0)  # longer than the command timeout (0.3 s)
        conn.send(b"250 queued\r\n")
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(script) as server:
        async with connect(server.port, timeout=FAST) as client:
            result = await client.send(b"x", "a@example.org", "b@example.org")
        assert result.ok


async def test_no_reply_after_the_final_dot_may_have_been_delivered(connect: Connect) -> None:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL", b"250 ok\r\n")
        conn.expect(b"RCPT", b"250 ok\r\n")
        conn.expect(b"DATA", b"354 go\r\n")
        conn.data()
        conn.line()  # wait for the client to give up and go

    timeouts = FAST.replace(data_end=0.3)
    async with CuedServer(script) as server:
        client = connect(server.port, timeout=timeouts)
        await client.connect()
        with pytest.raises(smtpmail.ReplyTimeout) as info:
            await client.send(b"x", "a@example.org", "b@example.org")
    assert info.value.possibly_delivered


@pytest.mark.parametrize("parting", [b"421 4.4.2 idle too long\r\n", b""])
async def test_reconnect_after_the_server_closed_an_idle_connection(
    connect: Connect, parting: bytes
) -> None:
    closed = threading.Event()

    def first(conn: Conn) -> None:
        conn.greet_and_ehlo()
        transaction(conn)
        conn.send(parting)
        conn.close()
        closed.set()

    def second(conn: Conn) -> None:
        conn.greet_and_ehlo()
        transaction(conn)
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(first, second) as server:
        async with connect(server.port, timeout=FAST) as client:
            assert (await client.send(b"1", "a@example.org", "b@example.org")).ok
            assert closed.wait(10)
            assert (await client.send(b"2", "a@example.org", "b@example.org")).ok
        assert len(server.conns) == 2


async def test_unsolicited_reply_is_never_paired_with_the_next_command(
    connect: Connect,
) -> None:
    sent = threading.Event()

    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.send(b"250 nobody asked for this\r\n")
        sent.set()
        conn.expect(b"NOOP", b"250 2.0.0 the real answer\r\n")
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(script) as server, connect(server.port, timeout=FAST) as client:
        assert sent.wait(10)  # it is on its way before NOOP is written
        assert (await client.noop()).text == "2.0.0 the real answer"

    # A reply with junk glued behind it in the same segment.
    def script2(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"NOOP", b"250 first\r\n250 junk after it\r\n")
        conn.expect(b"NOOP", b"250 second\r\n")
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(script2) as server, connect(server.port, timeout=FAST) as client:
        assert (await client.noop()).text == "first"
        assert (await client.noop()).text == "second"


async def test_421_in_a_pipelined_group(connect: Connect) -> None:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL")
        conn.expect(b"RCPT")
        conn.expect(b"RCPT")
        conn.expect(b"DATA")
        conn.send(b"250 ok\r\n421 4.3.2 shutting down\r\n")

    async with CuedServer(script) as server:
        client = connect(server.port, timeout=FAST)
        await client.connect()
        with pytest.raises(smtpmail.ServiceClosing) as info:
            await client.send(b"x", "a@example.org", ["b@example.org", "c@example.org"])
        assert info.value.is_transient
        assert not client.is_connected
        assert server.conns[0].lines[1:] == [
            b"MAIL FROM:<a@example.org>",
            b"RCPT TO:<b@example.org>",
            b"RCPT TO:<c@example.org>",
            b"DATA",
        ]


async def test_all_refused_after_354_in_a_pipelined_group(connect: Connect) -> None:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        for verb in (b"MAIL", b"RCPT", b"DATA"):
            conn.expect(verb)
        conn.send(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
        assert conn.line() == b"."  # the terminator alone, no content
        conn.send(b"554 5.5.1 no valid recipients\r\n")
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(script) as server:
        async with connect(server.port, timeout=FAST) as client:
            with pytest.raises(smtpmail.RecipientsRefused):
                await client.send(b"secret body", "a@example.org", "b@example.org")
        assert b"secret body" not in b"".join(server.conns[0].lines)


async def test_source_address(connect: Connect) -> None:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"QUIT", b"221 bye\r\n")

    async with CuedServer(script) as server:
        async with connect(server.port, source_address=("127.0.0.2", 0)):
            pass
        assert server.peers[0][0] == "127.0.0.2"
