"""A private Haraka (the npm package, Node.js) on loopback.

The package is installed like smtp-server: scripts/test.sh runs ``npm ci`` from the
committed tests/haraka/package-lock.json into tests/haraka/node_modules
(optional plugins omitted, tests/haraka/.npmrc). :class:`Haraka` writes an
instance folder (``haraka -c DIR``: config/ and plugins/) listening on one
free 127.0.0.1 port, with STARTTLS (a trustme certificate), AUTH PLAIN, LOGIN
and CRAM-MD5 from a flat file, and tests/haraka/interop_queue.js, which
accepts every recipient but one and writes each message to a folder: the
mailbox the tests read back.

Haraka answers any command pipelined after the end of the data with ``503
Bad sequence of commands - pipelined after end of DATA`` (its defence
against SMTP smuggling), although RFC 2920 section 3.1 lets a client send
the next MAIL there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support.interop.daemon import Daemon, by_mtime
from support.nodeserver import ensure_installed
from support.postfix import listening
from support.servers import free_port

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "haraka"


class Haraka(Daemon):
    """Haraka on 127.0.0.1:<free port>, queueing to a folder; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self, cert_pem: bytes, key_pem: bytes, *, refused: str, login: str, password: str
    ) -> None:
        ensure_installed(PACKAGE_DIR, "Haraka")
        super().__init__("haraka", "smtpmail-haraka-")
        self.port = free_port()
        self.mailbox = self.dir / "mailbox"
        self.mailbox.mkdir()
        (self.dir / "plugins").mkdir()
        shutil.copy(PACKAGE_DIR / "interop_queue.js", self.dir / "plugins")
        # Haraka reads its defaults (connection.ini...) from the instance folder only.
        config = self.dir / "config"
        shutil.copytree(PACKAGE_DIR / "node_modules" / "Haraka" / "config", config)
        (config / "cert.pem").write_bytes(cert_pem)
        (config / "key.pem").write_bytes(key_pem)
        files = {
            # nodes=0: one process, no cluster (the test stops what it started).
            "smtp.ini": f"[main]\nlisten={self.host}:{self.port}\nnodes=0\n",
            "me": "haraka.smtpmail.test\n",
            "plugins": "tls\nauth/flat_file\ninterop_queue\n",
            "tls.ini": f"[main]\nkey={config / 'key.pem'}\ncert={config / 'cert.pem'}\n",
            "auth_flat_file.ini": (
                f"[core]\nmethods=PLAIN,LOGIN,CRAM-MD5\n[users]\n{login}={password}\n"
            ),
            "interop_queue.ini": f"[main]\nfolder={self.mailbox}\nrefused={refused}\n",
            "log.ini": "[main]\nlevel=notice\n",
        }
        for name, text in files.items():
            (config / name).write_text(text)
        self.args = ["node", str(PACKAGE_DIR / "node_modules" / "Haraka" / "bin" / "haraka")]
        self.args += ["-c", str(self.dir)]

    def ready(self) -> bool | None:
        return listening(self.host, self.port)

    def files(self) -> list[Path]:
        """The messages queued so far, oldest first."""
        return by_mtime(self.mailbox.glob("*.eml"))
