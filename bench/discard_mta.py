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

import os
import socket
import tempfile
from pathlib import Path

# tests/support/privatepostfix.py writes every private Postfix's configuration
# (run.py puts tests/ on sys.path for it; the tests have it there already).
from support.privatepostfix import HOST, PrivatePostfix

#: main.cf over the instance's defaults: every transport is discard(8).
SETTINGS = {
    "myhostname": "discard.smtpmail.test",
    "mynetworks": "127.0.0.0/8",
    "local_recipient_maps": "",
    "smtpd_banner": "$myhostname ESMTP",
    "default_transport": "discard:bench",
    "relay_transport": "discard:bench",
    "local_transport": "discard:bench",
    "smtpd_recipient_restrictions": "permit_mynetworks, reject",
}


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


class DiscardMTA(PrivatePostfix):
    """The private Postfix on 127.0.0.1:``port``; a context manager."""

    host = HOST

    def __init__(self, launch: list[str]) -> None:
        """``launch``: what to put before each ``postfix`` command (CPU pinning)."""
        self.port = _free_port(self.host)
        top = Path(tempfile.mkdtemp(prefix="smtpmail-bench-postfix-", dir=_memory_dir()))
        top.chmod(0o755)  # Postfix's daemons run as user postfix
        listeners: dict[str, dict[str, str]] = {f"{self.host}:{self.port}": {}}
        super().__init__(top, SETTINGS, listeners=listeners, launch=launch)

    def delivered(self) -> int:
        """Recipients discarded so far (each was a message taken and queued)."""
        return self.log().count(" status=sent ")
