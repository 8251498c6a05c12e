"""The npm package smtp-server, run by Node.js: an SMTP server not written in Python.

``NodeSMTPServer`` installs the package (``npm ci`` into tests/node/node_modules,
from the committed package-lock.json) the first time, starts tests/node/server.js
on a free loopback port and collects the messages and AUTH attempts it reports.
"""

from __future__ import annotations

import base64
import fcntl
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


def ensure_installed(folder: Path = NODE_DIR, package: str = "smtp-server") -> None:
    """npm ci in ``folder`` once (under a lock: several test processes may start together)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(f"Node.js and npm are needed for the {package} tests")
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "node_modules" / package / "package.json").exists():
            return
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"npm ci failed in {folder}:\n{proc.stderr}")


@dataclass
class NodeSMTPServer:
    """smtp-server on 127.0.0.1; ``implicit`` for TLS from the first byte, else STARTTLS."""

    cert_file: str
    key_file: str
    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    implicit: bool = False
    auth_methods: list[str] | None = None
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
