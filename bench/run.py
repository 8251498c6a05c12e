"""smtpmail against its peers, like for like, side by side in one run (issues 9, 19).

``bash bench/run.sh`` installs what this needs and runs it; ``--quick`` is a
smoke test with small counts. Every client runs in its own process pinned to
CPU 0, the server (Postfix's ``smtp-sink``, aiosmtpd, or a private Postfix
that discards) to the last CPU; wall time comes from the client (start-up
excluded for the Python peers), CPU time and peak RSS from ``os.wait4``.

Each smtpmail mode meets the peer mode that does the same work: one reused
connection and ``smtp-source -s 1 -d``, a connection per message and
``smtp-source -s 1``, N connections and ``smtp-source -s N -d``. Each scenario
is run ``--runs`` times, peers interleaved; a ratio is the median of the
per-run ratios (run r of smtpmail against run r of the peer), so that a slow
moment of the shared machine cancels out. Results go to ``bench/results/``
(Markdown, JSON, PNG) and, after a full run, into docs/benchmarks.md
between the ``bench:start``/``bench:end`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
# The private Postfix (tests/support/privatepostfix.py: standard library only) is
# configured by the same module for the bench as for the tests.
sys.path.append(str(ROOT / "tests"))

import discard_mta  # noqa: E402
from peers import RECIPIENT, SENDER, make_message  # noqa: E402
from report import (  # noqa: E402 (the row names, defined once beside the targets naming them)
    AIOSMTPLIB,
    AIOSMTPLIB_X8,
    ASYNC_MANY,
    ASYNC_X8,
    ASYNC_X8_MYPYC,
    BARE_PYTHON,
    CLI_SEND,
    FLOOR,
    FLOOR_LOCKSTEP,
    FLOOR_X8,
    LAUNCHER_FLOOR,
    LOOP,
    MANY,
    MANY_MYPYC,
    MYPYC_SCENARIOS,
    ONESHOT,
    ONESHOT_ASYNC,
    ONESHOT_MYPYC,
    SMTPLIB,
    SMTPLIB_EACH,
    SMTPLIB_X8,
    SOURCE_D,
    SOURCE_EACH,
    SOURCE_X8,
    THREADS_X8,
)

from support.privatepostfix import available as postfix_available  # noqa: E402

PEERS_PY = str(BENCH / "peers.py")
#: The page a whole run writes its tables into (and its chart beside).
PAGE = ROOT / "docs" / "benchmarks.md"
#: The README's summary of the targets (between its markers) that a whole run rewrites.
README = ROOT / "README.md"
CPUS = sorted(os.sched_getaffinity(0))
CLIENT_CPU = {CPUS[0]}
SERVER_CPU = {CPUS[-1]}

# -- measuring one client run -------------------------------------------------


@dataclass
class Sample:
    messages: int
    octets: int
    seconds: float
    cpu: float  # the whole process's CPU seconds (os.wait4)
    rss_kib: int
    #: CPU seconds of the sending alone (Python peers: start-up excluded), else None.
    send_cpu: float | None = None
    run: int = 0  # which repetition of the scenario this is

    @property
    def cpu_per_message(self) -> float:
        """CPU seconds per message: the sending alone when known, else the whole process."""
        return (self.cpu if self.send_cpu is None else self.send_cpu) / self.messages

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def mbps(self) -> float:
        return self.octets / self.seconds / 1e6


def pinned(argv: list[str], cpus: set[int]) -> list[str]:
    """``argv`` run on ``cpus`` only (taskset execs it: same pid, nothing added to measure)."""
    if shutil.which("taskset") is None or len(CPUS) < 2:
        return argv
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]


#: Where the clients import smtpmail from: this checkout's src/, or its snapshot.
SOURCE = [ROOT / "src"]
#: Where the mypyc build of that snapshot is installed (``compiled_build``), if it built.
COMPILED: list[Path | None] = [None]
#: How the CLI is started: ``python -m smtpmail``, or the launcher an install writes.
CLI = [[sys.executable, "-m", "smtpmail"]]
#: The CLI scenario's floor: that launcher with no package behind it.
CLI_FLOOR = [[sys.executable, "-c", "import sys"]]

# What pip writes as the ``smtpmail`` console script (the form users run), for
# the entry point pyproject.toml names: pip 25.0 and later, as uv, no longer
# import ``re`` there (earlier ones did, and that import was a third of the
# launcher's instructions).
LAUNCHER = """#!{python}
import sys
from {module} import {function}
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit({function}())
"""
# The same launcher with no package behind it: what any command pip installs runs
# before the package's first line (the interpreter). No Python CLI started this
# way can go below it.
LAUNCHER_ALONE = """#!{python}
import sys
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(0)
"""


def write_launchers(folder: Path, source: Path) -> tuple[Path, Path]:
    """The ``smtpmail`` command as an install of ``source`` (a checkout's src
    folder) makes it, for this interpreter, and the launcher alone
    (:data:`LAUNCHER_ALONE`). The entry point is the one the checkout's
    pyproject.toml names (this one's, when ``source`` has none beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "smtpmail", folder / "launcher-alone")
    project = source.parent / "pyproject.toml"
    with (project if project.exists() else ROOT / "pyproject.toml").open("rb") as f:
        entry = tomllib.load(f)["project"]["scripts"]["smtpmail"]
    module, _, function = entry.partition(":")
    for path, text in zip(paths, (LAUNCHER, LAUNCHER_ALONE), strict=True):
        path.write_text(text.format(python=sys.executable, module=module, function=function))
        path.chmod(0o755)
    return paths


def _env(source: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The clients import this checkout's smtpmail (or its mypyc build), not an installed copy.
    where = str(source or SOURCE[0])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [where, env.get("PYTHONPATH")]))
    return env


