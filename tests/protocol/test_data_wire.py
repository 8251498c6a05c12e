"""Hypothesis against a real server: arbitrary bytes, arbitrary chunking, through aiosmtpd.

What aiosmtpd stores must equal the message with its line endings
normalised, and the bytes on the wire must hold no bare CR or LF and no
terminator before the real one (the SMTP smuggling properties).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

import smtpmail
from support.messagedata import chunkings, normalise
from support.servers import RecordingServer


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as s:
        yield s


@pytest.fixture(scope="module")
def client(server: RecordingServer) -> Iterator[smtpmail.Client]:
    with smtpmail.Client("127.0.0.1", server.port) as c:
        yield c


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=chunkings())
def test_stored_message_is_the_normalised_input(
    server: RecordingServer, client: smtpmail.Client, case: tuple[bytes, list[bytes]]
) -> None:
    message, chunks = case
    before = len(server.messages)
    wire_start = len(server.raw)
    result = client.send(iter(chunks), "a@example.org", "b@example.org")
    assert result.ok
    assert len(server.messages) == before + 1
    assert server.messages[-1].content == normalise(message)

    wire = server.raw[wire_start:]
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", wire) is None, "bare CR or LF on the wire"
    data_start = wire.index(b"DATA\r\n") + len(b"DATA\r\n")
    data = wire[data_start:]
    # exactly one end of data, and it is the last thing sent
    assert (b"\r\n" + data).find(b"\r\n.\r\n") == len(data) - 3
