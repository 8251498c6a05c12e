"""The "end of data sent" mark decides, for both stores, whether a message whose
worker was killed mid-attempt is retried as possibly delivered (issue 16).

A worker process sends one queued message to a scripted server that holds the
connection at a chosen point; the worker is then killed with SIGKILL, and a
second worker drains the queue to a real aiosmtpd server:

* held before the final dot (no reply to DATA yet; or mid-data, the data
  flowing but the server no longer reading; or between BDAT chunks, before
  ``BDAT ... LAST``): the server discards such a transaction, so the retry
  is a plain one, not marked possibly delivered, and the message arrives once;
* held after the final dot (or ``BDAT ... LAST`` and its chunk), before its
  reply: the message may have been delivered, so the retry is marked
  possibly delivered.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from signal import SIGKILL

import pytest

from smtpmail.outbox import Outbox, State, Worker
from support.hostile.scripted import (
    Conn,
    ScriptedServer,
    Step,
    call,
    expect,
    hello,
    read_data,
    read_some,
    signal,
    stall,
)
from support.postfix import wait_for
from support.servers import RecordingServer

#: A worker that drains the queue once; with a database, a short lease, so
#: that the next worker takes the message over soon after the kill.
WORKER = textwrap.dedent(
    """
    import sys
    from smtpmail.outbox import Outbox
    from smtpmail.outbox.worker import Worker
    location = sys.argv[1]
    options = {"lease": 1.0} if location.startswith("postgresql") else {}
    Worker(Outbox(location, **options), port=int(sys.argv[2]), connections=1, batch=1).run()
    """
)

#: Bigger than loopback socket buffers on both sides together: a server that
#: stops reading stalls the client mid-data, long before the end of the stream.
BIG = 24 * 1024 * 1024  # (aiosmtpd, the next worker's server, takes up to 32 MiB)


EHLO = (b"PIPELINING", b"8BITMIME")
CHUNKING = (*EHLO, b"CHUNKING")
Script = list[Step]


def _until(verb: bytes, reply: bytes | None, keywords: tuple[bytes, ...] = EHLO) -> Script:
    return [
        *hello(keywords),
        expect(b"MAIL FROM:", b"250 ok\r\n"),
        expect(b"RCPT TO:", b"250 ok\r\n"),
        expect(verb, reply),
    ]


# After each script the server keeps the connection open, answering nothing,
# until the client goes away; stall() stops it reading as well.


def _before_data_reply(reached: threading.Event) -> Script:
    return [*_until(b"DATA", None), signal(reached)]


def _mid_data(reached: threading.Event) -> Script:
    # The data has started; now read no more of it: the buffers stay full.
    return [*_until(b"DATA", b"354 go ahead\r\n"), read_some(), signal(reached), stall()]


def _after_final_dot(reached: threading.Event) -> Script:
    return [*_until(b"DATA", b"354 go ahead\r\n"), read_data(reply=None), signal(reached)]


def _mid_bdat(reached: threading.Event) -> Script:
    async def not_last(conn: Conn) -> None:
        header = conn.lines[-1]
        if header.rstrip().upper().endswith(b" LAST"):
            conn.errors.append(f"a single chunk: {header!r}")

    # No reply to the first chunk, no more reading: the client stalls.
    return [*_until(b"BDAT ", None, CHUNKING), call(not_last), signal(reached), stall()]


def _after_bdat_last(reached: threading.Event) -> Script:
    async def chunks(conn: Conn) -> None:
        while (line := await conn.readline()) is not None:
            words = line.split()
            if words[:1] != [b"BDAT"] or await conn.readexactly(int(words[1])) is None:
                conn.errors.append(f"expected a BDAT chunk after {line!r}")
                return
            if len(words) > 2:  # LAST
                return
            await conn.write(b"250 chunk ok\r\n")

    return [
        *hello(CHUNKING),
        expect(b"RSET", b"250 ok\r\n"),  # (a small message: in the window of transactions)
        expect(b"MAIL FROM:", b"250 ok\r\n"),
        expect(b"RCPT TO:", b"250 ok\r\n"),
        call(chunks),
        signal(reached),
    ]


SCENARIOS = {
    # point: (the script, the message size, marked possibly delivered?)
    "before-data-reply": (_before_data_reply, 0, False),
    "mid-data": (_mid_data, BIG, False),
    "after-final-dot": (_after_final_dot, 0, True),
    "mid-bdat": (_mid_bdat, BIG, False),
    "after-bdat-last": (_after_bdat_last, 0, True),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("point", list(SCENARIOS))
def test_a_killed_worker_is_retried_as_possibly_delivered_only_after_its_final_dot(
    location: str, point: str, smtpd: RecordingServer
) -> None:
    make_script, size, possibly = SCENARIOS[point]
    box = Outbox(location)
    body = b"x" * 998 + b"\r\n"
    content = b"Subject: held\r\n\r\n" + body * (size // len(body) + 1)
    queued = box.add(content, "a@example.org", ["r@example.org"])
    reached = threading.Event()
    with ScriptedServer(make_script(reached)) as held:
        command = [sys.executable, "-c", WORKER, location, str(held.port)]
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            assert reached.wait(60), "the worker never reached the server's holding point"
            assert proc.poll() is None
        finally:
            proc.send_signal(SIGKILL)
            proc.wait()
        assert held.connections[0].errors == []

    def drained() -> bool:
        Worker(box, port=smtpd.port, connections=1).run()
        return box.load(queued.id).done

    wait_for("the next worker to take the message over", drained, limit=60)
    record = box.load(queued.id)
    (recipient,) = record.recipients
    assert recipient.state is State.DELIVERED
    assert recipient.possibly_delivered is possibly
    assert record.possible_duplicates == (1 if possibly else 0)
    assert len(smtpd.messages) == 1
    box.close()
