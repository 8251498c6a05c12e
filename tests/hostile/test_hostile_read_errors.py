"""A message source that fails to read: a typed, permanent MessageReadError, never ConnectionLost.

The file object or chunk iterator is the caller's own (here: one whose read()
raises OSError after some bytes); the servers are real (aiosmtpd) or scripted
(to see the BDAT path and exactly what crossed the wire). Each time the error
says so, is not transient and not "possibly delivered", and no server got a
message. A source that fails at once fails while its header section is read
ahead (for the Bcc rule), before any byte of the transaction: the connection
stays in step and usable. One that fails midway fails during the data: the
client closed the connection (the data could not be ended).
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import smtpmail
from smtpmail.outbox import Outbox, State, Worker
from support.harness import Connect, drive, op
from support.hostile.scripted import DEFAULT_EHLO, ScriptedServer, respond
from support.servers import RecordingServer

LINE = b"x" * 76 + b"\r\n"
NEXT = b"Subject: next\r\n\r\nthe next message\r\n"


class FailingFile:
    """A binary file whose read() raises EIO once ``good`` bytes were read."""

    def __init__(self, good: int) -> None:
        self.data = (b"Subject: failing\r\n\r\n" + LINE * (good // len(LINE) + 1))[:good]
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.data):
            raise OSError(errno.EIO, "Input/output error")
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def failing_chunks(good_chunks: int) -> Iterator[bytes]:
    yield b"Subject: failing\r\n\r\n"
    for _ in range(good_chunks):
        yield LINE * 1000
    raise OSError(errno.EIO, "Input/output error")


SOURCES: dict[str, Callable[[], object]] = {
    "file-first-read": lambda: FailingFile(0),
    "file-midway": lambda: FailingFile(700_000),  # after two 256 KiB blocks
    "iterator-first": lambda: failing_chunks(0),
    "iterator-midway": lambda: failing_chunks(5),
}


def check(err: BaseException) -> None:
    assert isinstance(err, smtpmail.MessageReadError), repr(err)
    assert not isinstance(err, smtpmail.TransportError)
    assert "reading the message failed" in str(err)
    assert not err.is_transient and err.is_permanent
    assert not getattr(err, "possibly_delivered", False)
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.EIO


@pytest.mark.parametrize("source", list(SOURCES))
async def test_aiosmtpd_gets_no_message_and_the_client_closes(
    smtpd: RecordingServer, connect: Connect, source: str
) -> None:
    client = connect(smtpd.port)
    await client.connect()
    with pytest.raises(smtpmail.MessageReadError) as info:
        await client.send(SOURCES[source](), "a@example.org", ["b@example.org"])
    check(info.value)
    midway = source.endswith("midway")
    # Midway, the data could not be ended: the connection is closed. At once,
    # nothing of the transaction went out, and the connection is still in step.
    assert client.is_connected is not midway
    # The client goes on (on a new connection when it had to close); the server
    # got that message only.
    assert (await client.send(NEXT, "a@example.org", ["b@example.org"])).ok
    await client.quit()
    assert len(smtpd.messages) == 1 and b"the next message" in smtpd.messages[0].content
    first = bytes(next(w for w in smtpd.wire if w))
    if midway:
        assert b"DATA\r\n" in first and b"\r\n.\r\n" not in first
        assert LINE in first  # part of the data went out before the error
    else:
        assert b"the next message" in first  # the failing message sent no MAIL


async def test_send_many_keeps_the_results_before_the_read_error(
    smtpd: RecordingServer, connect: Connect
) -> None:
    env = smtpmail.Envelope("a@example.org", ["b@example.org"])
    items = [(env, NEXT), (env, FailingFile(700_000)), (env, NEXT)]
    client = connect(smtpd.port)
    with pytest.raises(smtpmail.MessageReadError) as info:
        await client.send_many(items)
    check(info.value)
    assert not client.is_connected
    results = info.value.results
    assert results[0].ok and len(results) == 2  # the third was never started
    assert len(smtpd.messages) == 1


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_scripted_server_sees_the_data_cut_and_the_connection_closed(
    kind: str, chunking: bool, source: str
) -> None:
    keywords = (*DEFAULT_EHLO, b"CHUNKING") if chunking else DEFAULT_EHLO
    send = op("send", SOURCES[source](), "a@example.org", ["b@example.org"])
    with ScriptedServer([respond(keywords)]) as server:
        outcome = drive(kind, server.port, [op("connect"), send])
        assert outcome.error is not None
        check(outcome.error)
        conn = server.conn()
        if "midway" in source:
            assert outcome.released, "the client kept its socket after a half-sent message"
            assert server.client_closed()
    assert conn.data == []  # no end of data, no BDAT LAST: no message
    wire = bytes(conn.received)
    if "midway" not in source:
        assert b"MAIL FROM" not in wire  # failed reading ahead: nothing of it went out
    assert b" LAST" not in wire and b"\r\n.\r\n" not in wire and b"QUIT" not in wire
    assert (b"BDAT " in wire) if chunking and "midway" in source else True


def test_the_outbox_defers_an_unreadable_message_and_keeps_the_server(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    """A queued .eml that cannot be read (EIO) is deferred with that reason; it is
    not a broken connection, so three of them do not make the server "dead" for
    the messages after them."""
    if not _proc_mem_gives_eio():
        pytest.skip("needs /proc/self/mem (reading offset 0 gives EIO)")
    box = Outbox(tmp_path)
    ids = [box.add(NEXT, "a@example.org", [f"r{i}@example.net"]).id for i in range(6)]
    unreadable = ids[1:4]
    for msg_id in unreadable:
        path = box.eml_path(msg_id)
        path.unlink()
        path.symlink_to("/proc/self/mem")  # opens fine; read() gives EIO
    stats = Worker(box, port=smtpd.port, connections=1, per_server=1, batch=1).run()
    assert stats.delivered == 3
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == [
        "r0@example.net", "r4@example.net", "r5@example.net",
    ]  # fmt: skip
    for msg_id in unreadable:
        msg = box.load(msg_id)
        (r,) = msg.recipients
        assert r.state is State.DEFERRED, r
        assert r.reply is not None and "reading the message failed" in r.reply
        assert not r.possibly_delivered and msg.possible_duplicates == 0


def _proc_mem_gives_eio() -> bool:
    try:
        with open("/proc/self/mem", "rb") as f:
            f.read(1)
    except OSError as exc:
        return exc.errno == errno.EIO
    return False


def test_a_cli_send_of_an_unreadable_message_exits_66(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """The CLI: "an input file cannot be read" (66), not "temporary failure" (75)."""
    if not _proc_mem_gives_eio():
        pytest.skip("needs /proc/self/mem (reading offset 0 gives EIO)")
    from support.clirun import run_cli

    message = tmp_path / "message.eml"
    os.symlink("/proc/self/mem", message)
    done = run_cli(
        "send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org",
        "--message", str(message),
    )  # fmt: skip
    assert done.status == 66, done.stderr
    assert "reading the message failed" in done.stderr
    assert smtpd.messages == []


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@pytest.mark.parametrize("source", ["file-first-read", "iterator-first"])
def test_a_failing_next_source_does_not_cut_the_message_before_it(
    kind: str, chunking: bool, source: str
) -> None:
    """With PIPELINING the next message is read ahead (for the Bcc rule) while the
    one before it is under way, to send its commands with that one's end of
    data. Its read error is raised once that message has ended: it is
    delivered, and its result is complete."""
    keywords = (*DEFAULT_EHLO, b"CHUNKING") if chunking else DEFAULT_EHLO
    env = smtpmail.Envelope("a@example.org", ["b@example.org"])
    items = [(env, NEXT), (env, SOURCES[source]())]
    with ScriptedServer([respond(keywords)]) as server:
        outcome = drive(kind, server.port, [op("connect"), op("send_many", items)])
        conn = server.conn()
    assert outcome.error is not None
    check(outcome.error)
    (first,) = outcome.error.results
    assert first.ok and first.reply is not None and first.reply.code == 250
    assert len(conn.data) == 1 and b"the next message" in conn.data[0].raw


class SeekOnceFile(io.BytesIO):
    """A seekable file that cannot seek once it was read (a device gone away)."""

    def seek(self, pos: int, whence: int = 0) -> int:
        if self.tell():
            raise OSError(errno.EIO, "Input/output error")
        return super().seek(pos, whence)


async def test_a_file_that_cannot_seek_back_for_a_further_transaction(
    smtpd: RecordingServer, connect: Connect
) -> None:
    """Recipients over the server's limit get the file again from its start; a seek
    that fails then is the source failing (MessageReadError), not the connection."""
    smtpd.handler.rcpt_limit = 1
    client = connect(smtpd.port)
    with pytest.raises(smtpmail.MessageReadError) as info:
        await client.send(SeekOnceFile(NEXT), "a@example.org", ["b@example.org", "c@example.org"])
    check(info.value)
    (result,) = info.value.results
    assert result.recipients["b@example.org"].accepted  # the first transaction delivered
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.org"]]
