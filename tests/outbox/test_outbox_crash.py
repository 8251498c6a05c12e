"""Crash safety and concurrency of the outbox, with real worker processes.

* A worker draining 1,000 messages to a real aiosmtpd server is killed with
  SIGKILL at random points and restarted until the queue is done: every
  message ends delivered, none is lost, and every message the server got
  more than once is one the outbox recorded as possibly delivered.
* Two workers drain one queue at the same time: no message is sent twice.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtpmail.outbox import Outbox
from support.servers import RecordingServer

_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE)


def _fill(box: Outbox, n: int) -> None:
    for i in range(n):
        box.add(
            f"Subject: message {i}\r\n\r\nbody {i}\r\n".encode(), "a@example.org", [f"r{i}@x.org"]
        )


def _worker(queue: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "smtpmail", "queue", "--queue-dir", str(queue), "run"]
    command += ["--port", str(port), "--connections", "2", "--batch", "20", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _received(server: RecordingServer) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for m in list(server.messages):
        found = _MESSAGE_ID.search(m.content)
        assert found is not None
        counts[found.group(1).decode()] += 1
    return counts


@pytest.mark.timeout(300)  # 1,000 fsync-ed messages and a dozen restarts on a busy CI machine
def test_sigkilled_worker_loses_nothing_and_counts_its_duplicates(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path)
    total = 1000
    _fill(box, total)
    seed = int(os.environ.get("SMTPMAIL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    kills = runs = 0
    while runs < 300:
        runs += 1
        proc = _worker(tmp_path, smtpd.port, "--quiet")
        # Kill it after a random number of messages reached the server (plus a
        # random few milliseconds), so the kills land in the middle of the drain.
        target = len(smtpd.messages) + rng.randint(1, 120)
        for _ in range(30000):  # a bound (a minute), not a timing assertion
            if proc.poll() is not None or len(smtpd.messages) >= target:
                break
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        if all(m.done for m in box.messages()):
            break
    messages = list(box.messages())
    received = _received(smtpd)
    duplicates = {mid: n - 1 for mid, n in received.items() if n > 1}
    flagged = {m.message_id: m.possible_duplicates for m in messages if m.possible_duplicates}
    print(
        f"\nseed {seed}: {runs} runs, {kills} SIGKILLs, {len(smtpd.messages)} messages received,"
        f" {sum(duplicates.values())} duplicates, {len(flagged)} messages flagged"
    )
    assert kills >= 3, f"seed {seed}: the kills did not interrupt the drain"
    assert len(messages) == total
    assert all(m.done and m.status == "delivered" for m in messages), f"seed {seed}"
    # None lost: the server holds every message at least once...
    assert {m.message_id for m in messages} == set(received)
    # ...and each extra copy is one the outbox knew it may have caused.
    for mid, extra in duplicates.items():
        assert flagged.get(mid, 0) >= extra, f"seed {seed}: {mid} duplicated unflagged"


@pytest.mark.timeout(300)
def test_two_workers_on_one_queue_never_send_a_message_twice(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path)
    total = 600
    _fill(box, total)
    workers = [_worker(tmp_path, smtpd.port) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    received = _received(smtpd)
    assert len(received) == total and set(received.values()) == {1}
    assert all(m.done and m.status == "delivered" for m in box.messages())
    # Both took part (each prints a line per message it sent), and together sent each once.
    sent = [
        sum(1 for line in out.splitlines() if "delivered" in line and "<" in line)
        for out in outputs
    ]
    assert all(n > 0 for n in sent) and sum(sent) == total, sent
