"""Leaving a ``with`` block on an exception: QUIT when the session is idle.

RFC 5321 §4.1.1.10: the client sends QUIT before closing. smtplib's ``with``
always tries it. An error of the caller's own code between operations leaves
the session idle (after a send), so the block still ends with QUIT; one that
interrupts an operation (a message iterator raising mid-DATA) has already
closed the connection, whose state was unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from support.harness import make_client
from support.servers import RecordingServer

MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


def _interrupted() -> Iterator[bytes]:
    yield MESSAGE + b"line\r\n" * 20_000  # (the DATA under way when it raises)
    raise ValueError("the caller's iterator")


async def _send_in_with_then_raise(kind: str, port: int, message: Iterable[bytes] | bytes) -> None:
    """The client's own ``with`` (``async with``): a send, then the caller's error."""
    client: Any = make_client(kind, port)
    if kind == "sync":

        def block() -> None:
            with client:
                client.send(message, "a@example.org", ["b@example.org"])
                raise ValueError("the caller's own code")

        await asyncio.to_thread(block)
    else:
        async with client:
            await client.send(message, "a@example.org", ["b@example.org"])
            raise ValueError("the caller's own code")


async def test_an_error_of_the_callers_code_between_operations_ends_with_quit(
    smtpd: RecordingServer, kind: str
) -> None:
    with pytest.raises(ValueError, match="the caller's own code"):
        await _send_in_with_then_raise(kind, smtpd.port, MESSAGE)
    assert len(smtpd.messages) == 1
    assert smtpd.commands()[-1] == b"QUIT"


async def test_an_error_that_interrupts_an_operation_closes_without_quit(
    smtpd: RecordingServer, kind: str
) -> None:
    with pytest.raises(ValueError, match="the caller's iterator"):
        await _send_in_with_then_raise(kind, smtpd.port, _interrupted())
    assert b"\r\nDATA\r\n" in smtpd.raw and b"QUIT" not in smtpd.raw
    assert smtpd.messages == []
