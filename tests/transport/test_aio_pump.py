"""AsyncClient's pump (transport/aio_pump.py): the flow goes on in the event
loop's callbacks, so the task wakes once per operation, not once per reply
(issue 19); deadlines, cancellation and the end of a batch behave as when
the task awaited every step. Real aiosmtpd for the cost, the scripted
hostile server for the faults; no timed assertions.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from smtpmail import AsyncClient, Envelope, ReplyTimeout, Timeouts
from support.harness import drive, op
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    call,
    ehlo_reply,
    expect,
    read_data,
    respond,
    send,
)
from support.servers import RecordingServer

ENVELOPE = Envelope("a@example.org", ["b@example.org"])
MESSAGE = b"Subject: pump\r\n\r\nbody\r\n"


async def test_a_lock_step_batch_makes_no_future_per_reply() -> None:
    """aiosmtpd offers no PIPELINING: MAIL, RCPT, DATA and the end of data of
    ten messages wait for forty replies. Awaiting each made a Future each."""
    loop = asyncio.get_running_loop()
    made = 0
    create_future = loop.create_future

    def counting() -> asyncio.Future[Any]:
        nonlocal made
        made += 1
        return create_future()

    with RecordingServer() as server:
        async with AsyncClient(server.host, server.port, timeout=10) as client:
            loop.create_future = counting  # type: ignore[method-assign]
            try:
                results = await client.send_many([(ENVELOPE, MESSAGE)] * 10)
            finally:
                del loop.create_future
        assert all(r.ok for r in results)
        assert len(server.messages) == 10
    assert made <= 1  # the operation's one wait, at most


def _first_conn_stalls_on_the_second_message(
    server_ref: list[ScriptedServer], second_data: threading.Event
) -> list[Any]:
    """The first connection takes one message, then never answers the second
    one's end of data; later connections answer like a plain server."""
    plain = respond()

    async def step(conn: Conn) -> None:
        if conn is not server_ref[0].connections[0]:
            await plain(conn)
            return
        for s in (
            expect(b"EHLO"),
            send(ehlo_reply()),
            expect(b"MAIL"),
            expect(b"RCPT"),
            expect(b"DATA"),
            send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
            read_data(b"250 2.0.0 first queued\r\n"),
            expect(b"MAIL"),
            expect(b"RCPT"),
            expect(b"DATA"),
            send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
            read_data(None),
        ):
            await s(conn)
        second_data.set()

    return [call(step)]


def test_a_deadline_fires_in_the_middle_of_a_pipelined_batch(kind: str) -> None:
    server_ref: list[ScriptedServer] = []
    script = _first_conn_stalls_on_the_second_message(server_ref, threading.Event())
    with ScriptedServer(script) as server:
        server_ref.append(server)
        outcome = drive(
            kind,
            server.port,
            [op("connect"), op("send_many", [(ENVELOPE, MESSAGE)] * 3)],
            timeout=Timeouts(5, 5, 5, 5, data_end=0.5),
        )
        err = outcome.raised(ReplyTimeout)
        assert err.possibly_delivered  # the second message's end of data went out
        assert err.results[0].ok  # (the first message was answered)
        assert not outcome.client.is_connected
        assert server.client_closed(0)
        assert len(server.conn(0).data) == 2


async def test_a_cancelled_batch_closes_the_connection_and_the_client_goes_on() -> None:
    """Cancelled while its flow waits in the stream's callback: the flow closes
    the connection at the step that waited (its state is unknown), the task
    sees CancelledError, and the next operation connects again."""
    server_ref: list[ScriptedServer] = []
    second_data = threading.Event()
    script = _first_conn_stalls_on_the_second_message(server_ref, second_data)
    with ScriptedServer(script) as server:
        server_ref.append(server)
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="client.example", timeout=30)
        await client.connect()
        task = asyncio.create_task(client.send_many([(ENVELOPE, MESSAGE)] * 3))
        assert await asyncio.to_thread(second_data.wait, 10)
        await asyncio.sleep(0)  # (the task is waiting for the reply, whatever the timing)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.is_connected
        assert await asyncio.to_thread(server.client_closed, 0)
        assert (await client.noop()).code == 250  # a new connection
        result = await client.send(MESSAGE, envelope=ENVELOPE)
        assert result.ok
        await client.quit()
        assert len(server.connections) == 2


async def test_the_flow_runs_in_the_tasks_context() -> None:
    """A transcript hook called from the stream's callback sees the context
    variables of the task that sends (logging filters, tracing use them)."""
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
    seen: set[str] = set()

    def hook(kind: str, line: str) -> None:
        seen.add(request.get())

    with RecordingServer() as server:
        async with AsyncClient(server.host, server.port, timeout=10, transcript=hook) as client:
            request.set("batch-7")
            seen.clear()
            await client.send_many([(ENVELOPE, MESSAGE)] * 3)
    assert seen == {"batch-7"}


async def test_a_hook_that_cancels_the_task_mid_batch() -> None:
    """The transcript hook runs in the stream's callback; cancelling the sending
    task from there, as the flow ends, reaches the loop as no error, and the
    task sees its cancellation."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    task: asyncio.Task[Any] | None = None
    go_aheads = 0

    def hook(kind: str, line: str) -> None:
        # At the reply to the last end of data: the flow ends in this callback.
        nonlocal go_aheads
        go_aheads += kind == "server" and line.startswith("354")
        if go_aheads == 3 and line.startswith("250") and task is not None:
            task.cancel()

    try:
        with RecordingServer() as server:
            client = AsyncClient(server.host, server.port, timeout=10, transcript=hook)
            await client.connect()
            task = asyncio.create_task(client.send_many([(ENVELOPE, MESSAGE)] * 3))
            with pytest.raises(asyncio.CancelledError):
                await task
            client.close()
            await asyncio.sleep(0.01)  # (lets the transport close; not a timed assertion)
    finally:
        loop.set_exception_handler(None)
    assert errors == []
