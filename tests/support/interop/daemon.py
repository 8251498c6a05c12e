"""A server program the interoperability tests start in the foreground and stop.

:class:`Daemon` runs one command with its output in a log file, waits until
``ready()`` says it serves (failing at once, with the log, if it exits
first), and on exit stops it with SIGTERM (SIGKILL if it lingers) and
removes its private folder. Haraka and Dovecot (haraka.py, dovecot.py) are
Daemons; each writes its configuration into ``self.dir`` first.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Self

from support.postfix import wait_for


class Daemon:
    """``args`` run from :meth:`__enter__` to :meth:`__exit__`; a context manager."""

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.dir.chmod(0o755)  # daemons that drop root (dovecot, nobody) reach inside
        self.args: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def ready(self) -> bool | None:
        """True once the server takes connections (the subclass says how to tell)."""
        raise NotImplementedError

    def log(self) -> str:
        """What the program printed so far."""
        try:
            return (self.dir / "daemon.log").read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self._log = open(self.dir / "daemon.log", "wb")  # closed in __exit__
        self._proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"{self.name} to start", self._started)
        except AssertionError:
            log = self.log()
            self.__exit__()
            raise RuntimeError(f"{self.name} did not start:\n{log}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def _started(self) -> bool | None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self._proc.returncode}:\n{self.log()}")
        return self.ready()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def by_mtime(paths: Iterable[Path]) -> list[Path]:
    """Files in the order they were written (a mailbox's delivery order)."""
    return sorted(paths, key=lambda p: p.stat().st_mtime_ns)
