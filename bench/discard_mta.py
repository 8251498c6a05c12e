"""A private Postfix that offers CHUNKING and PIPELINING and discards every message.

``DiscardMTA`` starts a whole Postfix instance from its own configuration
directory (``postfix -c DIR``: own queue, on tmpfs where there is one,
listening on 127.0.0.1:<free port> only, never touching the system's mail
setup), whose every transport is
discard(8): smtpd(8) takes each message (BDAT or DATA) into the queue as a
real MTA does, and the queue manager then throws it away, logging one
``status=sent`` line per recipient in its private log. :meth:`delivered`
counts those lines, so the bench can check that every message a client
reported sent was taken. Postfix's master must start as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = {host}
inet_protocols = ipv4
myhostname = discard.smtpmail.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
smtpd_banner = $myhostname ESMTP
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
smtpd_recipient_restrictions = permit_mynetworks, reject
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def available() -> bool:
    """Postfix is installed and this process may start its master (root)."""
    return os.access(POSTFIX, os.X_OK) and os.geteuid() == 0


def _memory_dir() -> str | None:
    """A RAM-backed folder (tmpfs) for the instance, or None (the default temporary one).

    The queue is where a discarding MTA spends its time: cleanup(8) fsyncs every
    queue file before smtpd(8) says 250. On this machine's disk that fsync took
    2.3 ms per message (median, strace -T), more than all the rest of Postfix's
    work; on tmpfs it costs nothing, so the server measured is Postfix's
    processing, not the disk. Operators of a throwaway sink do the same.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DiscardMTA:
    """The private Postfix on 127.0.0.1:``port``; a context manager."""

    host = "127.0.0.1"

    def __init__(self, launch: list[str]) -> None:
        """``launch``: what to put before ``postfix ... start`` (CPU pinning)."""
        self.launch = launch
        self.port = _free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix="smtpmail-bench-postfix-", dir=_memory_dir()))
        self.dir.chmod(0o755)  # Postfix's daemons run as user postfix
        self.config = self.dir / "etc"
        self.config.mkdir()
        (self.dir / "queue").mkdir(mode=0o755)
        (self.dir / "data").mkdir(mode=0o700)
        entry = pwd.getpwnam("postfix")
        os.chown(self.dir / "data", entry.pw_uid, entry.pw_gid)
        fmt = {"dir": self.dir, "host": self.host, "port": self.port}
        (self.config / "main.cf").write_text(_MAIN_CF.format(**fmt))
        (self.config / "master.cf").write_text(_MASTER_CF.format(**fmt))

    def _postfix(self, command: str, launch: list[str] | None = None) -> None:
        argv = [*(launch or []), POSTFIX, "-c", str(self.config), command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {done.stderr}\n{self.log()[-2000:]}")

    def __enter__(self) -> DiscardMTA:
        try:
            self._postfix("start", self.launch)
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection((self.host, self.port), 1).close()
                    return self
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the private Postfix does not listen") from None
                    time.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        pid_file = self.dir / "queue" / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._postfix("stop")
            # Its daemons still hold files in the queue until the master is gone.
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except OSError:
            return ""

    def delivered(self) -> int:
        """Recipients discarded so far (each was a message taken and queued)."""
        return self.log().count(" status=sent ")