def _spawn(
    argv: list[str], stdin: Path | None, source: Path | None = None
) -> tuple[str, float, int]:
    """Run one process to completion; (stdout, CPU seconds, max RSS KiB) via wait4."""
    with (
        open(stdin or os.devnull, "rb") as fin,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss_file,
    ):
        proc = subprocess.Popen(
            [*_rss_probe(rss_file.name), *pinned(argv, CLIENT_CPU)],
            stdin=fin,
            stdout=out,
            stderr=err,
            env=_env(source),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, error = out.read().decode(), err.read().decode(errors="replace")
        rss = _read_rss(rss_file.read(), usage.ru_maxrss)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({proc.returncode}): {error[-400:]}")
    return text, usage.ru_utime + usage.ru_stime, rss


def _rss_probe(path: str) -> list[str]:
    """GNU time between us and the client, so that its peak RSS is its own.

    Linux carries the pre-exec address space's high-water mark into the
    exec'd program's ru_maxrss; forked straight from this (large) Python
    process, a 2 MiB C client would report this process's RSS. GNU time is
    small, and the client forked from it reports its own peak.
    """
    if not Path("/usr/bin/time").exists():
        return []
    return ["/usr/bin/time", "-q", "-f", "%M", "-o", path]


def _read_rss(text: str, fallback: int) -> int:
    lines = text.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].isdigit() else fallback


def measure_python(client: str, port: int, source: Path | None = None, **kw: object) -> Sample:
    argv = [sys.executable, PEERS_PY, client, "--port", str(port)]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    text, cpu, rss = _spawn(argv, None, source)
    data = json.loads(text.strip().splitlines()[-1])
    return Sample(data["messages"], data["octets"], data["seconds"], cpu, rss, data["cpu"])


def measure_command(
    argv: list[str], messages: int, octets: int, stdin: Path | None = None
) -> Sample:
    started = time.perf_counter()
    _, cpu, rss = _spawn(argv, stdin)
    return Sample(messages, octets, time.perf_counter() - started, cpu, rss)


def measure_interleaved(
    argvs: dict[str, Callable[[], list[str]]], n: int, size: int, stdin: Path | None
) -> dict[str, Sample]:
    """One process per message for each peer, the peers taking turns.

    The first process of each peer, then the second of each, and so on: a
    shared machine's slow seconds then fall on every peer alike, where a block
    of one peer's 50 processes can land in one of them and decide the ratio.
    """
    names = list(argvs)
    wall, cpu, rss = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    for i in range(n):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            _, c, r = _spawn(argvs[name](), stdin)
            wall[name] += time.perf_counter() - started
            cpu[name] += c
            rss[name] = max(rss[name], r)
    return {name: Sample(n, n * size, wall[name], cpu[name], rss[name]) for name in names}


