"""A reader that leaves early (`smtpmail send --json | head`) never changes the exit status.

The real console script, its standard output a pipe whose reading end is
already closed, so every write finds it broken (EPIPE). Before, the
BrokenPipeError became exit 75 ("temporary failure"), and a cron job or
script that retries on 75 sent a delivered message twice.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from smtpmail.cli import exits
from support.clirun import console_script
from support.servers import RecordingServer


def _run(stdout: int, *args: str) -> tuple[int, str]:
    """The console script with ``stdout`` (a descriptor) as its standard output."""
    done = subprocess.run(
        [console_script(), *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


def _run_with_closed_stdout(*args: str) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before a byte was written
    try:
        return _run(write_end, *args)
    finally:
        os.close(write_end)


MESSAGE = ("--from", "alice@example.org", "--to", "bob@example.net", "--body", "hello")


@pytest.mark.parametrize("extra", [(), ("--json",), ("-v",)])
def test_a_sent_message_exits_0_though_nobody_read_the_report(
    smtpd: RecordingServer, extra: tuple[str, ...]
) -> None:
    status, stderr = _run_with_closed_stdout(
        "send", "--server", f"smtp://{smtpd.host}:{smtpd.port}", *MESSAGE, *extra
    )
    assert status == exits.EX_OK, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr, stderr
    assert len(smtpd.messages) == 1


def test_dry_run_into_a_closed_pipe_is_not_a_failure() -> None:
    status, stderr = _run_with_closed_stdout("send", "--dry-run", *MESSAGE)
    assert status == exits.EX_OK, stderr
    assert stderr == ""


def test_a_failure_keeps_its_status_when_nobody_reads() -> None:
    status, stderr = _run_with_closed_stdout(
        "send", "--server", "smtp://127.0.0.1:1", *MESSAGE, "--json"
    )
    assert status == exits.EX_TEMPFAIL
    assert "Broken pipe" not in stderr, stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_sent_message_exits_0_though_its_report_found_the_disk_full(
    smtpd: RecordingServer,
) -> None:
    """`--json > file` on a full disk: the mail went, so the status says so
    (a retry would send it twice), and standard error says the report is cut."""
    server = f"smtp://{smtpd.host}:{smtpd.port}"
    with open("/dev/full", "w") as full:
        status, stderr = _run(full.fileno(), "send", "--server", server, *MESSAGE, "--json")
    assert status == exits.EX_OK, stderr
    assert "Traceback" not in stderr, stderr
    assert len(smtpd.messages) == 1
    assert "cannot write the output (No space left on device)" in stderr
