"""A private OpenSMTPD on loopback, run from the unpacked Debian package.

Like Exim (see exim.py), ``opensmtpd`` conflicts with Postfix as an installed
package, so it runs from ``dpkg-deb -x``. Its compiled-in users
(``opensmtpd``, ``opensmtpq``) and chroot directory are created when missing;
its queue is the compiled-in /var/spool/smtpd. Local delivery needs helper
programs at compiled-in paths, so this instance relays every message to a
recording aiosmtpd instead: that server's store is the mailbox the
interoperability tests read. OpenSMTPD 6.8's STARTTLS fails with OpenSSL 3
here ("EVP lib"), so it listens without TLS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.interop.exim import ensure_user, unpacked
from support.servers import RecordingServer

CHROOT = "/var/lib/opensmtpd/empty"


class OpenSMTPD:
    """OpenSMTPD on 127.0.0.1:<free port>, relaying to ``downstream``; a context manager."""

    host = "127.0.0.1"

    def __init__(self, downstream: RecordingServer, *, domains: tuple[str, ...], refused: str):
        root = unpacked("opensmtpd", "usr/sbin/smtpd")
        for user in ("opensmtpd", "opensmtpq"):
            ensure_user(user, CHROOT)
        os.makedirs(CHROOT, exist_ok=True)
        self.binary = root / "usr" / "sbin" / "smtpd"
        with socket.socket() as s:
            s.bind((self.host, 0))
            self.port = s.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="smtpmail-opensmtpd-"))
        os.chmod(self.dir, 0o755)
        rules = "".join(f'match from any for domain "{d}" action "relay"\n' for d in domains)
        self.config = self.dir / "smtpd.conf"
        self.config.write_text(
            f"listen on {self.host} port {self.port} hostname opensmtpd.smtpmail.test\n"
            f'action "relay" relay host smtp://{downstream.host}:{downstream.port}\n'
            f'match from any for rcpt-to "{refused}" reject\n' + rules
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OpenSMTPD:
        self.log = open(self.dir / "log", "wb")  # closed in __exit__
        self._proc = subprocess.Popen(
            [str(self.binary), "-d", "-f", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"smtpd exited: {(self.dir / 'log').read_text()}")
            try:
                with socket.create_connection((self.host, self.port), 1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("OpenSMTPD did not listen")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self.log.close()
