"""The "end of data sent" mark on the paths that read the message to its end
before the first byte goes out: DKIM signing, the 8-bit downgrade, and direct
delivery (``deliver()`` reads it once for every domain). Both stores.

As in test_outbox_endmark.py, a worker process sends one queued message to a
scripted server that holds the connection at a chosen point, is killed with
SIGKILL, and a second worker drains the queue to real aiosmtpd servers. The
scripted server offers CHUNKING without PIPELINING, so the client waits for
each chunk's reply: held after a first chunk that is not ``LAST``, the
message body has started and its end of data has not left (a plain retry);
held after ``BDAT ... LAST``, it may have been delivered (possibly delivered).

In direct delivery each domain's end of data adds its own recipients to the
mark: killed while one domain's transaction is done and another's is held
before its end, only the first domain's recipient is possibly delivered.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from smtpmail.outbox import Outbox, State, Worker
from support.delivery.mxworld import OK, OK2, MXWorld
from support.dkimcheck import key_file, make_key
from support.hostile.scripted import Conn, ScriptedServer, Step, call, ehlo_reply
from support.postfix import wait_for
from support.servers import RecordingServer

pytestmark = pytest.mark.timeout(240)

WORKER = textwrap.dedent(
    """
    import json, sys
    from smtpmail.message.dkim import DKIMKey
    from smtpmail.outbox import Outbox
    from smtpmail.outbox.worker import Worker
    location, port, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    box = Outbox(location, **({"lease": 1.0} if location.startswith("postgresql") else {}))
    if "dkim" in options:
        options["dkim"] = DKIMKey.from_file(*options["dkim"])
    if "direct" in options:
        options["direct"]["nameservers"] = [tuple(n) for n in options["direct"]["nameservers"]]
    Worker(box, port=port, connections=1, batch=1, **options).run()
    """
)

#: Four BDAT chunks of the default 256 KiB: the first is not LAST.
LINE = b"x" * 998 + b"\r\n"
BODY = LINE * 1000
EIGHT_BIT = (
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
)


def _hold_bdat(reached: threading.Event, *, after_last: bool) -> Step:
    """Answer EHLO (CHUNKING, no PIPELINING, no 8BITMIME), MAIL and RCPT; then
    read BDAT chunks and hold the connection, answering and reading nothing
    more: after the first chunk, or (``after_last``) after ``BDAT ... LAST``."""

    async def step(conn: Conn) -> None:
        while (line := await conn.readline()) is not None:
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb == b"EHLO":
                await conn.write(ehlo_reply((b"CHUNKING",)))
            elif verb in (b"MAIL", b"RCPT"):
                await conn.write(b"250 2.0.0 ok\r\n")
            elif verb == b"BDAT":
                await conn.readexactly(int(words[1]))
                last = len(words) > 2
                if last and not after_last:
                    conn.errors.append("the first chunk was LAST: the message is too small")
                if last or not after_last:
                    reached.set()
                    # No reply: the client, waiting for one, sends nothing more
                    # (no PIPELINING) until it is killed.
                    while await conn.fill(timeout=3600):
                        pass
                    return
                await conn.write(b"250 2.0.0 chunk ok\r\n")
            else:
                conn.errors.append(f"unexpected {line!r}")
                return

    return call(step)


def _kill_at(server: ScriptedServer, reached: threading.Event, command: list[str]) -> None:
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        assert reached.wait(120), "the worker never reached the server's holding point"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not any(c.errors for c in server.connections), [c.errors for c in server.connections]


def _worker(location: str, port: int, options: dict[str, Any]) -> list[str]:
    return [sys.executable, "-c", WORKER, location, str(port), json.dumps(options)]


def _drain(box: Outbox, msg_id: str, **options: Any) -> None:
    def drained() -> bool:
        Worker(box, connections=1, **options).run()
        return box.load(msg_id).done

    wait_for("the next worker to take the message over", drained, limit=120)


TRANSFORMS = ["dkim", "convert-8bit"]
POINTS = {"after-first-chunk": False, "after-bdat-last": True}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_transformed_message_is_possibly_delivered_only_after_its_final_dot(
    location: str, transform: str, point: str, smtpd: RecordingServer, tmp_path: Path
) -> None:
    """DKIM signing and the 8-bit downgrade read the stored copy to its end
    before the first byte goes out; the mark still waits for the end of the
    stream sent."""
    after_last = POINTS[point]
    box = Outbox(location)
    options: dict[str, Any]
    if transform == "dkim":
        key = make_key(tmp_path, "ed25519-sha256")
        options = {"dkim": [key.selector, key.domain, str(key_file(tmp_path, "ed25519-sha256"))]}
        content = b"From: a@example.org\r\nSubject: held\r\n\r\n" + BODY
    else:
        options = {"convert_8bit": True}
        content = b"Subject: held\r\n" + EIGHT_BIT + b"\r\n" + ("é" * 400 + "\r\n").encode() * 1300
    queued = box.add(content, "a@example.org", ["r@example.org"])
    reached = threading.Event()
    with ScriptedServer([_hold_bdat(reached, after_last=after_last)]) as held:
        _kill_at(held, reached, _worker(location, held.port, options))
    if transform == "dkim":
        options["dkim"] = key
    _drain(box, queued.id, port=smtpd.port, **options)
    record = box.load(queued.id)
    (recipient,) = record.recipients
    assert recipient.state is State.DELIVERED
    assert recipient.possibly_delivered is after_last
    assert record.possible_duplicates == (1 if after_last else 0)
    (received,) = smtpd.messages
    assert received.content.startswith(b"DKIM-Signature:") is (transform == "dkim")


def _direct(world: MXWorld) -> dict[str, Any]:
    return {"nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False}


@pytest.mark.parametrize("point", list(POINTS))
def test_direct_delivery_is_possibly_delivered_only_after_the_final_dot(
    location: str, point: str, world: MXWorld
) -> None:
    after_last = POINTS[point]
    box = Outbox(location)
    queued = box.add(b"Subject: direct\r\n\r\n" + BODY, "a@sender.test", ["x@other.test"])
    reached = threading.Event()
    script = [_hold_bdat(reached, after_last=after_last)]
    with ScriptedServer(script, host=world.ip(OK2), port=25) as held:
        _kill_at(held, reached, _worker(location, 0, {"direct": _direct(world)}))
    with RecordingServer(world.ip(OK2), 25) as mx:
        _drain(box, queued.id, direct=_direct(world))
        assert len(mx.messages) == 1
    record = box.load(queued.id)
    (recipient,) = record.recipients
    assert recipient.state is State.DELIVERED
    assert recipient.possibly_delivered is after_last
    assert record.possible_duplicates == (1 if after_last else 0)


def test_direct_delivery_marks_the_recipients_of_each_domain_whose_final_dot_left(
    location: str, world: MXWorld
) -> None:
    """implicit.test's transaction ends (its final dot left, 250) while
    other.test's is held before its end: killed then, the worker leaves
    implicit.test's recipient possibly delivered and other.test's a plain retry."""
    box = Outbox(location)
    rcpts = ["good@implicit.test", "x@other.test"]
    queued = box.add(b"Subject: direct\r\n\r\n" + BODY, "a@sender.test", rcpts)
    reached = threading.Event()
    script = [_hold_bdat(reached, after_last=False)]
    with RecordingServer(world.ip(OK), 25) as ok:
        with ScriptedServer(script, host=world.ip(OK2), port=25):
            command = _worker(location, 0, {"direct": _direct(world)})
            proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
            try:
                wait_for("implicit.test's message", lambda: len(ok.messages) == 1, limit=120)
                assert reached.wait(120), "the worker never reached other.test's holding point"
                assert proc.poll() is None
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        with RecordingServer(world.ip(OK2), 25) as mx:
            _drain(box, queued.id, direct=_direct(world))
            assert [m.rcpt_tos for m in mx.messages] == [["x@other.test"]]
        # implicit.test's recipient was possibly delivered: retried, a duplicate.
        assert [m.rcpt_tos for m in ok.messages] == [["good@implicit.test"]] * 2
    record = box.load(queued.id)
    marked = {r.address: r.possibly_delivered for r in record.recipients}
    assert marked == {"good@implicit.test": True, "x@other.test": False}
    assert all(r.state is State.DELIVERED for r in record.recipients)
    assert record.possible_duplicates == 1
