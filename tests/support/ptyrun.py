"""Running the real ``smtpmail`` console script on a pseudo-terminal, as a user
at a keyboard does: standard input, output and error are the terminal, which is
also the controlling terminal (so getpass reads from it, echo off).

A conversation is a list of (text to wait for, bytes to type): each answer is
typed only once its cue has been printed, as a person would (getpass flushes
input typed before its prompt).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
from dataclasses import dataclass

from support.clirun import console_script

#: A bound against a hung child, not a timing assertion.
PATIENCE = 60.0


@dataclass
class PtyResult:
    status: int
    output: str  # everything the terminal showed (stdout and stderr together)


def run_in_pty(
    *argv: str,
    conversation: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
    environ: dict[str, str] | None = None,
    columns: int = 80,
) -> PtyResult:
    script = console_script()
    env = {**os.environ, **(environ or {})}
    env.pop("COLUMNS", None)  # the terminal's own size, as a user's shell has it
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        try:
            # The window size is set before the command starts: it never sees another.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
            os.execve(script, [script, *argv], env)
        finally:
            os._exit(127)
    seen = b""
    steps = list(conversation)
    finished = False
    try:
        while True:
            while steps and steps[0][0].encode() in seen:
                os.write(fd, steps.pop(0)[1])
            ready, _, _ = select.select([fd], [], [], PATIENCE)
            if not ready:
                raise AssertionError(f"the command went silent: {seen.decode(errors='replace')}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        finished = True
    finally:
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
        os.close(fd)
    assert not steps, f"never saw {steps[0][0]!r} in: {seen.decode(errors='replace')}"
    return PtyResult(os.waitstatus_to_exitcode(wait_status), seen.decode(errors="replace"))
