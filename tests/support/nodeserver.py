"""The npm package smtp-server, run by Node.js: an SMTP server not written in Python.

scripts/test.sh installs Node.js and the package (``npm ci`` into
tests/node/node_modules, from the committed package-lock.json);
``NodeSMTPServer`` starts tests/node/server.js on a free loopback port and
collects the messages and AUTH attempts it reports.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def ensure_installed(folder: Path = NODE_DIR, package: str = "smtp-server") -> None:
    """Fail unless Node.js and the packages of ``folder``'s current lock file are installed."""
    if shutil.which("node") is None:
        pytest.fail(f"Node.js is needed for the {package} tests: scripts/test.sh installs it")
    # scripts/test.sh copies the lock file it installed from next to the packages.
    done = folder / "node_modules" / ".smtpmail-package-lock.json"
    lock = folder / "package-lock.json"
    if not done.exists() or done.read_bytes() != lock.read_bytes():
        pytest.fail(f"the npm packages of {lock} are not installed: scripts/test.sh runs npm ci")


@dataclass
class NodeSMTPServer:
    """smtp-server on 127.0.0.1; ``implicit`` for TLS from the first byte, else STARTTLS."""

    cert_file: str
    key_file: str
    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    implicit: bool = False
    auth_methods: list[str] | None = None
    #: Offer REQUIRETLS (RFC 8689) after STARTTLS; take mail without AUTH.
    requiretls: bool = False
    auth_optional: bool = False
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    auths: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> NodeSMTPServer:
        ensure_installed()
        config: dict[str, Any] = {
            "cert": self.cert_file,
            "key": self.key_file,
            "users": self.users,
            "tokens": self.tokens,
            "implicit": self.implicit,
            "requiretls": self.requiretls,
            "authOptional": self.auth_optional,
        }
        if self.auth_methods:
            config["authMethods"] = self.auth_methods
        self._proc = subprocess.Popen(
            ["node", str(NODE_DIR / "server.js"), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first.startswith("READY "):
            self._proc.kill()
            raise RuntimeError(f"smtp-server did not start: {first!r}")
        self.port = int(first.split()[1])
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            kind, _, payload = line.partition(" ")
            value = json.loads(payload)
            with self._lock:
                if kind == "MESSAGE":
                    value["content"] = base64.b64decode(value["content"])
                    self.messages.append(value)
                elif kind == "AUTH":
                    self.auths.append(value)

    def settle(self) -> None:
        """Wait until everything the server printed so far has been read."""
        self._proc.stdin.close()  # type: ignore[union-attr]
        self._proc.wait(10)
        self._reader.join(10)

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self.settle()
