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

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpmail.outbox import Outbox, State, Worker
from support.cuedserver import Conn, CuedServer
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


def _hold(conn: Conn) -> None:
    """Keep the connection open, answering nothing, until the client goes away."""
    while True:
        conn.sock.settimeout(None)
        if not conn.sock.recv(65536):
            return


def _before_data_reply(reached: threading.Event) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL FROM:", b"250 ok\r\n")
        conn.expect(b"RCPT TO:", b"250 ok\r\n")
        conn.expect(b"DATA")
        reached.set()
        _hold(conn)

    return script


def _mid_data(reached: threading.Event) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL FROM:", b"250 ok\r\n")
        conn.expect(b"RCPT TO:", b"250 ok\r\n")
        conn.expect(b"DATA", b"354 go ahead\r\n")
        conn.line()  # the data has started; now read no more of it
        reached.set()
        conn.sock.settimeout(None)
        conn.sock.recv(1)  # blocks: never more than a byte, the buffers stay full

    return script


def _after_final_dot(reached: threading.Event) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo()
        conn.expect(b"MAIL FROM:", b"250 ok\r\n")
        conn.expect(b"RCPT TO:", b"250 ok\r\n")
        conn.expect(b"DATA", b"354 go ahead\r\n")
        conn.data()
        reached.set()
        _hold(conn)

    return script


CHUNKING = b"250-scripted.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"


def _octets(conn: Conn, n: int) -> bytes:
    while len(conn.buf) < n:
        chunk = conn.sock.recv(65536)
        if not chunk:
            raise EOFError
        conn.buf += chunk
    data, conn.buf = conn.buf[:n], conn.buf[n:]
    return data


def _mid_bdat(reached: threading.Event) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo(CHUNKING)
        conn.expect(b"MAIL FROM:", b"250 ok\r\n")
        conn.expect(b"RCPT TO:", b"250 ok\r\n")
        header = conn.expect(b"BDAT ")
        assert not header.upper().endswith(b" LAST"), header
        reached.set()
        conn.sock.settimeout(None)
        conn.sock.recv(1)  # blocks: no reply, no more reading; the client stalls

    return script


def _after_bdat_last(reached: threading.Event) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.greet_and_ehlo(CHUNKING)
        conn.expect(b"MAIL FROM:", b"250 ok\r\n")
        conn.expect(b"RCPT TO:", b"250 ok\r\n")
        while True:
            words = conn.expect(b"BDAT ").split()
            _octets(conn, int(words[1]))
            if len(words) > 2:  # LAST
                break
            conn.send(b"250 chunk ok\r\n")
        reached.set()
        _hold(conn)

    return script


SCENARIOS = {
    # point: (the script, the message size, marked possibly delivered?)
    "before-data-reply": (_before_data_reply, 0, False),
    "mid-data": (_mid_data, BIG, False),
    "after-final-dot": (_after_final_dot, 0, True),
    "mid-bdat": (_mid_bdat, BIG, False),
    "after-bdat-last": (_after_bdat_last, 0, True),
}


@pytest.fixture(params=["folder", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return str(tmp_path / "outbox")
    url = str(request.getfixturevalue("pg_url"))
    with Outbox(url) as box:
        box.migrate()
    return url


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
    with CuedServer(make_script(reached)) as held:
        command = [sys.executable, "-c", WORKER, location, str(held.port)]
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            assert reached.wait(60), "the worker never reached the server's holding point"
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

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
