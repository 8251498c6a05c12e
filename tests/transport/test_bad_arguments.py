"""Client arguments that cannot be right are refused before a connection is tried.

A port outside 1-65535 is not a port: the resolver keeps its low 16 bits,
so port 70000 would connect to 4464 (a server the caller never named) and
deliver there. Against a real aiosmtpd listening on exactly that truncated
port, for both clients, the one-shot helpers, ``deliver()`` and the outbox
worker: an :class:`~smtpmail.InvalidArgument`, and nothing arrives.

A timeout must be a finite number of seconds over 0: the twins used to
differ (a NaN was the blocking client's ValueError after connecting, the
asyncio client's transient ConnectError), and a negative command timeout
connected and then reported a transient ReplyTimeout, retried for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

import smtpmail
from smtpmail.outbox import Outbox, Worker
from smtpmail.transport._base import Timeouts
from support.harness import Connect
from support.servers import RecordingServer

MSG = b"Subject: hi\r\n\r\nhi\r\n"


@pytest.mark.parametrize("wrapped", [65536, 2 * 65536])
async def test_a_port_past_65535_does_not_reach_its_low_16_bits(
    wrapped: int, smtpd: RecordingServer, connect: Connect
) -> None:
    with pytest.raises(smtpmail.InvalidArgument, match="out of range"):
        async with connect(smtpd.port + wrapped) as client:
            await client.send(MSG, "a@example.org", ["b@example.org"])
    assert smtpd.messages == []


def test_the_one_shot_helpers_do_not_reach_the_low_16_bits(smtpd: RecordingServer) -> None:
    port = smtpd.port + 65536
    with pytest.raises(smtpmail.InvalidArgument):
        smtpmail.send(MSG, "a@example.org", ["b@example.org"], port=port)
    with pytest.raises(smtpmail.InvalidArgument):
        asyncio.run(smtpmail.send_async(MSG, "a@example.org", ["b@example.org"], port=port))
    assert smtpd.messages == []


@pytest.mark.parametrize("port", [0, -1, "25", 25.0, True, None])
def test_a_port_that_is_not_one_is_an_input_error(port: Any) -> None:
    for make in (smtpmail.Client, smtpmail.AsyncClient):
        with pytest.raises(smtpmail.InvalidArgument) as info:
            make("127.0.0.1", port)
        assert info.value.is_permanent


def test_deliver_and_the_outbox_worker_check_the_port_first(tmp_path: Path) -> None:
    # deliver(): before any DNS lookup (no resolver is reachable from here).
    with pytest.raises(smtpmail.InvalidArgument):
        smtpmail.deliver(MSG, "a@example.org", ["b@example.org"], port=70000)
    with pytest.raises(smtpmail.InvalidArgument):
        Worker(Outbox(tmp_path), "127.0.0.1", 70000)


BAD_TIMEOUTS = [
    0,
    -1,
    float("nan"),
    float("inf"),
    "5",
    True,
    object(),
]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=lambda t: type(t).__name__ + str(t)[:8])
async def test_a_timeout_that_is_not_a_wait_is_an_input_error(
    timeout: Any, smtpd: RecordingServer, connect: Connect
) -> None:
    opened = len(smtpd.wire)
    with pytest.raises(smtpmail.InvalidArgument, match="timeout") as info:
        async with connect(smtpd.port, timeout=timeout) as client:
            await client.send(MSG, "a@example.org", ["b@example.org"])
    assert info.value.is_permanent
    assert len(smtpd.wire) == opened  # no connection was opened
    assert smtpd.messages == []


@pytest.mark.parametrize("field", ["connect", "greeting", "command", "data_block", "data_end"])
def test_each_wait_of_timeouts_is_checked(field: str) -> None:
    with pytest.raises(smtpmail.InvalidArgument, match=field):
        Timeouts(**{field: -5})
    with pytest.raises(smtpmail.InvalidArgument, match=field):
        Timeouts().replace(**{field: float("nan")})


@pytest.fixture
def auth_server() -> Iterator[RecordingServer]:
    """aiosmtpd offering AUTH PLAIN and LOGIN in clear text (loopback), taking any."""

    def accept(*_: object) -> AuthResult:
        return AuthResult(success=True)

    with RecordingServer(authenticator=accept, auth_require_tls=False) as server:
        yield server


@pytest.mark.parametrize(
    "auth",
    [
        lambda: ("me", b"s3cr3t-bytes"),
        lambda: ("me", "s3cr3t\0nul"),
        lambda: ("me", 1234),
        lambda: smtpmail.Credentials("me", token="s3cr3t\x01tok"),
    ],
    ids=["bytes", "NUL", "int", "token-^A"],
)
async def test_a_secret_that_cannot_be_sent_is_refused_before_connecting(
    auth: Any, auth_server: RecordingServer, connect: Connect
) -> None:
    # Before: found when AUTH was about to go, after connecting (and a bytes
    # password was an AuthenticationError about "the password callable").
    opened = len(auth_server.wire)
    with pytest.raises(smtpmail.InvalidArgument) as info:
        async with connect(auth_server.port, tls="none", auth=auth()) as client:
            await client.send(MSG, "a@example.org", ["b@example.org"])
    assert "s3cr3t" not in str(info.value)
    assert len(auth_server.wire) == opened
    assert auth_server.messages == []


async def test_send_many_names_an_item_that_is_not_an_envelope_pair(
    smtpd: RecordingServer, connect: Connect
) -> None:
    # Before: AttributeError: 'str' object has no attribute 'needs_smtputf8'.
    envelope = smtpmail.Envelope("a@example.org", ["b@example.org"])
    results: list[smtpmail.SendResult] = []
    async with connect(smtpd.port) as client:
        with pytest.raises(TypeError, match=r"\(Envelope, message\) pairs"):
            await client.send_many([(envelope, MSG), ("a@example.org", MSG)], results=results)
    # Items are taken lazily: the one before it went, and its result says so.
    assert [r.ok for r in results] == [True]
    assert [m.content for m in smtpd.messages] == [MSG]
