"""A private PostgreSQL server for the tests: Debian's ``initdb`` + ``pg_ctl``.

:class:`PostgresServer` makes a cluster in a temporary folder, listening on a
free loopback port only (no Unix socket), trusting loopback connections, and
stops it (``pg_ctl stop -m immediate``) and removes the folder at the end. It
never touches a system cluster. PostgreSQL refuses to run as root, so as root
its programs run as the ``postgres`` user (``runuser``), which Debian's
package creates. Without the binaries (scripts/test.sh installs them) the
fixtures fail: they never skip.

The fixtures ``postgres`` (one server for the session) and ``pg_url`` (a fresh
database on it for each test) are in the conftest.py of the tests that use them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.postfix import wait_for
from support.servers import free_port

__all__ = ["PostgresServer", "pg_bin"]


def pg_bin(program: str) -> str:
    """The newest Debian PostgreSQL's ``program`` (they are not on PATH)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{program}"),
        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0,
    )
    if not found:
        raise AssertionError(
            f"PostgreSQL's {program} is missing: run scripts/test.sh (it installs postgresql)"
        )
    return found[-1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, on 127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="smtpmail-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [pg_bin(program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, check=check, timeout=120, cwd=self.root
        )

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        options = f"-p {self.port} {self.listen()} -c max_connections=200 -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        wait_for("PostgreSQL to accept connections", self.ready)

    def listen(self) -> str:
        """Where the server listens (postgres options): loopback TCP only."""
        return "-c listen_addresses=127.0.0.1 -c unix_socket_directories=''"

    def ready(self) -> bool:
        probe = self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False)
        return probe.returncode == 0

    def restart_immediate(self) -> None:
        """As a crash would: no checkpoint, the WAL replayed at start."""
        self.crash()
        self.start()

    def crash(self) -> None:
        """Stop as a crash would (:meth:`start` brings it back, replaying the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def logged(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
