"""The outbox's cost (issue 16): 10,000 messages to ``smtp-sink`` through the
PostgreSQL outbox with 1, 2 and 4 worker processes, against the folder
outbox (1 worker) and a bare :meth:`Client.send_many` on one connection.

``bash bench/run.sh --outbox`` (or this file with a Python that has psycopg
and this repository's test dependencies) starts a private PostgreSQL
(tests/support/pgserver.py: ``initdb`` + ``pg_ctl`` in a temporary folder) and
``smtp-sink``. For each store the messages are queued first (``add``, timed
apart) and then drained (timed from the workers' start to the last one's
exit). Reported: messages/s drained, microseconds per ``add``, and what the
queue costs per message beyond the bare send (:data:`QUEUE_COST`). Two
columns depend little or not at all on the machine's load: the CPU time per
message of the workers and of the database server (its processes, those
that ended included), and the database's write transactions (commits) per
message. With ``--runs N`` the scenarios run in turn N times (so that a
change in the machine's load falls on all of them alike, not on one) and
each one's run with the median drain time is reported. The issue's targets
are printed as met or not met: PostgreSQL with 1 worker at least 50% of the
folder's rate, and more workers never slower (5% for noise). Results go to
``bench/results/outbox.md`` and ``outbox.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SRC = ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT / "tests")]

from smtpmail import Client  # noqa: E402
from smtpmail.message import Envelope  # noqa: E402
from smtpmail.outbox import Outbox  # noqa: E402

SENDER, RECIPIENT = "bench@example.org", "sink@example.net"
QUEUE_COST = (
    "queue cost µs/msg = add µs/msg + 10⁶/drained rate - 10⁶/send_many's rate: "
    "the time the queue adds to each message (storing it, then claiming, marking and "
    "recording it while it is drained) beyond sending it with send_many on one connection."
)
COLUMNS = (
    "worker CPU ms/msg: user + system time of the worker processes per message drained; "
    "database CPU ms/msg: the same for the PostgreSQL server's processes; "
    "commits/msg: write transactions in the database per message drained (PostgreSQL); "
    "workers' start s: from spawning the worker processes until all had imported smtpmail "
    "and opened the store, not counted in the drain (workers are long-lived processes)."
)
#: Each worker process: 2 connections; per_server high enough that the
#: database-wide limit (all workers together) never caps 4 workers. Started,
#: it says "ready" and waits for "go": a worker is a long-lived process, so the
#: drain is timed from when all are running (start-up is shown apart). It
#: reports its CPU time for the drain alone (every thread).
WORKER = """
import sys, time
from smtpmail.outbox import Outbox, Worker
box = Outbox(sys.argv[1])
worker = Worker(box, port=int(sys.argv[2]), connections=2, per_server=8, batch=50)
print("ready", flush=True)
sys.stdin.readline()
cpu = time.process_time()
worker.run()
print(time.process_time() - cpu, flush=True)
box.close()
"""


def message(i: int) -> bytes:
    body = "".join(f"line {n} of a plain message of about one kilobyte\r\n" for n in range(18))
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: outbox bench {i}\r\n"
        f"Message-ID: <{i}.outbox-bench@example.org>\r\n\r\n{body}"
    ).encode()


@dataclass
class Row:
    name: str
    workers: int
    messages: int
    add_seconds: float
    drain_seconds: float
    cpu_seconds: float = 0.0
    commits: int | None = None
    db_cpu_seconds: float | None = None
    #: From spawning the worker processes until all are ready (imports, opening the store).
    start_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.drain_seconds

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.cpu_seconds / self.messages

    @property
    def add_us(self) -> float:
        return 1e6 * self.add_seconds / self.messages if self.add_seconds else 0.0


@contextmanager
def smtp_sink() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    argv = ["smtp-sink", *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}"]
    proc = subprocess.Popen([*argv, "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def bare(count: int, port: int) -> Row:
    start = time.perf_counter()
    with Client("127.0.0.1", port) as client:
        envelope = Envelope(SENDER, [RECIPIENT])
        client.send_many((envelope, message(i)) for i in range(count))
    return Row("send_many, no queue", 1, count, 0.0, time.perf_counter() - start)


def server_cpu(data: Path | None) -> float | None:
    """CPU seconds used so far by the PostgreSQL server whose data folder is
    ``data``: its postmaster, its live processes, and those it has reaped
    (each worker's backend ends with the worker). Linux's /proc; None without."""
    if data is None:
        return None
    try:
        master = int((data / "postmaster.pid").read_text().split()[0])
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # (ended meanwhile)
            if int(entry.name) == master:
                ticks += sum(int(f) for f in fields[11:15])  # own and reaped children's
            elif int(fields[1]) == master:
                ticks += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def queued(
    name: str, location: str, workers: int, count: int, port: int, data: Path | None = None
) -> Row:
    box = Outbox(location)
    box.migrate()
    start = time.perf_counter()
    for i in range(count):
        box.add(message(i), SENDER, [RECIPIENT])
    added = time.perf_counter() - start
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    spawned = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, location, str(port)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{name}: a worker did not start")
    started = time.perf_counter() - spawned
    xid = next_xid(location)
    db_cpu = server_cpu(data)
    start = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    cpu = 0.0
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"{name}: a worker failed")
        cpu += float(out.split()[-1])
    drained = time.perf_counter() - start
    db_after = server_cpu(data)
    after = next_xid(location)
    commits = None if xid is None or after is None else after - xid - 1
    depth = box.depth()
    box.close()
    if depth["delivered"] != count:
        raise RuntimeError(f"{name}: not all delivered: {depth}")
    db = None if db_cpu is None or db_after is None else db_after - db_cpu
    return Row(name, workers, count, added, drained, cpu, commits, db, started)


def next_xid(location: str) -> int | None:
    """A new transaction id of the database (None for a folder): the difference of
    two is the number of write transactions between them, plus one."""
    if not location.startswith("postgresql://"):
        return None
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    return None if row is None else int(row[0])


def measure(runs: int, scenarios: dict[str, Callable[[], Row]]) -> dict[str, Row]:
    """Each scenario's run with the median drain time; the scenarios run in
    turn, ``runs`` times."""
    done: dict[str, list[Row]] = {name: [] for name in scenarios}
    for _ in range(runs):
        for name, make in scenarios.items():
            done[name].append(make())
    medians = {}
    for name, rows in done.items():
        rows.sort(key=lambda r: r.drain_seconds)
        medians[name] = rows[len(rows) // 2]
    return medians


def targets(rows: dict[str, Row]) -> list[tuple[str, bool]]:
    pg = [rows[f"pg{n}"] for n in (1, 2, 4)]
    checks = [
        (
            "PostgreSQL, 1 worker >= 50% of the folder's rate",
            pg[0].rate >= 0.5 * rows["folder"].rate,
        )
    ]
    for fewer, more in itertools.pairwise(pg):
        checks.append(
            (
                f"{more.workers} workers not slower than {fewer.workers} (5% noise)",
                more.rate >= 0.95 * fewer.rate,
            )
        )
    return checks


def table(rows: dict[str, Row], checks: list[tuple[str, bool]]) -> str:
    base = rows["bare"]
    lines = [
        "| scenario | workers | messages | drained msg/s | add µs/msg | queue cost µs/msg"
        " | worker CPU ms/msg | database CPU ms/msg | commits/msg | workers' start s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows.values():
        cost = 1e6 / row.rate - 1e6 / base.rate + row.add_us if row is not base else 0.0
        commits = "" if row.commits is None else f"{row.commits / row.messages:.2f}"
        cpu = f"{row.cpu_ms:.2f}" if row.cpu_seconds else ""
        db = "" if row.db_cpu_seconds is None else f"{1e3 * row.db_cpu_seconds / row.messages:.2f}"
        start = f"{row.start_seconds:.2f}" if row.start_seconds else ""
        lines.append(
            f"| {row.name} | {row.workers} | {row.messages} | {row.rate:,.0f} | "
            f"{row.add_us:,.0f} | {cost:,.0f} | {cpu} | {db} | {commits} | {start} |"
        )
    lines += ["", f"- {QUEUE_COST}", f"- {COLUMNS}"]
    lines += [f"- {what}: **{'met' if ok else 'not met'}**" for what, ok in checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="The outbox's throughput and cost per message.")
    p.add_argument("--count", type=int, default=10_000, help="messages per scenario")
    p.add_argument("--quick", action="store_true", help="500 messages: a smoke test")
    p.add_argument("--runs", type=int, default=1, help="runs per scenario (median reported)")
    p.add_argument("--out", type=Path, help="results folder (bench/results, --quick: its quick/)")
    args = p.parse_args(argv)
    count = 500 if args.quick else args.count
    out = args.out or BENCH / "results" / ("quick" if args.quick else "")
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    if shutil.which("smtp-sink") is None:
        print("outbox bench: smtp-sink is missing (bash bench/run.sh installs it)", file=sys.stderr)
        return 2
    from support.pgserver import PostgresServer

    load_before = os.getloadavg()
    pg = PostgresServer()
    pg.start()
    try:
        with smtp_sink() as port, tempfile.TemporaryDirectory() as tmp:
            folders = iter(range(1_000_000))
            scenarios: dict[str, Callable[[], Row]] = {
                "bare": lambda: bare(count, port),
                "folder": lambda: queued(
                    "folder outbox", f"{tmp}/q{next(folders)}", 1, count, port
                ),
            }
            for n in (1, 2, 4):

                def on_postgres(n: int = n) -> Row:
                    url = pg.create_database()
                    return queued("PostgreSQL outbox", url, n, count, port, pg.data)

                scenarios[f"pg{n}"] = on_postgres
            rows = measure(args.runs, scenarios)
    finally:
        pg.stop()
    checks = targets(rows)
    text = table(rows, checks)
    loads = zip(load_before, os.getloadavg(), strict=True)
    load = " / ".join(f"{a:.1f} → {b:.1f}" for a, b in loads)
    head = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"{args.runs} run(s) per scenario, in turn (the median's row); load average (1/5/15 min) "
        f"at the start → the end: {load}. Drained = from the moment every worker was "
        "running to the last one's exit.\n\n"
    )
    print(head + text, end="")
    out.mkdir(parents=True, exist_ok=True)
    (out / "outbox.md").write_text(f"# The outbox: {count} messages to smtp-sink\n\n" + head + text)
    data = {
        "rows": {k: {**asdict(r), "rate": r.rate} for k, r in rows.items()},
        "targets": dict(checks),
    }
    (out / "outbox.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
