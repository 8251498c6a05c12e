"""A private Dovecot on loopback: an LMTP server, or the SASL service Postfix asks.

Dovecot comes from the Debian packages dovecot-core and dovecot-lmtpd
(scripts/test.sh installs them; the package's service is never started).
:class:`Dovecot` runs ``dovecot -F -c FILE`` as root with its own base_dir,
state_dir and configuration, logging to its own file:

- ``lmtp=True``: LMTP on a free 127.0.0.1 port, STARTTLS with a trustme
  certificate, delivering as ``nobody`` into one Maildir per recipient. Only
  the listed ``mailboxes`` exist (any other RCPT gets ``550 5.1.1 User
  doesn't exist``); a ``full`` mailbox has a one-byte quota, so its reply
  after the data is ``552 5.2.2 Quota exceeded`` while the others get 250
  (RFC 2033 section 4.2: one reply per recipient).
- ``logins``: users with plain-text passwords for the auth service, whose
  socket (:attr:`auth_socket`) Postfix's ``smtpd_sasl_type = dovecot`` uses.
  A password stored in clear text serves every mechanism offered (PLAIN,
  LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from support.interop.daemon import Daemon, by_mtime
from support.postfix import listening
from support.servers import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
NOBODY = 65534  # delivers as nobody, as Postfix's virtual(8) does here
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")


class Dovecot(Daemon):
    """Dovecot for the tests; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        lmtp: bool = False,
        cert_pem: bytes = b"",
        key_pem: bytes = b"",
        mailboxes: tuple[str, ...] = (),
        full: tuple[str, ...] = (),
        logins: dict[str, str] | None = None,
    ) -> None:
        if not os.access(DOVECOT, os.X_OK) or not os.path.exists("/usr/lib/dovecot/lmtp"):
            pytest.fail("Dovecot is missing: install dovecot-core and dovecot-lmtpd")
        super().__init__("dovecot", "smtpmail-dovecot-")
        self.port = free_port() if lmtp else 0
        self.mail = self.dir / "mail"
        self.mail.mkdir()
        os.chown(self.mail, NOBODY, NOBODY)
        self.auth_socket = self.dir / "run" / "auth-postfix"
        users = [f"{box}:::::::" for box in mailboxes]
        users += [f"{box}:::::::userdb_quota_rule=*:storage=1B" for box in full]
        users += [f"{name}:{{PLAIN}}{pw}::::::" for name, pw in (logins or {}).items()]
        (self.dir / "users").write_text("".join(line + "\n" for line in users))
        config = self.dir / "dovecot.conf"
        config.write_text(self._config(lmtp, cert_pem, key_pem))
        self.args = [DOVECOT, "-F", "-c", str(config)]

    def _config(self, lmtp: bool, cert_pem: bytes, key_pem: bytes) -> str:
        d = self.dir
        tls, listener = ["ssl = no"], []
        if lmtp:
            (d / "cert.pem").write_bytes(cert_pem)
            (d / "key.pem").write_bytes(key_pem)
            os.chmod(d / "key.pem", 0o600)
            tls = ["ssl = yes", f"ssl_cert = <{d}/cert.pem", f"ssl_key = <{d}/key.pem"]
            listener = [
                f"service lmtp {{\n  inet_listener lmtp {{\n    address = {self.host}\n"
                f"    port = {self.port}\n  }}\n}}"
            ]
        lines = [
            f"base_dir = {d}/run",
            f"state_dir = {d}/state",
            f"instance_name = {d.name}",
            "log_path = /dev/stderr",  # the Daemon's log file
            "hostname = dovecot.smtpmail.test",
            f"protocols = {'lmtp' if lmtp else 'none'}",
            *tls,
            "auth_mechanisms = " + " ".join(m.lower() for m in MECHANISMS),
            "auth_failure_delay = 0",  # a wrong password answers at once
            f"mail_location = maildir:{d}/mail/%u",
            "mail_plugins = quota",
            "plugin {\n  quota = maildir:User quota\n}",
            f"passdb {{\n  driver = passwd-file\n  args = {d}/users\n}}",
            f"userdb {{\n  driver = passwd-file\n  args = {d}/users\n"
            f"  default_fields = uid={NOBODY} gid={NOBODY} home={d}/mail/%u\n}}",
            # Postfix's smtpd runs as user postfix: the socket must let it in.
            f"service auth {{\n  unix_listener {self.auth_socket.name} {{\n    mode = 0666\n"
            "  }\n}",
            *listener,
        ]
        return "\n".join(lines) + "\n"

    def ready(self) -> bool | None:
        if self.port and not listening(self.host, self.port):
            return None
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.auth_socket))
        except OSError:
            return None
        return True

    def files(self) -> list[Path]:
        """Every message delivered so far, to any mailbox, oldest first."""
        return by_mtime([*self.mail.glob("*/new/*"), *self.mail.glob("*/cur/*")])
