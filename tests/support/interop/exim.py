"""A private Exim 4 on loopback, run from the unpacked Debian package.

Debian's ``exim4-daemon-light`` conflicts with ``postfix`` as an installed
package, so scripts/test.sh unpacks it with ``dpkg-deb -x`` under DEBS
(and installs the libraries it depends on); nothing of it is installed
system-wide, and these tests only start it. The binary looks up its
compiled-in user ``Debian-exim`` at start, so that system user is created
when missing (root only, as the package would).

:class:`EximMTA` writes its own configuration (STARTTLS with a trustme
certificate, AUTH PLAIN/LOGIN, CHUNKING, DSN, SMTPUTF8, PIPELINING; one
refused recipient) and delivers every local message into one Maildir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support.servers import free_port

# Where scripts/test.sh unpacks packages (its SMTPMAIL_DEBS, same default).
DEBS = Path(os.environ.get("SMTPMAIL_DEBS", "/tmp/smtpmail-debs"))
PACKAGE = "exim4-daemon-light"
USER_NAME = "Debian-exim"

_CONFIG = """\
primary_hostname = exim.smtpmail.test
exim_path = @binary@
keep_environment =
spool_directory = @dir@/spool
log_file_path = @dir@/log/%slog
pid_file_path = @dir@/exim.pid
local_interfaces = @host@
daemon_smtp_ports = @port@
domainlist local_domains = @domains@
acl_smtp_rcpt = acl_rcpt
message_size_limit = 50M
pipelining_advertise_hosts = *
chunking_advertise_hosts = *
dsn_advertise_hosts = *
smtputf8_advertise_hosts = *
accept_8bitmime = true
tls_advertise_hosts = *
tls_certificate = @dir@/cert.pem
tls_privatekey = @dir@/key.pem
auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}
host_lookup =
rfc1413_hosts =
queue_only = false
# Deliver at once however many messages one connection brings (the default queues after 10).
smtp_accept_queue_per_connection = 0

begin acl

acl_rcpt:
  deny    recipients = @refused@
          message = 5.1.1 no such user here
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers

inbox:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports

maildir:
  driver = appendfile
  directory = @dir@/mail/inbox
  maildir_format
  create_directory
  delivery_date_add = false
  envelope_to_add = false
  return_path_add = false
  user = @user@
  group = @user@
  mode = 0644

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{@login@}}{eq{$auth3}{@password@}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = <| Username: | Password:
  server_condition = ${if and {{eq{$auth1}{@login@}}{eq{$auth2}{@password@}}}}
  server_set_id = $auth1
"""


def _fill(template: str, **values: object) -> str:
    """Replace each ``@name@``: Exim's own syntax is full of braces."""
    for name, value in values.items():
        template = template.replace(f"@{name}@", str(value))
    return template


def exim_binary() -> Path:
    """The unpacked exim4 binary (downloaded and unpacked once, under a lock)."""
    root = unpacked(PACKAGE, "usr/sbin/exim4")
    ensure_user(USER_NAME)
    return root / "usr" / "sbin" / "exim4"


def unpacked(package: str, member: str) -> Path:
    """The root scripts/test.sh unpacked a Debian package into (``dpkg-deb -x``)."""
    if os.geteuid() != 0:
        pytest.fail(f"a private {package} needs root (its daemon users): run the tests as root")
    root = DEBS / package
    if not (root / ".smtpmail-depends").exists() or not (root / member).exists():
        pytest.fail(f"{package} is not unpacked in {root}: scripts/test.sh unpacks it")
    return root


def ensure_user(name: str, home: str = "/nonexistent") -> None:
    """Create the system user a daemon's binary looks up, as its package would."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", home, "--shell", "/usr/sbin/nologin", name),
            ],
            check=True,
            capture_output=True,
        )


class EximMTA:
    """Exim 4 on 127.0.0.1:<free port>, delivering to one Maildir; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        domains: tuple[str, ...],
        refused: str,
        login: str,
        password: str,
    ) -> None:
        self.binary = exim_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="smtpmail-exim-"))
        os.chmod(self.dir, 0o755)
        entry = pwd.getpwnam(USER_NAME)
        for sub in ("spool", "log", "mail"):
            (self.dir / sub).mkdir()
            os.chown(self.dir / sub, entry.pw_uid, entry.pw_gid)
        (self.dir / "cert.pem").write_bytes(cert_pem)
        (self.dir / "key.pem").write_bytes(key_pem)
        os.chown(self.dir / "key.pem", entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir / "key.pem", 0o600)
        self.config = self.dir / "exim.conf"
        self.config.write_text(
            _fill(
                _CONFIG,
                binary=self.binary,
                dir=self.dir,
                host=self.host,
                port=self.port,
                domains=" : ".join(domains),
                refused=refused,
                user=USER_NAME,
                login=login,
                password=password,
            )
        )
        self.maildir = self.dir / "mail" / "inbox"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EximMTA:
        # -bdf: daemon in the foreground (its own child, so the test can stop it).
        self._proc = subprocess.Popen(
            [str(self.binary), "-C", str(self.config), "-bdf", "-q5m"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
                raise RuntimeError(f"exim exited at start: {out}\n{self.log()}")
            try:
                import socket

                with socket.create_connection((self.host, self.port), 1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"exim did not listen:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        parts = []
        for name in ("mainlog", "rejectlog", "paniclog"):
            path = self.dir / "log" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def files(self) -> list[Path]:
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        return sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
