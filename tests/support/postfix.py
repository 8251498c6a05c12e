"""Real Postfix programs for the tests: ``smtp-sink`` and a private Postfix MTA.

:class:`SmtpSink` runs Postfix's ``smtp-sink`` test server (PIPELINING, DSN,
ENHANCEDSTATUSCODES, 8BITMIME; LMTP with ``lmtp=True``; no CHUNKING) on a
free loopback port and keeps each transaction in a dump directory.

:class:`PostfixMTA` starts a whole Postfix instance from a private
configuration directory (``postfix -c DIR``) with its own queue and data
directories, listening only on 127.0.0.1:<free port>, delivering every
message for the test domains into one Maildir the test reads. It never
touches the system-wide mail setup. Postfix's master must start as root,
so without root (or without the binaries, which scripts/test.sh installs)
the tests that need it fail.
"""

from __future__ import annotations

import email
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import TypeVar

import pytest

from support.privatepostfix import HOST, PrivatePostfix, Setting, available
from support.servers import free_port

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
T = TypeVar("T")

#: Domains the private MTA delivers locally (everything else bounces at once).
LOCAL_DOMAINS = ("example.com", "example.org", "xn--bcher-kva.example", "例子.广告")
#: A recipient the private MTA refuses at RCPT time.
REFUSED = "refused@example.com"
#: The user virtual(8) delivers as (nobody).
NOBODY = 65534


def have_smtp_sink() -> bool:
    return os.access(SMTP_SINK, os.X_OK)