# -- servers ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class Server:
    """A running server: its port, and how many messages it has taken when it can say."""

    port: int
    #: Messages taken so far (None: the server cannot count, like smtp-sink).
    received: Callable[[], int] | None = None


@contextmanager
def smtp_sink() -> Iterator[Server]:
    """Postfix's smtp-sink: PIPELINING, no CHUNKING, answers without storing."""
    port = _free_port()
    argv = ["smtp-sink"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = subprocess.Popen(
        pinned([*argv, f"127.0.0.1:{port}", "1024"], SERVER_CPU),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield Server(port)
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def _line_server(argv: list[str]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        pinned(argv, SERVER_CPU),
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        _wait_port(port, proc)  # type: ignore[arg-type]
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()


@contextmanager
def delay_relay(target: int, rtt: float) -> Iterator[int]:
    """The emulated long link; torn down on exit."""
    with _line_server(
        [sys.executable, str(BENCH / "relay.py"), "--target", str(target), "--rtt", str(rtt)]
    ) as (port, _):
        yield port


@contextmanager
def aiosmtpd_server() -> Iterator[Server]:
    """aiosmtpd (no PIPELINING, no CHUNKING: lock-step), counting what it takes."""
    with _line_server([sys.executable, str(BENCH / "lockstep_server.py")]) as (port, proc):

        def received() -> int:
            assert proc.stdout is not None
            proc.send_signal(signal.SIGUSR1)
            return int(proc.stdout.readline().split()[0])

        yield Server(port, received)


@contextmanager
def postfix_discard() -> Iterator[Server]:
    """A private Postfix with CHUNKING that queues, then discards, every message."""
    with discard_mta.DiscardMTA(pinned([], SERVER_CPU)) as mta:
        yield Server(mta.port, mta.delivered)


SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[Server]]] = {
    "smtp-sink": smtp_sink,
    "aiosmtpd": aiosmtpd_server,
    "postfix": postfix_discard,
}


def server_missing(kind: str) -> str | None:
    """Why the server ``kind`` cannot run here, or None."""
    if kind == "postfix" and not postfix_available():
        return "a private Postfix needs root and Postfix (bash bench/run.sh installs it)"
    return None


# -- scenarios -------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    title: str
    unit: str  # "msgs/s" or "MB/s" or "MiB" (peak RSS, lower is better)
    peers: dict[str, Callable[[int], Sample]]
    runs: int
    relay_rtt: float = 0.0
    server: str = "smtp-sink"  # a key of SERVERS
    #: Peers run one process per message, taking turns (``measure_interleaved``):
    #: name -> the argv for a port; ``peers`` is then unused.
    interleaved: dict[str, Callable[[int], list[str]]] = field(default_factory=dict)
    per_run: int = 0
    stdin: Path | None = None  # the message, for the interleaved peers that read it there
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Whether the server counts what it takes (each run is then checked)."""
        return self.server != "smtp-sink"


def smtp_source(port: int, count: int, size: int, conns: int = 1, *, reuse: bool = True) -> Sample:
    """``smtp-source -s CONNS [-d]``: ``-d`` keeps each connection for the next message."""
    argv = [
        "smtp-source",
        "-s",
        str(conns),
        *(["-d"] if reuse else []),
        "-m",
        str(count),
        "-l",
        str(size),
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        f"127.0.0.1:{port}",
    ]
    return measure_command(argv, count, count * size)


def swaks_argv(port: int, msg: Path) -> list[str]:
    return [
        "swaks",
        "--server",
        "127.0.0.1",
        "--port",
        str(port),
        "--from",
        SENDER,
        "--to",
        RECIPIENT,
        "--data",
        f"@{msg}",
        "--silent",
        "2",
    ]


def msmtp_argv(port: int) -> list[str]:
    return [
        "msmtp",
        "--file=/dev/null",
        "--host=127.0.0.1",
        f"--port={port}",
        "--auth=off",
        "--tls=off",
        f"--from={SENDER}",
        RECIPIENT,
    ]


def smtpmail_cli_argv(port: int, msg: Path) -> list[str] | None:
    """``smtpmail send`` for one message, when this checkout's CLI has it."""
    sys.path.insert(0, str(SOURCE[0]))
    try:
        from smtpmail.cli import COMMANDS
    except ImportError:
        return None
    if "send" not in COMMANDS:
        return None
    return [
        *[*CLI[0], "send", "--host", "127.0.0.1", "--port", str(port)],
        *["--from", SENDER, "--to", RECIPIENT, "--message", str(msg)],
    ]


def build(args: argparse.Namespace, msg_file: Path, big_file: Path) -> list[Scenario]:
    q = args.quick
    runs = 1 if q else args.runs
    slow_runs = min(runs, 3)  # the 50 ms RTT scenarios: a minute or more per run
    # The CLI scenario: a process's start-up varies most from run to run (a
    # tenth either way on this kind of machine), and a run takes seconds.
    cli_runs = 3 * runs
    # The lock-step server (aiosmtpd, a Python server) sets the pace there: every
    # client, the bare loop too, lands within a few percent of the others, less
    # than a run moves, so three times the runs resolve the ratios.
    lockstep_runs = 3 * runs
    n1 = 500 if q else 10_000
    n_each = 5 if q else 50
    n3, size3 = (3, 5 * 2**20) if q else (20, 5 * 2**20)
    n5 = 10 if q else 100
    n7 = 100 if q else 1_000
    n9 = 40 if q else 400
    # Scenario 11: at a few hundred messages a second, 100 messages take less time
    # than the connection's set-up (connect, greeting, EHLO, QUIT: 4 round trips).
    n11 = 20 if q else 500
    kib = 1024
    big = big_file.stat().st_size

    def py(client: str, **kw: object) -> Callable[[int], Sample]:
        return lambda port: measure_python(client, port, **kw)

    with_mypyc = not getattr(args, "no_mypyc", False)

    def mypyc(client: str, **kw: object) -> Callable[[int], Sample]:
        """The same client on the mypyc build (``compiled_build``)."""
        return lambda port: measure_python(client, port, _compiled(), **kw)

    def source(n: int, size: int, conns: int = 1, reuse: bool = True) -> Callable[[int], Sample]:
        return lambda port: smtp_source(port, n, size, conns, reuse=reuse)

    def reused(
        n: int, size: int, loop: bool = False, compiled: bool = False, floor: bool = False
    ) -> dict[str, Callable[[int], Sample]]:
        """Every client on one connection it keeps for all ``n`` messages."""
        peers = {MANY: py("smtpmail", count=n, size=size)}
        if compiled and with_mypyc:
            peers[MANY_MYPYC] = mypyc("smtpmail", count=n, size=size)
        if loop:
            peers[LOOP] = py("smtpmail-send", count=n, size=size)
        peers[ASYNC_MANY] = py("smtpmail-async", count=n, size=size)
        peers[SOURCE_D] = source(n, size)
        if floor:
            peers[FLOOR] = py("floor", count=n, size=size)
        peers[SMTPLIB] = py("smtplib", count=n, size=size)
        peers[AIOSMTPLIB] = py("aiosmtplib", count=n, size=size)
        return peers

    def eight(
        n: int, compiled: bool = False, floor: bool = False
    ) -> dict[str, Callable[[int], Sample]]:
        """``n`` messages split over 8 connections, each kept for its share."""
        return {
            ASYNC_X8: py("smtpmail-async", count=n, size=kib, conns=8),
            **(
                {ASYNC_X8_MYPYC: mypyc("smtpmail-async", count=n, size=kib, conns=8)}
                if compiled and with_mypyc
                else {}
            ),
            THREADS_X8: py("smtpmail", count=n, size=kib, conns=8),
            SOURCE_X8: source(n, kib, 8),
            **({FLOOR_X8: py("floor-async", count=n, size=kib, conns=8)} if floor else {}),
            SMTPLIB_X8: py("smtplib", count=n, size=kib, conns=8),
            AIOSMTPLIB_X8: py("aiosmtplib", count=n, size=kib, conns=8),
        }

    per_message = {
        ONESHOT: py("smtpmail-oneshot", count=n7, size=kib),
        **({ONESHOT_MYPYC: mypyc("smtpmail-oneshot", count=n7, size=kib)} if with_mypyc else {}),
        ONESHOT_ASYNC: py("smtpmail-oneshot-async", count=n7, size=kib),
        SOURCE_EACH: source(n7, kib, reuse=False),
        SMTPLIB_EACH: py("smtplib-per-message", count=n7, size=kib),
    }
    from_file = {
        "smtpmail Client.send(file)": py("smtpmail", file=big_file),
        "smtpmail AsyncClient.send(file)": py("smtpmail-async", file=big_file),
        "smtp-source -s 1 (generates it)": source(1, big),
        "smtplib SMTP.sendmail (reads it whole)": py("smtplib", file=big_file),
        "aiosmtplib SMTP.sendmail (reads it whole)": py("aiosmtplib", file=big_file),
    }
    cli: dict[str, Callable[[int], list[str]]] = {}
    if smtpmail_cli_argv(0, msg_file) is not None:
        cli[CLI_SEND] = lambda p: smtpmail_cli_argv(p, msg_file) or []
    cli["swaks"] = lambda p: swaks_argv(p, msg_file)
    # The interpreter starting and stopping; then the floor of a CLI pip installs.
    cli[BARE_PYTHON] = lambda _p: [sys.executable, "-c", "pass"]
    cli[LAUNCHER_FLOOR] = lambda _p: CLI_FLOOR[0]
    cli["msmtp"] = msmtp_argv
    chunking = reused(n7, kib)
    return [
        Scenario(
            "1",
            f"{n1:,} messages of 1 KB, one reused connection",
            "msgs/s",
            reused(n1, kib, loop=True, compiled=True, floor=True),
            runs,
        ),
        Scenario(
            "2",
            f"{n1:,} messages of 1 KB over 8 connections, each reused",
            "msgs/s",
            eight(n1, compiled=True, floor=True),
            runs,
        ),
        Scenario(
            "3", f"{n3} messages of 5 MB, one reused connection", "MB/s", reused(n3, size3), runs
        ),
        Scenario("4", f"one message of {big / 2**20:,.0f} MiB from a file", "MiB", from_file, 1),
        Scenario(
            "5",
            f"{n5} messages of 1 KB at 50 ms RTT, one reused connection",
            "msgs/s",
            reused(n5, kib, loop=True),
            slow_runs,
            relay_rtt=0.05,
        ),
        Scenario(
            "6",
            "CLI: one process (and connection) per message",
            "msgs/s",
            {},
            cli_runs,
            interleaved=cli,
            per_run=n_each,
            stdin=msg_file,
        ),
        Scenario(
            "7",
            f"{n7:,} messages of 1 KB to a lock-step server (aiosmtpd: no "
            "PIPELINING), one reused connection",
            "msgs/s",
            {
                **reused(n7, kib, compiled=True),
                FLOOR_LOCKSTEP: py("floor-lockstep", count=n7, size=kib),
            },
            lockstep_runs,
            server="aiosmtpd",
        ),
        Scenario(
            "8",
            f"{n7:,} messages of 1 KB, a new connection per message",
            "msgs/s",
            per_message,
            runs,
        ),
        Scenario(
            "9",
            f"{n9} messages of 1 KB at 50 ms RTT over 8 connections, each reused",
            "msgs/s",
            eight(n9),
            slow_runs,
            relay_rtt=0.05,
        ),
        Scenario(
            "10",
            f"{n7:,} messages of 1 KB to Postfix with CHUNKING (queue on tmpfs), "
            "one reused connection",
            "msgs/s",
            chunking,
            runs,
            server="postfix",
        ),
        Scenario(
            "11",
            f"{n11} messages of 1 KB to Postfix with CHUNKING (queue on tmpfs) at 50 ms RTT, "
            f"one reused connection; {n11}, not 100, so that the set-up (connect, greeting, "
            "EHLO, QUIT: 4 round trips, 0.2 s, counted in) is not most of the run",
            "msgs/s",
            {k: v for k, v in reused(n11, kib).items() if k in (MANY, ASYNC_MANY, SOURCE_D)},
            slow_runs,
            relay_rtt=0.05,
            server="postfix",
        ),
    ]


def run_scenario(sc: Scenario, server: Server, port: int, only: set[str] | None) -> None:
    """Every run of ``sc`` against ``port`` (``server``'s, or a relay's in front of it)."""
    names = [n for n in sc.interleaved or sc.peers if not only or any(o in n for o in only)]
    for r in range(sc.runs):
        if sc.interleaved:
            argvs = {n: functools.partial(sc.interleaved[n], port) for n in names}
            try:
                samples = measure_interleaved(argvs, sc.per_run, 1024, sc.stdin)
            except Exception as exc:
                print(f"  {sc.key}: FAILED {exc}", file=sys.stderr)
                continue
            for name, sample in samples.items():
                sample.run = r
                _record(sc, name, sample)
            continue
        # Rotate the order so no peer always runs first (caches, CPU clocks).
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            try:
                sample = _checked(sc.peers[name], server, port)
            except Exception as exc:
                print(f"  {sc.key} {name}: FAILED {exc}", file=sys.stderr)
                continue
            sample.run = r
            _record(sc, name, sample)


def _checked(
    measure: Callable[[int], Sample], server: Server, port: int, patience: float = 60.0
) -> Sample:
    """One sample; with a counting server, only if it took every message the client sent.

    ``patience``: how long the server's count may take to catch up (seconds).
    """
    if server.received is None:
        return measure(port)
    before = server.received()
    sample = measure(port)
    want = before + sample.messages
    # Postfix discards after queueing: its count catches up shortly after.
    deadline = time.monotonic() + patience
    while (got := server.received()) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    if got != want:
        raise RuntimeError(f"the server took {got - before} of {sample.messages} messages")
    return sample


def _record(sc: Scenario, name: str, sample: Sample) -> None:
    sc.samples.setdefault(name, []).append(sample)
    print(
        f"  [{sc.key}] {name:34} {sample.rate:10.1f} msgs/s {sample.mbps:8.1f} MB/s "
        f"cpu {sample.cpu_per_message * 1e6:8.1f} µs/msg  rss {sample.rss_kib / 1024:7.1f} MiB",
        flush=True,
    )


def import_time(runs: int = 7) -> float:
    """Median cumulative µs of ``import smtpmail`` (python -X importtime)."""
    values = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import smtpmail"],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        ).stderr
        for line in out.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*smtpmail$", line)
            if m:
                values.append(int(m.group(1)))
    return statistics.median(values)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def results_folder(args: argparse.Namespace) -> tuple[Path, bool]:
    """Where results go, and whether this is a whole run (the results page shows only those).

    A smoke test or a run of some scenarios or peers writes beside the full
    results (``quick/``, ``partial/``), never over them.
    """
    whole = not (args.quick or args.only or args.peer or getattr(args, "source", None))
    default = BENCH / "results" / ("" if whole else "quick" if args.quick else "partial")
    return (args.out or default), whole


def main(argv: list[str]) -> int:
    # A killed bench still stops its servers and relay (the with-blocks unwind).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description="Benchmark smtpmail against its peers.")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    p.add_argument("--runs", type=int, default=5, help="runs per scenario (median reported)")
    p.add_argument("--only", action="append", help="scenario keys to run (e.g. 1 3)")
    p.add_argument("--peer", action="append", help="run only peers whose name contains this")
    p.add_argument(
        "--out", type=Path, help="results folder (default bench/results, or its quick/ or partial/)"
    )
    p.add_argument(
        "--source",
        type=Path,
        help="measure the smtpmail in this src folder (another commit's, for a before/after;"
        " its CLI starts at the entry point that the pyproject.toml beside it names)",
    )
    p.add_argument(
        "--no-readme", action="store_true", help=f"leave {PAGE.name} and the README alone"
    )
    p.add_argument("--no-chart", action="store_true")
    p.add_argument(
        "--no-mypyc",
        action="store_true",
        help="leave out the row of the mypyc build (building it takes a minute or more)",
    )
    args = p.parse_args(argv)
    # Postfix's tools live in /usr/sbin, which a user's PATH may lack.
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    if shutil.which("smtp-sink") is None:
        print("bench: smtp-sink is missing (bash bench/run.sh installs it)", file=sys.stderr)
        return 2
    for tool in ("smtp-source", "swaks", "msmtp"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing: its rows are skipped", file=sys.stderr)
    only = set(args.only or [])
    out, whole = results_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="smtpmail-bench-") as tmp:
        # Measure a snapshot of this checkout (edits during the run do not leak in),
        # byte-compiled as an installed package would be: the environment may forbid
        # writing .pyc files, and each CLI run would then compile every module.
        src = Path(tmp) / "src"
        shutil.copytree(
            args.source or ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__")
        )
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
        SOURCE[0] = src
        if not args.no_mypyc and (not only or only & MYPYC_SCENARIOS):
            COMPILED[0] = compiled_build(args.source or ROOT / "src", Path(tmp) / "mypyc")
        launcher, alone = write_launchers(Path(tmp) / "bin", Path(args.source or ROOT / "src"))
        CLI[0], CLI_FLOOR[0] = [str(launcher)], [str(alone)]
        msg_file = Path(tmp) / "message.eml"
        msg_file.write_bytes(make_message(1024))
        big_file = Path(tmp) / "big.eml"
        _write_big(big_file, 64 * 2**20 if args.quick else 2**30)
        scenarios = build(args, msg_file, big_file)
        for sc in scenarios:
            if only and sc.key not in only:
                continue
            print(f"scenario {sc.key}: {sc.title}", flush=True)
            if why := server_missing(sc.server):
                print(f"  {sc.key}: skipped: {why}", file=sys.stderr)
                continue
            with SERVERS[sc.server]() as server:
                if sc.relay_rtt:
                    with delay_relay(server.port, sc.relay_rtt) as relay:
                        run_scenario(sc, server, relay, set(args.peer or []))
                else:
                    run_scenario(sc, server, server.port, set(args.peer or []))
        imp = import_time()
        print(f"import smtpmail: {imp / 1000:.1f} ms")
    from report import write_results

    write_results(
        out,
        scenarios,
        imp,
        machine=machine(),
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        command=" ".join(["bash bench/run.sh", *argv]),
        chart=not args.no_chart,
        page=PAGE if whole and not args.no_readme else None,
        readme=README if whole and not args.no_readme else None,
    )
    print(f"results in {out} ({time.time() - started:.0f} s)")
    return 0


def _compiled() -> Path:
    if COMPILED[0] is None:
        raise RuntimeError("no mypyc build (see above why it failed)")
    return COMPILED[0]


def compiled_build(src: Path, folder: Path) -> Path | None:
    """The mypyc build of ``src`` (setup.py's opt-in), installed into ``folder``; None if
    it cannot be built here (no compiler or headers): its row is then left out.

    Built from a copy of the checkout with ``src`` in place, the way a user builds it
    (``SMTPMAIL_MYPYC=1``, pip's isolated build environment).
    """
    tree = folder / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "node_modules", "__pycache__", "results", "src"
        ),
    )
    shutil.copytree(src, tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "SMTPMAIL_MYPYC": "1"}
    print("building the mypyc variant (setup.py)...", flush=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    try:
        subprocess.run(
            [*pip, "wheel", "--no-deps", "-w", str(folder / "wheel"), str(tree)],
            check=True,
            env=env,
            capture_output=True,
        )
        wheels = [str(w) for w in (folder / "wheel").glob("*.whl")]
        subprocess.run(
            [*pip, "install", "--no-deps", "--target", str(folder / "site"), *wheels],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.decode(errors="replace")[-400:]
        print(f"bench: the mypyc build failed, its row is skipped: {why}", file=sys.stderr)
        return None
    return folder / "site"


def _write_big(path: Path, size: int) -> None:
    block = make_message(2**20)
    head, _, body = block.partition(b"\r\n\r\n")
    with open(path, "wb") as f:
        f.write(head + b"\r\n\r\n")
        written = len(head) + 4
        while written < size:
            chunk = body[: size - written]
            f.write(chunk)
            written += len(chunk)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
