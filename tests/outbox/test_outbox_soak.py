"""The PostgreSQL outbox drained by 4 "machines" (network namespaces) while
they are killed, the database crashes and one machine's network is cut.

The hub namespace runs PostgreSQL and a recording SMTP server; each worker
runs in a namespace of its own and reaches both over a veth link, as a
separate machine would. This test process stays in the root namespace and
talks to PostgreSQL over its Unix socket (namespaces do not separate those)
and reads what the SMTP server recorded from a file.

2,000 messages. Workers are SIGKILLed at random and restarted; PostgreSQL is
restarted once with ``pg_ctl restart -m immediate`` (a crash: WAL replay);
one machine's link goes down for three times its lease (its leases expire,
others take its messages over). At the end: every message delivered, 0 lost,
and every message the server received more than once is marked possibly
delivered. Bounded: a fixed number of kills, and a deadline.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpmail.errors import OutboxError
from smtpmail.outbox import Outbox
from support.netns import HUB_ADDRESS, Network, require_netns
from support.pgserver import PostgresServer, pg_bin
from support.postfix import wait_for

COUNT = 2000
LEASE = 2.0
KILLS = 25
SMTP_PORT = 2525
#: A worker is killed each time this many more messages have arrived: by
#: progress, not by the clock, so that on a loaded machine (where a restarted
#: worker takes long to start) the kills cannot stop the run getting anywhere.
KILL_EVERY = COUNT // (3 * KILLS)
#: Seconds from the workers' start for the faults and the drain together: a
#: guard against a hang, far above a run's length on a busy machine.
DEADLINE = 900

WORKER = textwrap.dedent(
    """
    import sys, time
    from smtpmail.errors import OutboxError
    from smtpmail.outbox import Outbox, Worker
    from smtpmail.outbox.schedule import RetrySchedule
    url, host, port, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    box = Outbox(url, lease=lease, schedule=RetrySchedule(first=0.2, maximum=0.5))
    worker = Worker(box, host, port, connections=2, batch=10, timeout=5)
    while True:
        try:
            worker.run()
        except OutboxError:
            pass  # the database went away or the link is down: leases expire, marks stay
        time.sleep(0.1)
    """
)

# Records each message's Subject (one line) before answering 250 to its end of data.
RECORDER = textwrap.dedent(
    """
    import sys, time, email, email.policy
    from aiosmtpd.controller import Controller
    out = open(sys.argv[3], "a", buffering=1)
    class Handler:
        async def handle_DATA(self, server, session, envelope):
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            out.write(str(parsed["Subject"]) + "\\n")
            out.flush()
            return "250 2.0.0 recorded"
    Controller(Handler(), hostname=sys.argv[1], port=int(sys.argv[2])).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)
    """
)


class HubPostgres(PostgresServer):
    """PostgreSQL in the hub namespace: TCP on the hub's address for the
    machines, a Unix socket in its folder for this test process."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.network = network

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # pg_ctl forks the server from inside the namespace: it stays there.
        command = [pg_bin(program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(
            ["ip", "netns", "exec", self.network.hub, *command],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=self.root,
        )

    def listen(self) -> str:
        return f"-c listen_addresses={HUB_ADDRESS} -c unix_socket_directories='{self.root}'"

    def ready(self) -> bool:
        probe = self._run("pg_isready", "-h", str(self.root), "-p", str(self.port), check=False)
        return probe.returncode == 0

    def start(self) -> None:
        first = not self.data.exists()
        super().start()
        if first:  # the machines connect from the namespaces' subnet
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {HUB_ADDRESS}/24 trust\n")
            self._run("pg_ctl", "-D", str(self.data), "reload")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def machine_url(self, local_url: str) -> str:
        database = local_url.split("?", maxsplit=1)[0].rsplit("/", 1)[1]
        return f"postgresql://postgres@{HUB_ADDRESS}:{self.port}/{database}"


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    net = Network(4)
    yield net
    net.close()


# About a minute and a half alone; more on a busy CI machine. The run's own
# deadline (DEADLINE) ends it before this does.
@pytest.mark.timeout(480)
def test_four_machines_killed_cut_off_and_a_database_crash_lose_nothing(
    tmp_path: Path, network: Network
) -> None:
    pg = HubPostgres(network)
    received_file = tmp_path / "received.txt"
    received_file.touch()
    recorder_script = tmp_path / "recorder.py"
    recorder_script.write_text(RECORDER)
    worker_script = tmp_path / "worker.py"
    worker_script.write_text(WORKER)
    processes: list[subprocess.Popen[bytes]] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        local = pg.create_database()
        remote = pg.machine_url(local)
        recorder = network.popen(
            network.hub,
            [sys.executable, str(recorder_script), HUB_ADDRESS, str(SMTP_PORT), str(received_file)],
            stdout=subprocess.PIPE,
        )
        processes.append(recorder)
        assert recorder.stdout is not None and recorder.stdout.readline().strip() == b"ready"

        box = Outbox(local)
        box.migrate()
        for i in range(COUNT):
            box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"])

        def start(machine: int) -> subprocess.Popen[bytes]:
            return network.popen(
                network.machines[machine],
                [
                    sys.executable,
                    str(worker_script),
                    remote,
                    HUB_ADDRESS,
                    str(SMTP_PORT),
                    str(LEASE),
                ],
                stderr=subprocess.DEVNULL,
            )

        def received() -> int:
            return len(received_file.read_text().splitlines())

        workers += [start(m) for m in range(4)]
        rng = random.Random(16)
        kills, n, restarted, cut_at, mended = 0, 0, False, None, False
        killed_at = 0  # messages received at the last kill
        deadline = time.monotonic() + DEADLINE
        # Until the faults have all happened and KILLS kills, or the mail all went.
        while time.monotonic() < deadline and not (mended and (kills >= KILLS or n >= COUNT)):
            time.sleep(rng.uniform(0.2, 0.6))
            n = received()
            if not restarted and n >= COUNT // 5:
                pg.restart_immediate()
                restarted = True
            if cut_at is None and n >= COUNT // 3:
                network.cut(0)
                cut_at = time.monotonic()
            if cut_at is not None and not mended and time.monotonic() - cut_at > 3 * LEASE:
                network.mend(0)
                mended = True
            cutting = cut_at is not None and not mended
            if n - killed_at < KILL_EVERY:
                continue  # kills follow progress, so a slow machine's workers still get on
            killed_at = n
            victim = rng.randrange(1 if cutting else 0, 4)  # the cut machine stays cut off
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            workers[victim] = start(victim)
            kills += 1
        if cut_at is not None and not mended:
            network.mend(0)
        assert restarted and cut_at is not None, "the run ended before the faults"

        def drained() -> bool:
            try:
                depth = box.depth()
            except OutboxError:
                return False
            return depth["queued"] + depth["deferred"] == 0

        wait_for("every message to be done", drained, limit=max(deadline - time.monotonic(), 30))
        records = {m.id: m for m in box.messages()}
        box.close()
    finally:
        for p in [*workers, *processes]:
            p.kill()
            p.wait()
        pg.stop()
    subjects = received_file.read_text().splitlines()
    counts: dict[str, int] = {}
    for s in subjects:
        counts[s] = counts.get(s, 0) + 1
    assert len(records) == COUNT
    assert all(m.status == "delivered" for m in records.values())  # 0 lost, none failed
    assert set(counts) == {f"m{i}" for i in range(COUNT)}  # each reached the server
    by_subject = {m.subject: m for m in records.values()}
    unmarked = [s for s, n in counts.items() if n > 1 and not by_subject[s].possible_duplicates]
    assert not unmarked, f"received more than once without a mark: {unmarked}"
    assert all(
        m.recipients[0].possibly_delivered for m in records.values() if counts[m.subject or ""] > 1
    )
    # The faults bit: attempts were abandoned mid-way and taken over.
    assert sum(m.possible_duplicates for m in records.values()) > 0
