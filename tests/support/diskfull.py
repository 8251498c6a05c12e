"""A full disk for one process, without root or a special filesystem: RLIMIT_FSIZE.

A process whose file-size limit is N octets cannot make a file longer than
that: the write that would cross it fails with EFBIG (SIGXFSZ is ignored, so
the signal does not kill the process first), as a write to a full disk fails
with ENOSPC. Pipes and sockets are not limited, so the process still talks
to its servers and prints its errors. The limit is set by a small wrapper
that then execs ``python -m smtpmail``: no ``preexec_fn`` in a test process
that runs server threads.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from smtpmail.outbox import Outbox

_WRAPPER = (
    "import os, resource, signal, sys;"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
    "n = int(sys.argv[1]);"
    "n < 0 or resource.setrlimit(resource.RLIMIT_FSIZE, (n, n));"
    "os.execv(sys.executable, [sys.executable, '-m', 'smtpmail', *sys.argv[2:]])"
)
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE)

#: A long reply to the final dot makes the outcome's state file much larger
#: than the in-flight mark's, so a limit between the two lets the mark through
#: and stops the outcome.
LONG_REPLY = b"250 2.0.0 queued as " + b"x" * 400 + b"\r\n"


def run_smtpmail(
    argv: list[str], *, file_limit: int = -1, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    """``smtpmail ARGV`` in a process that cannot write a file past ``file_limit``
    octets (-1: no limit)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-c", _WRAPPER, str(file_limit), *argv]
    return subprocess.run(
        command,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def mark_size(box: Outbox, msg_id: str) -> int:
    """The size of a message's state file with an in-flight mark, as a worker writes it."""
    message = box.load(msg_id)
    message.inflight = {
        "since": time.time(),
        "pid": 4194304,
        "recipients": [r.address for r in message.pending],
    }
    scratch = Outbox(box.root / "scratch", fsync=False)
    scratch.save(message)
    return scratch.json_path(msg_id).stat().st_size


def message_ids(received: list[bytes]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for data in received:
        found = _MESSAGE_ID.search(data)
        assert found is not None, data[:200]
        counts[found.group(1).decode()] += 1
    return counts


def check_full_disk_then_space(
    queue: Path, fault: str, run_argv: list[str], received: Callable[[], list[bytes]]
) -> None:
    """Run ``smtpmail queue run`` on a full disk, then with space, and check both runs.

    ``fault`` is "mark" (not even the in-flight mark can be written) or
    "outcome" (the mark can, the outcome cannot). ``received`` returns the
    message data the server has read so far. The queue holds five messages.
    """
    box = Outbox(queue)
    ids = box.ids()
    assert len(ids) == 5
    limit = 1 if fault == "mark" else mark_size(box, ids[0]) + 100
    argv = ["queue", "--queue-dir", str(queue), "run", "--connections", "1", *run_argv]
    proc = run_smtpmail(argv, file_limit=limit)
    assert proc.returncode == 75, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    what = "cannot mark message" if fault == "mark" else "cannot record the outcome of message"
    assert last.startswith(f"smtpmail: {what} {ids[0]}"), proc.stderr
    assert f"cannot write {box.json_path(ids[0])}: File too large (EFBIG)" in last
    # Nothing was lost or recorded wrongly: every message that went out carries
    # the in-flight mark (the next run retries it as possibly delivered), the
    # others are as they were. And the run stopped at once.
    sent = set(message_ids(received()))
    messages = list(box.messages())
    assert len(messages) == 5 and not any(m.done for m in messages)
    assert {m.message_id for m in messages if m.inflight is not None} == sent
    untouched = [m for m in messages if m.inflight is None and m.attempts == 0]
    assert len(untouched) + len(sent) == 5 and len(untouched) >= 3
    assert (box.load(ids[0]).message_id in sent) is (fault == "outcome")
    # With space again: everything is delivered; each extra copy is one the
    # outbox recorded as a possible duplicate, with the same Message-ID.
    proc = run_smtpmail(argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = message_ids(received())
    for m in box.messages():
        assert m.done and m.status == "delivered", m
        extra = counts[m.message_id or ""] - 1
        assert m.possible_duplicates == extra, m
        assert all(r.possibly_delivered is (extra > 0) for r in m.recipients), m
    assert sum(counts.values()) == 5 + (fault == "outcome")
