"""The transcript hook is the caller's code: its exceptions come back as themselves."""

from __future__ import annotations

import pytest

from support.harness import Connect
from support.servers import RecordingServer


async def test_a_failing_hook_raises_its_own_error_not_a_connection_error(
    smtpd: RecordingServer, connect: Connect
) -> None:
    armed = False

    def hook(kind: str, line: str) -> None:
        if armed and kind == "client":
            raise BrokenPipeError("the caller's stdout went away")

    client = connect(smtpd.port, transcript=hook)
    await client.connect()
    armed = True
    with pytest.raises(BrokenPipeError, match="stdout went away"):
        await client.send(b"Subject: x\r\n\r\nbody\r\n", "a@example.org", ["b@example.org"])
    # The connection's state is unknown after a half-noted exchange: it is closed.
    assert not client.client.is_connected
    assert smtpd.messages == []
