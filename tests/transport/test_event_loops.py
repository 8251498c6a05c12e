"""An AsyncClient used from more than one event loop, one after another.

A worker that calls ``asyncio.run()`` per job with a client made once, or a
test suite with a loop per test: the connection made in a loop that has
since closed cannot be used (its transport, its deadlines' timer live in
that loop), and the next operation in the new loop hung there for good,
whatever its timeout. It now connects again, as after a server that closed
an idle connection. A connection whose loop is still open is another
loop's, and using it from this one is refused (LocalProtocolError).
Against the scripted server playing a plain, correct one.
"""

from __future__ import annotations

import asyncio

import pytest

from smtpmail import AsyncClient, Envelope, LocalProtocolError, SendResult
from support.hostile.scripted import ScriptedServer, respond

ENVELOPE = Envelope("a@example.org", ["b@example.org"])
MESSAGE = b"Subject: loops\r\n\r\nbody\r\n"


async def _guarded(client: AsyncClient, many: int = 1) -> list[SendResult]:
    # (the deadline guards the test only: the send hung, its own deadlines
    # armed in the closed loop)
    async with asyncio.timeout(10):
        return await asyncio.gather(*(client.send(MESSAGE, envelope=ENVELOPE) for _ in range(many)))


@pytest.mark.parametrize("many", [1, 3], ids=["one send", "gathered sends"])
def test_a_client_whose_loop_closed_connects_again_in_the_next(many: int) -> None:
    with ScriptedServer([respond()]) as server:
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="client.example", timeout=10)
        assert all(r.ok for r in asyncio.run(_guarded(client, many)))
        assert client.is_connected  # (left connected when asyncio.run closed its loop)
        assert all(r.ok for r in asyncio.run(_guarded(client, many)))
        assert server.client_closed(0)  # the first connection was ended, not left behind
        asyncio.run(client.quit())
        assert len(server.connections) == 2
        assert len(server.messages) == 2 * many


def test_a_connection_whose_loop_is_still_open_is_refused_to_another() -> None:
    with ScriptedServer([respond()]) as server:
        client = AsyncClient("127.0.0.1", server.port, ehlo_name="client.example", timeout=10)
        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(client.connect())
            with pytest.raises(LocalProtocolError, match="another event loop"):
                asyncio.run(_guarded(client))
            assert client.is_connected
            assert first.run_until_complete(client.send(MESSAGE, envelope=ENVELOPE)).ok
            first.run_until_complete(client.quit())
        finally:
            first.close()
        assert len(server.connections) == 1
        assert len(server.messages) == 1
