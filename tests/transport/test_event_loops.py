"""AsyncClient under each event loop, and from one loop to the next.

uvloop's transports are not subclasses of ``asyncio.Transport``: the stream
asserted that they were, and under uvloop every operation waited out its
timeout for a greeting the stream could not take.

A worker that calls ``asyncio.run()`` per job with a client made once, or a
test suite with a loop per test: the connection made in a loop that has
since closed cannot be used (its transport, its deadlines' timer live in
that loop), and the next operation in the new loop hung there for good,
whatever its timeout. It now connects again, as after a server that closed
an idle connection. A connection whose loop is still open is another
loop's, and using it from this one is refused (LocalProtocolError).
Against aiosmtpd with STARTTLS and AUTH, and the scripted server playing a
plain, correct one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from smtpmail import AsyncClient, Credentials, Envelope, LocalProtocolError, SendResult, TLSOptions
from support.hostile.scripted import ScriptedServer, respond
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

T = TypeVar("T")
ENVELOPE = Envelope("a@example.org", ["b@example.org"])
MESSAGE = b"Subject: loops\r\n\r\nbody\r\n"

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    """``asyncio.run`` with the event loop under test: a new loop each call."""
    factory = LOOPS[request.param]

    def run_(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run_


#: Bigger than the socket buffers between client and server (about 20 MB).
BIG = b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 260_000


def test_starttls_auth_a_batch_and_a_message_bigger_than_the_buffers(
    run: Callable[..., Any], certs: Certs, starttls_server: TLSServer
) -> None:
    """The big message: the TLS layer's buffer pauses the client while it holds
    any of its writes and resumes it once the socket took them. Set to pause
    at 0 octets (as the socket transport is), it paused with nothing to drain
    and never resumed: the write timed out."""

    async def main() -> list[SendResult]:
        async with asyncio.timeout(60):  # (guards the test: each send waited out its own)
            async with AsyncClient(
                "127.0.0.1",
                starttls_server.port,
                auth=Credentials(USER, PASSWORD),
                tls_options=TLSOptions(ca_file=certs.ca_file),
                timeout=10,
            ) as client:
                assert client.tls_info is not None
                batch = await client.send_many([(ENVELOPE, MESSAGE)] * 3)
                return [*batch, await client.send(BIG, envelope=ENVELOPE)]

    assert all(r.ok for r in run(main()))
    assert len(starttls_server.messages) == 4
    assert len(starttls_server.messages[-1].content) >= len(BIG)


async def _guarded(client: AsyncClient, many: int = 1) -> list[SendResult]:
    # (the deadline guards the test only: the send hung, its own deadlines
    # armed in the closed loop)
    async with asyncio.timeout(10):
        return await asyncio.gather(*(client.send(MESSAGE, envelope=ENVELOPE) for _ in range(many)))


@pytest.mark.parametrize("many", [1, 3], ids=["one send", "gathered sends"])
def test_a_client_whose_loop_closed_connects_again_in_the_next(
    run: Callable[..., Any], many: int
) -> None:
    with ScriptedServer([respond()]) as server:
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="client.example", timeout=10)
        assert all(r.ok for r in run(_guarded(client, many)))
        assert client.is_connected  # (left connected when its loop closed)
        assert all(r.ok for r in run(_guarded(client, many)))
        assert server.client_closed(0)  # the first connection was ended, not left behind
        run(client.quit())
        assert len(server.connections) == 2
        assert len(server.messages) == 2 * many


def test_a_connection_whose_loop_is_still_open_is_refused_to_another(
    run: Callable[..., Any],
) -> None:
    with ScriptedServer([respond()]) as server:
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="client.example", timeout=10)
        with asyncio.Runner() as first:
            first.run(client.connect())
            with pytest.raises(LocalProtocolError, match="another event loop"):
                run(_guarded(client))
            assert client.is_connected
            assert first.run(client.send(MESSAGE, envelope=ENVELOPE)).ok
            first.run(client.quit())
        assert len(server.connections) == 1
        assert len(server.messages) == 1
