"""One client shared by many tasks or threads: operations are serialised, none is lost.

``asyncio.gather(client.send(a), client.send(b), ...)`` used to fail with
asyncio's "read() called while another coroutine is already waiting"; a
Client shared by threads interleaved their commands on one socket. Both now
take a lock per operation. Checked against aiosmtpd (no PIPELINING) and
Postfix's smtp-sink (PIPELINING): every message delivered exactly once, to
its own recipient, over one connection, with a refused recipient and NOOPs
in the mix that must not steal anyone's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

import smtpmail
from support.postfix import SmtpSink
from support.servers import RecordingServer

N = 20
REFUSED = "refused@example.org"


def _message(i: int) -> tuple[str, bytes]:
    return f"r{i}@example.org", f"Subject: {i}\r\n\r\nmessage number {i}\r\n".encode()


@contextmanager
def _server(name: str) -> Iterator[Any]:
    if name == "aiosmtpd":
        with RecordingServer() as server:
            server.handler.refuse = {REFUSED: "550 5.1.1 no such user"}
            yield server
    else:
        with SmtpSink() as sink:  # offers PIPELINING
            yield sink


def _delivered(server: Any) -> dict[str, bytes]:
    """Recipient -> content of every message the server took (a repeat fails the test)."""
    out: dict[str, bytes] = {}
    if isinstance(server, RecordingServer):
        pairs = [(m.rcpt_tos, m.content) for m in server.messages]
    else:
        pairs = [
            ([a.split(" ")[0].strip("<>") for a in m.rcpt_args], m.content)
            for m in server.messages(N)
        ]
    for rcpts, content in pairs:
        for rcpt in rcpts:
            assert rcpt not in out, f"{rcpt} got two messages"
            out[rcpt] = content
    return out


def _check(server: Any, results: list[Any]) -> None:
    sent = [r for r in results if isinstance(r, smtpmail.SendResult)]
    assert len(sent) == N and all(r.ok for r in sent), results
    noops = [r for r in results if isinstance(r, smtpmail.Reply)]
    assert noops and all(r.code == 250 for r in noops)
    got = _delivered(server)
    assert sorted(got) == sorted(_message(i)[0] for i in range(N))
    for i in range(N):  # each got its own message ("1\r" is not "10\r")
        content = got[_message(i)[0]].replace(b"\r\n", b"\n")
        assert f"message number {i}\n".encode() in content
    if isinstance(server, RecordingServer):
        refused = [r for r in results if isinstance(r, smtpmail.RecipientsRefused)]
        assert len(refused) == 1 and refused[0].code == 550
        assert len([w for w in server.wire if w]) == 1  # one connection for everything


@pytest.mark.parametrize(
    "server_name", ["aiosmtpd", pytest.param("smtp-sink", marks=pytest.mark.postfix)]
)
async def test_gather_on_one_async_client(server_name: str) -> None:
    with _server(server_name) as server:
        client = smtpmail.AsyncClient("127.0.0.1", server.port, ehlo_name="client.example")
        ops: list[Any] = []
        for i in range(N):
            rcpt, body = _message(i)
            ops.append(client.send(body, "a@example.org", [rcpt]))
            if i % 5 == 0:
                ops.append(client.noop())
        if server_name == "aiosmtpd":
            ops.append(client.send(b"x\r\n", "a@example.org", [REFUSED]))
        results = await asyncio.gather(*ops, return_exceptions=True)
        await client.quit()
        _check(server, results)


@pytest.mark.parametrize(
    "server_name", ["aiosmtpd", pytest.param("smtp-sink", marks=pytest.mark.postfix)]
)
def test_threads_on_one_client(server_name: str) -> None:
    with _server(server_name) as server:
        client = smtpmail.Client("127.0.0.1", server.port, ehlo_name="client.example")

        def one(i: int) -> Any:
            try:
                if i >= N:
                    if i == N and server_name == "aiosmtpd":
                        return client.send(b"x\r\n", "a@example.org", [REFUSED])
                    return client.noop()
                rcpt, body = _message(i)
                return client.send(body, "a@example.org", [rcpt])
            except smtpmail.SMTPError as exc:
                return exc

        with ThreadPoolExecutor(N + 5) as pool:
            results = list(pool.map(one, range(N + 5)))
        client.quit()
        _check(server, results)


async def test_send_many_and_send_from_two_tasks_do_not_interleave(
    smtpd: RecordingServer,
) -> None:
    """A batch holds the connection for its whole length; the single send waits."""
    env = smtpmail.Envelope("a@example.org", ["batch@example.org"])
    async with smtpmail.AsyncClient("127.0.0.1", smtpd.port, ehlo_name="c.example") as client:
        batch, single = await asyncio.gather(
            client.send_many([(env, b"Subject: b%d\r\n\r\nx\r\n" % i) for i in range(5)]),
            client.send(b"Subject: single\r\n\r\nx\r\n", "a@example.org", ["one@example.org"]),
        )
    assert all(r.ok for r in batch) and single.ok
    order = [m.rcpt_tos[0] for m in smtpd.messages]
    # The batch's five are consecutive, before or after the single send.
    assert order in (["batch@example.org"] * 5 + ["one@example.org"],
                     ["one@example.org"] + ["batch@example.org"] * 5)  # fmt: skip
