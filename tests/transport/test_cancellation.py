"""Giving up on an operation part-way: the task cancelled (``task.cancel()``,
``asyncio.timeout()``) or, in the blocking client, an exception raised by a
signal handler (KeyboardInterrupt, a SIGALRM deadline of the caller's).

The exception reaches the caller as it was raised, and the connection, whose
state is then unknown, is closed at once: never left open and counted as
connected, never held by data nobody will wait for. The next operation
connects again. The server (tests/support/hostile/scripted.py) tells the test
when the client has got to the step under test; no timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from smtpmail import AsyncClient, Client, ConnectionLost, Envelope, Timeouts
from smtpmail.transport.aio_stream import open_tcp
from support.harness import Twin
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    Step,
    expect,
    hello,
    read_some,
    respond,
    send,
    stall,
    transaction,
)
from support.hostile.scripted import (
    signal as signal_step,
)
from support.servers import unanswered_port

ENVELOPE = Envelope("a@example.org", ["b@example.org"])


class Interrupted(BaseException):
    """What the test's SIGALRM handler raises in the blocking client (as the
    default SIGINT handler raises KeyboardInterrupt)."""


def _raise(signum: int, frame: object) -> None:
    raise Interrupted


def stop(kind: str, reached: threading.Event) -> Step:
    """A server step: the client got here. The blocking client's main thread
    gets a SIGALRM (its handler raises Interrupted); the asyncio test, told by
    ``reached``, cancels the task."""
    main = threading.main_thread().ident
    assert main is not None

    async def step(conn: Conn) -> None:
        reached.set()
        if kind == "sync":
            signal.pthread_kill(main, signal.SIGALRM)

    return step


@contextmanager
def _alarm_raises() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)


def interrupt(kind: str, client: Any, call: Callable[[Any], Any], reached: threading.Event) -> None:
    """Run ``call(client)`` until the server's :func:`stop` step interrupts it;
    the exception must come out as it was raised."""
    if kind == "sync":
        with _alarm_raises(), pytest.raises(Interrupted):
            call(client)
        return

    async def run() -> None:
        task = asyncio.ensure_future(call(client))
        assert await asyncio.to_thread(reached.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_interrupted_quit_after_a_refused_greeting_closes_the_connection(kind: str) -> None:
    """A 554 greeting is answered with QUIT, whose 221 is awaited a short while
    (drive._quit_unanswered). Interrupted in that wait, the client left the
    connection open and counted itself connected."""
    reached = threading.Event()
    refusing = [send(b"554 5.7.1 no service\r\n"), expect(b"QUIT"), stop(kind, reached)]
    serving = [send(b"220 hostile.test ESMTP\r\n"), respond()]
    with ScriptedServer(refusing, greeting=None, then=[serving]) as server:
        cls = Client if kind == "sync" else AsyncClient
        client = cls("127.0.0.1", server.port, ehlo_name="client.example", timeout=30)
        interrupt(kind, client, lambda c: c.connect(), reached)
        assert not client.is_connected
        assert server.client_closed(0)

        async def again() -> int:
            reply = await client.noop()
            await client.quit()
            return int(reply.code)

        assert (client.noop().code if kind == "sync" else asyncio.run(again())) == 250
        if kind == "sync":
            client.quit()
        assert len(server.connections) == 2


def test_cancelled_while_writing_to_a_server_that_stopped_reading() -> None:
    """Cancelled in the middle of a large message to a server that stopped
    reading: the data still buffered in asyncio's transport is dropped with the
    connection. A graceful close waited, with no deadline, to write it first:
    the socket stayed open until the loop closed ("unclosed transport")."""
    reached = threading.Event()
    script = [
        *hello((b"8BITMIME",)),
        expect(b"MAIL", b"250 ok\r\n"),
        expect(b"RCPT", b"250 ok\r\n"),
        expect(b"DATA", b"354 go ahead\r\n"),
        read_some(),
        stop("async", reached),
        stall(),
    ]
    message = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 200_000  # > every buffer
    opened: list[Any] = []

    async def connector(host: str, port: int, **where: Any) -> Any:
        opened.append(await open_tcp(host, port, **where))
        return opened[-1]

    with ScriptedServer(script) as server:
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="c.example", connect=connector)

        async def run() -> int:
            task = asyncio.ensure_future(client.send(message, envelope=ENVELOPE))
            assert await asyncio.to_thread(reached.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client.is_connected
            sock = opened[0].get_extra_info("socket")
            await asyncio.sleep(0)  # (the transport's connection_lost comes by call_soon)
            return int(sock.fileno())

        assert asyncio.run(run()) == -1


def test_interrupted_while_the_tcp_connection_opens_leaves_no_socket(kind: str) -> None:
    """The server's accept queue is full: its kernel drops the SYN and the
    connect waits. Interrupted there (Ctrl-C, a caller's SIGALRM), the blocking
    client's socket was left for the garbage collector ("unclosed socket").
    The interrupt comes from a timer: when it fires is not asserted on."""
    with unanswered_port() as port:
        cls = Client if kind == "sync" else AsyncClient
        client = cls("127.0.0.1", port, timeout=30)
        gc.collect()  # (what earlier tests left is not this test's)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            if kind == "sync":
                with _alarm_raises():
                    signal.setitimer(signal.ITIMER_REAL, 0.2)
                    with contextlib.suppress(Interrupted):
                        client.connect()
            else:

                async def run() -> None:
                    task = asyncio.ensure_future(client.connect())
                    await asyncio.sleep(0.2)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

                asyncio.run(run())
            assert not client.is_connected
            gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_close_from_elsewhere_ends_the_wait_of_the_operation_under_way(kind: str) -> None:
    """``close()`` does not wait: it drops the connection under whatever runs.
    The blocking client closed the socket another thread was reading, which
    does not wake that thread: the send waited out its deadline after the
    final dot. Now, in both clients, it ends at once, possibly delivered."""
    reached = threading.Event()
    script = [*hello((b"8BITMIME",)), *transaction(None), signal_step(reached)]
    with ScriptedServer(script) as server:
        client = Twin(kind, "127.0.0.1", server.port, timeout=Timeouts(data_end=60))
        task = asyncio.ensure_future(client.send(b"x\r\n", envelope=ENVELOPE))
        assert await asyncio.to_thread(reached.wait, 10)
        client.client.close()
        # (the bound only keeps a failing run short: the wait was the 60 s deadline's)
        with pytest.raises(ConnectionLost) as info:
            await asyncio.wait_for(task, 10)
        assert info.value.possibly_delivered
        assert server.client_closed(0)


def test_a_batch_interrupted_after_a_final_dot_says_which_messages_went(kind: str) -> None:
    """The first message is answered, the second's final dot goes out and the
    server says nothing: interrupted there, the ``results`` the caller passed
    show the first taken, the second possibly delivered (end sent, no reply),
    and nothing about a third: taken and planned while the server read the
    second's data (as the client does on a server without PIPELINING), it was
    not begun, so it is not listed, as a message never tried."""
    reached = threading.Event()
    script = [
        *hello((b"8BITMIME",)),
        *transaction(),
        *transaction(None),
        stop(kind, reached),
    ]
    results: list[Any] = []
    with ScriptedServer(script) as server:
        cls = Client if kind == "sync" else AsyncClient
        client = cls("127.0.0.1", server.port, ehlo_name="client.example", timeout=30)
        batch = [(ENVELOPE, f"Subject: {n}\r\n\r\n{n}\r\n") for n in range(3)]
        interrupt(kind, client, lambda c: c.send_many(batch, results=results), reached)
        assert not client.is_connected
        assert server.client_closed(0)
        assert len(server.messages) == 2
    taken, unanswered = results
    assert taken.ok
    assert unanswered.end_sent and unanswered.reply is None and unanswered.error is None
