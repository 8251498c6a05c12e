"""One private Postfix instance: its main.cf and master.cf, started and stopped.

Every private Postfix of the tests and the bench is built here: the test MTA
(support/postfix.py), the DANE reference client (support/dane/world.py) and
the bench's discarding CHUNKING server (bench/discard_mta.py). Each caller
gives only what differs: its main.cf settings (``postconf(5)`` names; they
override :data:`MAIN_CF`, a list of values becomes continuation lines), the
master.cf services it runs besides :data:`CORE`, and its smtpd listeners with
their ``-o`` options. :class:`PrivatePostfix` writes the files into its own
directory (``postfix -c DIR``: own queue, data and log, never the system's
mail setup), starts Postfix, waits until every listener answers, and stops it.

It lives in tests/support, where the shared test code is, and imports the
standard library only (no pytest): bench/ runs from its own venv without the
test dependencies, and bench/run.py puts tests/ on ``sys.path`` for it (as
bench/outbox_bench.py does for support/pgserver.py). So no test imports bench
code to get a Postfix, and the product (src/) imports neither.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Self

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
#: The loopback address every private instance listens on (main.cf ``inet_interfaces``).
HOST = "127.0.0.1"

#: A main.cf value: text, a number, lines (continuation lines), or None (not written).
Setting = str | int | list[str] | None

#: The main.cf every instance starts from, in the order written. ``{top}`` is the
#: instance's directory. A None value only keeps a caller's setting at its place.
MAIN_CF: dict[str, Setting] = {
    "compatibility_level": "3.6",
    "queue_directory": "{top}/queue",
    "data_directory": "{top}/data",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": HOST,
    "inet_protocols": "ipv4",
    "myhostname": None,
    "mydomain": None,
    "myorigin": None,
    "mydestination": "",
    "mynetworks": None,
    "relay_domains": "",
    "alias_maps": "",
    "alias_database": "",
    "local_recipient_maps": None,
    "biff": "no",
    "maillog_file": "{top}/maillog",
    "maillog_file_prefixes": "{top}",
}

# Postfix's stock master.cf lines for the services an instance may run, in their
# stock order, none chrooted (a private queue has no chroot jail to run in).
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
#: What every instance runs: cleanup, the queue manager, address rewriting,
#: bounces and deferrals, the error and discard transports, logging.
CORE = frozenset({
    "cleanup", "qmgr", "rewrite", "bounce", "defer", "trace", "verify", "proxymap",
    "error", "retry", "discard", "anvil", "scache", "postlog",
})  # fmt: skip


def available() -> bool:
    """Postfix is installed and this process may start its master (root)."""
    return os.access(POSTFIX, os.X_OK) and os.geteuid() == 0


def main_cf(top: Path, settings: Mapping[str, Setting]) -> str:
    """:data:`MAIN_CF` with ``settings`` over it (new names at the end), as main.cf text."""
    lines = []
    for name, value in {**MAIN_CF, **settings}.items():
        if isinstance(value, list):
            lines.append(f"{name} =")
            lines += [f"    {line}" for line in value]
        elif value is not None:
            lines.append(f"{name} = {value}".rstrip())  # "name =" for an empty value
    return "\n".join(lines).replace("{top}", str(top)) + "\n"


def master_cf(services: Iterable[str], listeners: Mapping[str, Mapping[str, str]]) -> str:
    """master.cf: an smtpd per listener address (with its ``-o`` options), then ``services``."""
    wanted = CORE | set(services)
    table = _SERVICES.splitlines()
    unknown = wanted - {line.split()[0] for line in table}
    if unknown:
        raise ValueError(f"no master.cf line for {sorted(unknown)}")
    lines = []
    for address, options in listeners.items():
        lines.append(f"{address} inet n - n - - smtpd")
        lines += [f"  -o {name}={value}" for name, value in options.items()]
    lines += [line for line in table if line.split()[0] in wanted]
    return "\n".join(lines) + "\n"


class PrivatePostfix:
    """A Postfix instance configured in ``top``/etc, its queue in ``top``/queue.

    ``settings`` go over :data:`MAIN_CF`; ``services`` run besides :data:`CORE`;
    ``listeners`` maps each smtpd address ("127.0.0.1:2525") to its ``-o``
    options; ``launch`` goes before every ``postfix`` command (CPU pinning, a
    network namespace). The files are written here, so a caller may still add
    to them before :meth:`start`. As a context manager it starts, then stops
    and removes ``top``.
    """

    def __init__(
        self,
        top: Path,
        settings: Mapping[str, Setting],
        services: Iterable[str] = (),
        listeners: Mapping[str, Mapping[str, str]] | None = None,
        launch: Sequence[str] = (),
    ) -> None:
        self.dir = top
        self.config = top / "etc"
        self.listeners = dict(listeners or {})
        self.launch = list(launch)
        self.config.mkdir(parents=True)
        (top / "queue").mkdir(mode=0o755)  # Postfix creates what it needs inside
        (top / "data").mkdir(mode=0o700)
        entry = pwd.getpwnam("postfix")
        os.chown(top / "data", entry.pw_uid, entry.pw_gid)
        (self.config / "main.cf").write_text(main_cf(top, settings))
        (self.config / "master.cf").write_text(master_cf(services, self.listeners))

    def postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        """``postfix -c <config> command``, after ``launch``."""
        argv = [*self.launch, POSTFIX, "-c", str(self.config), command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> None:
        """Start the master; return once every listener accepts connections."""
        done = self.postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stderr}\n{self.log()[-2000:]}")
        for address in self.listeners:
            _until(f"Postfix to listen on {address}", functools.partial(_listening, address))

    def stop(self) -> None:
        """Stop the master and wait until it is gone (its daemons hold files in the queue)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.postfix("stop")
        try:
            pid = int((self.dir / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            _until("Postfix to stop", lambda: not _alive(pid), limit=15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        """The instance's own log (``maillog_file``)."""
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except OSError:
            return ""


def _until(what: str, probe: Callable[[], bool], limit: float = 30.0) -> None:
    # A bound on waiting for a daemon, not a timing.
    deadline = time.monotonic() + limit
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
