"""Running the real ``smtpmail`` command in a subprocess, and the CLI in-process.

The console script is the one installed next to this Python (a venv's bin/);
tests/conftest.py puts this checkout's src/ first on PYTHONPATH, so the
subprocess runs this checkout's code.
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from smtpmail.cli import Environment, main


def console_script() -> str:
    """The installed ``smtpmail`` script; a missing one is a broken install."""
    beside = Path(sys.executable).parent / "smtpmail"
    found = str(beside) if beside.exists() else shutil.which("smtpmail")
    assert found, "the smtpmail console script is not installed (pip install -e .)"
    return found


def fake_env(tmp_path: Path, argv: list[str] | None = None) -> Environment:
    """An Environment whose streams are in memory, with no terminal and no real config."""
    return Environment(
        argv=["smtpmail", *(argv or [])],
        stdin=io.StringIO(""),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        environ={},
        config_dir=tmp_path / "config",
        data_dir=tmp_path / "data",
    )


class LineReader:
    """Reads a subprocess's stdout in a thread, so a test can wait for a line
    with a bound instead of blocking forever on a silent process."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """Lines up to and including the first one containing ``text``."""
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"output ended before {text!r}: {''.join(self.lines)}")
            self.lines.append(line)
            if text in line:
                return line

    def rest(self, timeout: float = 30) -> str:
        """Everything up to the end of output (call after the process ends)."""
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        return "".join(self.lines)


@dataclass
class CLIResult:
    status: int
    stdout: str
    stderr: str


class _TTYStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(
    *argv: str,
    stdin: bytes = b"",
    environ: dict[str, str] | None = None,
    config_dir: Path | None = None,
    tty: bool = False,
) -> CLIResult:
    """Run ``smtpmail ARGV`` in-process: stdin as bytes, stdout/stderr captured."""
    out = io.StringIO()
    err: io.StringIO = _TTYStringIO() if tty else io.StringIO()
    env = Environment(
        argv=["smtpmail", *argv],
        stdin=io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
        stdout=out,
        stderr=err,
        environ=dict(environ or {}),
        config_dir=config_dir or Path("/nonexistent/smtpmail-test-config"),
        data_dir=Path("/nonexistent/smtpmail-test-data"),
    )
    status = main(list(argv), env)
    return CLIResult(status, out.getvalue(), err.getvalue())


def run_script(
    script: str,
    *argv: str,
    stdin: bytes = b"",
    environ: dict[str, str] | None = None,
    timeout: float = 60,
) -> CLIResult:
    """Run an installed console script (``smtpmail``, ``smtpmail-sendmail``) in a
    subprocess, as a user's shell does; ``environ`` adds to this process's own
    (which carries conftest's PYTHONPATH: this checkout's code runs)."""
    import os

    found = Path(console_script()).parent / script
    assert found.exists(), f"the {script} console script is not installed (pip install -e .)"
    done = subprocess.run(
        [str(found), *argv],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", **(environ or {})},
    )
    return CLIResult(
        done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8")
    )


def sendmail_cmd(tmp_path: Path) -> list[str]:
    """The installed smtpmail-sendmail script; in a checkout not yet installed, the same
    entry point through the interpreter."""
    found = shutil.which("smtpmail-sendmail")
    if found:
        return [found]
    wrapper = tmp_path / "smtpmail-sendmail"
    wrapper.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        '\'import sys; sys.argv[0] = "smtpmail-sendmail"; '
        'from smtpmail.cli.sendmail import main; main()\' "$@"\n'
    )
    wrapper.chmod(0o755)
    return [str(wrapper)]


def wait_for(stream_text: object, text: str, bound: float = 30) -> None:
    """Poll an in-memory stream until ``text`` shows (bounded: a guard, not a timing)."""
    end = time.monotonic() + bound
    while text not in stream_text.getvalue():  # type: ignore[attr-defined]
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} never appeared")
        time.sleep(0.02)


# -- `smtpmail sink` in a subprocess ---------------------------------------------


def start_sink(
    *argv: str, environ: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], LineReader]:
    """``smtpmail sink ARGV`` once it listens; ``environ`` adds to its environment."""
    proc = subprocess.Popen(
        [console_script(), "sink", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environ} if environ else None,
    )
    reader = LineReader(proc)
    try:
        reader.wait_for("listening on")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, reader


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        status = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert proc.stderr is not None
    return status, proc.stderr.read()
