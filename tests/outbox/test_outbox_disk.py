"""The outbox on a full disk: every failure to write it is said, with a non-zero exit.

The disk is made full for one process with RLIMIT_FSIZE (tests/support/diskfull.py):
real write(2) failures from the kernel, no monkeypatching. ``smtpmail queue
run`` exits 75 without a traceback, names the message and the reason, stops
the run, and leaves every message so that the next run sends it correctly
(tests/delivery/test_outbox_direct.py runs the same check through MX hosts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smtpmail.cli.exits import exit_status
from smtpmail.errors import OutboxError
from smtpmail.outbox import Outbox
from support.diskfull import LONG_REPLY, check_full_disk_then_space, run_smtpmail
from support.hostile.scripted import ScriptedServer, plain
from support.servers import free_port

pytestmark = pytest.mark.timeout(300)


def _fill(box: Outbox, n: int) -> None:
    for i in range(n):
        box.add(
            f"Subject: message {i}\r\n\r\nbody {i}\r\n".encode(), "a@example.org", [f"r{i}@x.org"]
        )


@pytest.mark.parametrize("fault", ["mark", "outcome"])
def test_queue_run_on_a_full_disk(tmp_path: Path, fault: str) -> None:
    _fill(Outbox(tmp_path), 5)
    with ScriptedServer(plain(data_reply=LONG_REPLY)) as server:
        check_full_disk_then_space(
            tmp_path, fault, ["--port", str(server.port)], lambda: list(server.messages)
        )


@pytest.mark.parametrize("command", ["queue add", "send --queue"])
def test_queueing_on_a_full_disk(tmp_path: Path, command: str) -> None:
    queue = tmp_path / "q"
    Outbox(queue)  # the folder exists; the files cannot be written
    if command == "queue add":
        argv = ["queue", "--queue-dir", str(queue), "add", "-f", "a@example.org", "b@example.net"]
    else:  # the server is never reached: nothing is queued
        argv = ["send", "--queue", "--queue-dir", str(queue), "--port", str(free_port())]
        argv += ["--from", "a@example.org", "--to", "b@example.net", "--body", "x"]
    proc = run_smtpmail(argv, file_limit=1, stdin=b"Subject: hi\r\n\r\nbody\r\n")
    assert proc.returncode == 75, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"smtpmail: cannot write {queue}/messages/")
    assert line.endswith("File too large (EFBIG)")
    assert Outbox(queue).ids() == [] and list((queue / "messages").iterdir()) == []


def test_an_outbox_that_cannot_be_created(tmp_path: Path) -> None:
    """A folder that can never be made (a file is in the way): 73, EX_CANTCREAT."""
    (tmp_path / "file").write_text("")
    queue = tmp_path / "file" / "q"
    proc = run_smtpmail(["queue", "--queue-dir", str(queue), "add", "b@example.net"])
    assert proc.returncode == 73, proc.stderr
    assert proc.stderr == f"smtpmail: cannot write {queue}/messages: Not a directory (ENOTDIR)\n"


def test_outbox_errors_map_to_exit_statuses() -> None:
    import errno

    assert exit_status(OutboxError("full", errno=errno.ENOSPC)) == (75, "full")
    assert exit_status(OutboxError("io", errno=errno.EIO)) == (75, "io")
    assert exit_status(OutboxError("ro", errno=errno.EROFS)) == (73, "ro")
    assert exit_status(OutboxError("perm", errno=errno.EACCES)) == (73, "perm")


def test_a_message_that_cannot_be_read_is_not_an_outbox_error(tmp_path: Path) -> None:
    """The outbox reports its own writes; a failing input is the caller's error."""
    import errno
    import io

    class Failing(io.RawIOBase):
        """The header block reads; the body then fails (while the .eml is written)."""

        served = False

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            if self.served:
                raise OSError(errno.EIO, "the input broke")
            self.served = True
            head = b"Subject: x\r\n\r\nthe start of the body\r\n"
            buffer[: len(head)] = head
            return len(head)

    box = Outbox(tmp_path)
    with pytest.raises(Exception) as caught:
        box.add(Failing(), "a@example.org", ["b@example.net"])
    assert not isinstance(caught.value, OutboxError)
    assert "the input broke" in str(caught.value)
    assert box.ids() == [] and list(box.dir.iterdir()) == []