def wait_for(what: str, probe: Callable[[], T | None], limit: float = 30.0) -> T:
    """Poll ``probe`` until it returns something; a bound on waiting, not an assertion."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def listening(host: str, port: int) -> bool | None:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return None


def _private_dir(prefix: str) -> Path:
    # Postfix's daemons (user postfix) and smtp-sink (user nobody) must reach it:
    # pytest's tmp_path sits under a 0700 directory, so use /tmp directly.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class Dumped:
    """One transaction as smtp-sink stored it."""

    helo: str
    mail_args: str
    rcpt_args: list[str]
    content: bytes


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:<free port>; a context manager."""

    host = "127.0.0.1"

    def __init__(self, *flags: str, lmtp: bool = False, dump: bool = True) -> None:
        if not have_smtp_sink():
            pytest.fail("smtp-sink is not installed: scripts/test.sh installs it (Debian postfix)")
        self.port = free_port()
        self.dir = _private_dir("smtpmail-sink-")
        self.dir.chmod(0o777)
        self.flags = list(flags) + (["-L"] if lmtp else [])
        self.dump = dump
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        args = [SMTP_SINK, *self.flags, "-h", "sink.smtpmail.test"]
        if self.dump:
            args += ["-d", f"{self.dir}/%H%M%S."]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # smtp-sink refuses to run as root
        args += [f"{self.host}:{self.port}", "64"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for("smtp-sink to listen", lambda: self._alive() and listening(self.host, self.port))
        return self

    def _alive(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            raise RuntimeError(f"smtp-sink exited: {err}")
        return True

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            if self._proc.stderr:
                self._proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self, count: int | None = None) -> list[Dumped]:
        """The transactions dumped so far (waiting until there are ``count``)."""
        if count is not None:
            wait_for(f"{count} dumped messages", lambda: len(self._files()) >= count or None)
        return [self._parse(p.read_bytes()) for p in self._files()]

    def _files(self) -> list[Path]:
        # A dump file is complete once smtp-sink closed it; it ends with the empty line.
        return sorted(
            (p for p in self.dir.iterdir() if p.is_file() and p.read_bytes().endswith(b"\n\n")),
            key=lambda p: p.stat().st_mtime_ns,
        )

    @staticmethod
    def _parse(raw: bytes) -> Dumped:
        head, _, rest = raw.partition(b"Received: ")
        fields: dict[str, list[str]] = {}
        for line in head.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(": ")
            fields.setdefault(key, []).append(value)
        # The Received header is three lines; the message follows.
        content = rest.split(b"\n", 3)[3] if rest.count(b"\n") >= 3 else b""
        return Dumped(
            helo=fields.get("X-Helo-Args", [""])[0],
            mail_args=fields.get("X-Mail-Args", [""])[0],
            rcpt_args=fields.get("X-Rcpt-Args", []),
            content=content[:-1],  # the empty line smtp-sink appends
        )


class PostfixMTA(PrivatePostfix):
    """A private Postfix instance on 127.0.0.1:<free port>; a context manager.

    Every message to a :data:`LOCAL_DOMAINS` address lands in one Maildir;
    :meth:`delivered` waits for and parses them.
    """

    host = HOST

    def __init__(
        self,
        size_limit: int = 10_240_000,
        recipient_limit: int = 1000,
        settings: Mapping[str, Setting] | None = None,
        services: Iterable[str] = (),
        listeners: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """``recipient_limit``: RCPTs one transaction takes (then "452 4.5.3 Error: too
        many recipients"); 1000 is Postfix's default. ``settings`` (main.cf),
        ``services`` (master.cf) and ``listeners`` (more smtpd addresses, each with
        its ``-o`` options) go over this MTA's own (support/privatepostfix.py)."""
        if not available():
            pytest.fail("a private Postfix needs root and Postfix: scripts/test.sh installs it")
        self.port = free_port()
        top = _private_dir("smtpmail-postfix-")
        mail = top / "mail"
        mail.mkdir()
        os.chown(mail, NOBODY, NOBODY)  # virtual(8) delivers as nobody, never root
        refuse = f"{REFUSED} = REJECT 5.1.1 no such user here"
        main: dict[str, Setting] = {
            "myhostname": "mta.smtpmail.test",
            "mydomain": "smtpmail.test",
            "myorigin": "$myhostname",
            "mynetworks": "127.0.0.0/8",
            "local_recipient_maps": "",
            "smtputf8_enable": "yes",
            "message_size_limit": size_limit,
            "smtpd_banner": "$myhostname ESMTP",
            # Nothing ever leaves this machine: anything not local bounces at once.
            "default_transport": "error:this test MTA delivers nothing outside",
            "relay_transport": "error:this test MTA delivers nothing outside",
            "virtual_mailbox_domains": ", ".join(LOCAL_DOMAINS),
            "virtual_mailbox_base": str(mail),
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{NOBODY}",
            "virtual_gid_maps": f"static:{NOBODY}",
            "smtpd_recipient_restrictions": [
                f"check_recipient_access inline:{{ {{ {refuse} }} }}",
                "permit_mynetworks, reject",
            ],
            "smtpd_recipient_limit": recipient_limit,
            **(settings or {}),
        }
        own = ("pickup", "flush", "smtp", "relay", "showq", "local", "virtual")
        smtpd = {f"{self.host}:{self.port}": {}, **(listeners or {})}
        super().__init__(top, main, (*own, *services), smtpd)
        self.maildir = mail / "inbox"

    def _files(self) -> list[Path]:
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        return sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)

    def delivered(self, count: int) -> list[Message]:
        """Wait until ``count`` messages were delivered; return them all, parsed."""
        try:
            wait_for(f"{count} delivered messages", lambda: len(self._files()) >= count or None)
        except AssertionError:
            raise AssertionError(f"not delivered; the Postfix log:\n{self.log()}") from None
        return [email.message_from_bytes(p.read_bytes()) for p in self._files()]

    def find(self, token: bytes, count: int = 1) -> list[bytes]:
        """Wait until ``count`` delivered messages contain ``token``; return them (raw)."""

        def matching() -> list[bytes] | None:
            found = [raw for p in self._files() if token in (raw := p.read_bytes())]
            return found if len(found) >= count else None

        try:
            return wait_for(f"{count} messages with {token!r}", matching)
        except AssertionError:
            raise AssertionError(f"not delivered; the Postfix log:\n{self.log()}") from None
