"""A one-shot send pipelines QUIT with the end of data (RFC 2920 §3.1, issue 19).

``smtpmail.send`` / ``send_async`` (``then_quit=True`` on a client's
``send``) know the message is the connection's last: to a server that
offers PIPELINING, QUIT goes in the same write as the end of data, which
saves the round trip QUIT alone costs; the end of data's reply still
decides the result. To a server without PIPELINING (aiosmtpd), QUIT waits
for that reply as before. Both clients, against real servers.
"""

from __future__ import annotations

from typing import Any

import pytest

import smtpmail
from support.harness import Connect
from support.postfix import SmtpSink
from support.servers import RecordingServer
from support.streamspy import spy_connectors

MSG = b"Subject: last\r\n\r\nthe connection's last message\r\n"


async def _one_shot(port: int, use_async: bool) -> tuple[smtpmail.SendResult, list[str]]:
    seen: list[tuple[str, str]] = []

    def hook(kind: str, line: str) -> None:
        if kind in ("client", "server"):
            seen.append((kind, line))

    options = {"host": "127.0.0.1", "port": port, "transcript": hook}
    if use_async:
        result = await smtpmail.send_async(MSG, "a@example.org", "b@example.org", **options)
    else:
        result = smtpmail.send(MSG, "a@example.org", "b@example.org", **options)
    end = seen.index(("client", "."))
    # What follows the end of data: who spoke, and the command or the reply code.
    return result, [f"{k} {line[:4].strip()}" for k, line in seen[end:]]


@pytest.mark.postfix
@pytest.mark.parametrize("use_async", [False, True])
async def test_quit_rides_with_the_end_of_data(use_async: bool) -> None:
    with SmtpSink() as sink:  # offers PIPELINING
        result, after = await _one_shot(sink.port, use_async)
        (message,) = sink.messages(1)
    assert result.ok and result.reply is not None and result.reply.code == 250
    assert after == ["client .", "client QUIT", "server 250", "server 221"]
    assert b"the connection's last message" in message.content


@pytest.mark.parametrize("use_async", [False, True])
async def test_without_pipelining_quit_waits_for_the_reply(use_async: bool) -> None:
    with RecordingServer() as server:  # aiosmtpd: no PIPELINING
        result, after = await _one_shot(server.port, use_async)
    assert result.ok
    assert after == ["client .", "server 250", "client QUIT", "server 221"]
    assert len(server.messages) == 1


@pytest.mark.postfix
async def test_a_client_send_with_then_quit_closes_the_connection(connect: Connect) -> None:
    with SmtpSink() as sink:
        async with connect(sink.port) as client:
            result = await client.send(MSG, "a@example.org", "b@example.org", then_quit=True)
            assert not client.is_connected
            assert await client.quit() is None  # already said and closed
        assert result.ok
        assert len(sink.messages(1)) == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_one_shot_send_asks_no_idle_check_of_its_new_connection(use_async: bool) -> None:
    # A connection opened for this very send cannot have been dropped while
    # idle: the check (one system call) is for connections kept between sends.
    polls: list[int] = []
    connect, connect_async = spy_connectors(polls=polls)

    with RecordingServer() as server:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": server.port}
        if use_async:
            result = await smtpmail.send_async(
                MSG, "a@example.org", "b@example.org", **options, connect=connect_async
            )
        else:
            result = smtpmail.send(
                MSG, "a@example.org", "b@example.org", **options, connect=connect
            )
        assert result.ok
        assert len(server.messages) == 1
    assert polls == []
