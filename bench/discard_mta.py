"""A private Postfix that offers CHUNKING and PIPELINING and discards every message.

``DiscardMTA`` starts a whole Postfix instance from its own configuration
directory (``postfix -c DIR``: own queue, listening on 127.0.0.1:<free port>
only, never touching the system's mail setup), whose every transport is
discard(8): smtpd(8) takes each message (BDAT or DATA) into the queue as a
real MTA does, and the queue manager then throws it away, logging one
``status=sent`` line per recipient in its private log. :meth:`delivered`
counts those lines, so the bench can check that every message a client
reported sent was taken. Postfix's master must start as root.
"""

from __future__ import annotations

import shutil
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


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DiscardMTA:
    """The private Postfix on 127.0.0.1:``port``; a context manager."""

    host = HOST

    def __init__(self, launch: list[str]) -> None:
        """``launch``: what to put before ``postfix ... start`` (CPU pinning)."""
        self.port = _free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix="smtpmail-bench-postfix-"))
        self.dir.chmod(0o755)  # Postfix's daemons run as user postfix
        listeners: dict[str, dict[str, str]] = {f"{self.host}:{self.port}": {}}
        self.postfix = PrivatePostfix(self.dir, SETTINGS, listeners=listeners, launch=launch)

    def __enter__(self) -> DiscardMTA:
        try:
            self.postfix.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.postfix.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return self.postfix.log()

    def delivered(self) -> int:
        """Recipients discarded so far (each was a message taken and queued)."""
        return self.log().count(" status=sent ")
