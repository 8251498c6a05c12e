"""What only the PostgreSQL outbox has: migrations, leases across workers, the
CLI on a database URL, and a kill -9 run (workers and the server itself)."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from smtpmail.cli import main
from smtpmail.errors import OutboxError
from smtpmail.outbox import Outbox, State, Worker
from smtpmail.outbox.postgres import PostgresOutbox
from smtpmail.outbox.postgres.schema import LATEST
from support.clirun import fake_env
from support.jsoncontract import check
from support.pgserver import PostgresServer
from support.postfix import wait_for
from support.servers import RecordingServer


def _run(tmp_path: Path, argv: list[str], stdin: str = "", **environ: str) -> tuple[int, str, str]:
    env = fake_env(tmp_path, argv)
    env.environ.update(environ)
    env.stdin = io.StringIO(stdin)
    status = main(env=env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return status, env.stdout.getvalue(), env.stderr.getvalue()


def _subject(content: bytes) -> str:
    return str(email.message_from_bytes(content, policy=email.policy.default)["Subject"])


def _version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM smtpmail_schema").fetchone()
    assert row is not None
    return int(row[0])


# -- migrations ------------------------------------------------------------------


def test_an_empty_database_is_refused_until_migrated(pg_url: str) -> None:
    box = Outbox(pg_url)
    assert isinstance(box, PostgresOutbox)
    with pytest.raises(OutboxError, match="queue migrate"):
        box.ids()
    assert box.migrate() == f"the schema went from version 0 to {LATEST}"
    assert box.migrate() == f"the schema is at version {LATEST}, nothing to do"
    assert box.ids() == [] and _version(pg_url) == LATEST
    box.close()


def test_migration_from_the_previous_schema_keeps_what_was_queued(pg_url: str) -> None:
    old = PostgresOutbox(pg_url)
    old.migrate(target=LATEST - 1)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as the previous version stored it
        conn.execute(
            "INSERT INTO smtpmail_messages (id, sender, created, size, next_attempt) "
            "VALUES ('0123456789ab-01234567', 'a@example.org', 1.0, 2, 1234.5)"
        )
        conn.execute(
            "INSERT INTO smtpmail_recipients (message, position, address, state) "
            "VALUES ('0123456789ab-01234567', 0, 'b@example.net', 'queued')"
        )
        conn.execute(
            "INSERT INTO smtpmail_chunks VALUES ('0123456789ab-01234567', 0, 'x\n'::bytea)"
        )
    with pytest.raises(OutboxError, match=f"version {LATEST - 1}"):
        old.ids()
    assert old.migrate() == f"the schema went from version {LATEST - 1} to {LATEST}"
    # Version 5: each recipient's next attempt, the message's for those queued before.
    (recipient,) = old.load("0123456789ab-01234567").recipients
    assert recipient.next_attempt == 1234.5
    claim = old.claim("0123456789ab-01234567")
    assert claim is not None and claim.content.read() == b"x\n"
    claim.release()
    old.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    box = PostgresOutbox(pg_url)
    box.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE smtpmail_schema SET version = %s", (LATEST + 1,))
    fresh = PostgresOutbox(pg_url)
    with pytest.raises(OutboxError, match="newer than this smtpmail"):
        fresh.ids()
    with pytest.raises(OutboxError, match="newer than this smtpmail"):
        fresh.migrate()
    box.close()
    fresh.close()


# -- leases ----------------------------------------------------------------------


def test_an_expired_lease_is_taken_over_and_its_holder_can_no_longer_save(pg_url: str) -> None:
    first = PostgresOutbox(pg_url, lease=0.5)
    first.migrate()
    queued = first.add(b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@example.net"])
    claim = first.claim(queued.id)
    assert claim is not None
    claim.message.inflight = {"since": 1.0, "pid": 1, "recipients": ["b@example.net"]}
    claim.save()
    first.close()  # cut off: no heartbeat renews the lease any more
    second = PostgresOutbox(pg_url, lease=30)
    taken = wait_for("the lease to expire", lambda: second.claim(queued.id))
    assert taken.recovered and taken.message.recipients[0].possibly_delivered
    claim.message.recipients[0].state = State.DELIVERED
    with pytest.raises(OutboxError, match="lease was lost"):
        first.save(claim.message)
    taken.release()
    assert not second.load(queued.id).done
    second.close()


def test_an_outcome_whose_lease_was_lost_is_not_saved_and_neither_is_the_next_mark(
    pg_url: str,
) -> None:
    first = PostgresOutbox(pg_url, lease=0.5)
    first.migrate()
    ids = [first.add(b"x", "a@example.org", [f"b{i}@example.net"]).id for i in range(3)]
    kept, lost, marked = first.claim_many(ids)
    first.close()  # cut off: no heartbeat renews the leases any more
    second = PostgresOutbox(pg_url, lease=30)
    taken = wait_for("a lease to expire", lambda: second.claim(lost.message.id))
    for claim in (kept, lost):
        claim.message.recipients[0].state = State.DELIVERED
        claim.message.last_error = "the outcome"
    marked.message.inflight = {"since": 1.0, "pid": 1, "recipients": ["b2@example.net"]}
    errors = first.finish_many([kept, lost], mark=marked)
    # The outcome still leased is stored (each message is its own); the one taken
    # over is not, and the mark after it is not either: that message is not sent.
    assert errors[0] is None
    assert errors[1] is not None and "lease was lost" in str(errors[1])
    assert errors[2] is not None and "not marked" in str(errors[2])
    assert second.load(kept.message.id).done
    assert second.load(kept.message.id).last_error == "the outcome"
    assert not second.load(lost.message.id).done
    assert second.load(marked.message.id).inflight is None
    taken.release()
    first.close()
    second.close()


def test_a_heartbeat_keeps_a_lease_held_beyond_its_length(pg_url: str) -> None:
    holder = PostgresOutbox(pg_url, lease=2.0)
    holder.migrate()
    queued = holder.add(b"x", "a@example.org", ["b@example.net"])
    claim = holder.claim(queued.id)
    assert claim is not None
    other = PostgresOutbox(pg_url)
    for _ in range(3):  # together longer than the lease: only the heartbeat keeps it
        time.sleep(1.0)
        assert other.claim(queued.id) is None
    claim.release()
    assert other.claim(queued.id) is not None
    holder.close()
    other.close()


def test_queue_list_shows_a_dead_workers_leases_until_they_end(tmp_path: Path, pg_url: str) -> None:
    """A worker claims two messages and dies (no heartbeat, leases not given
    back): no other worker takes them until the leases end. ``queue list``
    said "now" for both; it now says they are leased, by whom and until
    when, and once a lease ended, that the next worker takes the message over."""
    setup = PostgresOutbox(pg_url)
    setup.migrate()
    long_id = setup.add(b"Subject: a\r\n\r\na\r\n", "a@example.org", ["b@example.net"]).id
    short_id = setup.add(b"Subject: b\r\n\r\nb\r\n", "a@example.org", ["c@example.net"]).id
    setup.close()
    dead = PostgresOutbox(pg_url, lease=300)
    assert dead.claim(long_id) is not None
    dead.close()  # gone: its lease stays until it ends
    brief = PostgresOutbox(pg_url, lease=0.5)
    assert brief.claim(short_id) is not None
    brief.close()
    q = ["queue", "--queue-url", pg_url]
    status, out, _ = wait_for(
        "the short lease to end",
        lambda: (r := _run(tmp_path, [*q, "list"]))[1].count(" leased ") == 1 and r,
    )
    assert status == 0
    long_line, short_line = (
        next(line for line in out.splitlines() if line.startswith(i)) for i in (long_id, short_id)
    )
    assert " leased " in long_line and f"[leased by {dead.owner} until " in long_line
    assert " now " not in long_line
    assert " now " in short_line and f"[the lease of {brief.owner} ended at " in short_line
    status, out, _ = _run(tmp_path, [*q, "show", long_id])
    assert "next:        leased" in out and f"lease:       leased by {dead.owner}" in out
    status, out, _ = _run(tmp_path, [*q, "list", "--json"])
    leases = {m["id"]: m["lease"] for m in check(out, status)["messages"]}
    assert leases[long_id]["owner"] == dead.owner and leases[long_id]["held"] is True
    assert leases[short_id]["owner"] == brief.owner and leases[short_id]["held"] is False
    taker = PostgresOutbox(pg_url)
    assert taker.claim(long_id) is None  # held, as the listing said
    claim = taker.claim(short_id)
    assert claim is not None  # taken over, as the listing said
    claim.release()
    status, out, _ = _run(tmp_path, [*q, "list", "--json"])
    assert {m["id"]: m["lease"] for m in check(out, status)["messages"]}[short_id] is None
    taker.close()


# -- the command line --------------------------------------------------------------


def test_the_queue_commands_on_a_database_url(
    tmp_path: Path, pg_url: str, smtpd: RecordingServer
) -> None:
    letter = "From: a@example.org\nTo: b@example.net, c@example.net\nSubject: queued\n\nhello\n"
    smtpd.handler.refuse = {"c@example.net": "550 5.1.1 no such user"}
    q = ["queue", "--queue-url", pg_url]
    status, _, err = _run(tmp_path, [*q, "add"], letter)
    assert status != 0 and "queue migrate" in err
    status, out, _ = _run(tmp_path, [*q, "migrate"])
    assert status == 0 and f"to {LATEST}" in out
    status, out, _ = _run(tmp_path, ["queue", "add"], letter, SMTPMAIL_QUEUE_URL=pg_url)
    assert status == 0
    msg_id = out.strip()
    status, out, _ = _run(tmp_path, [*q, "list"])
    assert msg_id in out and "b@example.net(q)" in out
    status, out, _ = _run(tmp_path, [*q, "run", "--port", str(smtpd.port)])
    assert status == 69 and "1 delivered, 1 failed" in out
    status, out, _ = _run(tmp_path, [*q, "show", msg_id[:10], "--json"])
    (record,) = json.loads(out)["messages"]
    states = {r["address"]: r["status"] for r in record["recipients"]}
    assert states == {"b@example.net": "delivered", "c@example.net": "failed"}
    status, out, _ = _run(tmp_path, [*q, "report"])
    assert "<c@example.net>: 550 5.1.1 no such user" in out
    assert "1 message(s) removed" in _run(tmp_path, [*q, "purge"])[1]
    # send --queue puts it in the same database
    send = ["send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.net"]
    status, _, err = _run(
        tmp_path, [*send, "--subject", "sent", "--body", "hi", "--queue", "--queue-url", pg_url]
    )
    assert status == 0, err
    assert [m.subject for m in Outbox(pg_url).messages()] == ["sent"]
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"], ["b@example.net"]]


def test_run_watch_wakes_when_mail_is_added(pg_url: str, smtpd: RecordingServer) -> None:
    box = Outbox(pg_url)
    box.migrate()
    worker = Worker(box, port=smtpd.port)
    done = threading.Thread(target=worker.run_forever, kwargs={"poll": 3600.0})
    done.start()
    try:
        time.sleep(0.3)  # the worker is asleep, listening (poll: an hour)
        with Outbox(pg_url) as other:
            queued = other.add(b"Subject: wake\r\n\r\nx\r\n", "a@example.org", ["b@example.net"])
            wait_for("the message to be delivered", lambda: other.load(queued.id).done)
    finally:
        worker.stop()
        done.join()
    assert [_subject(m.content) for m in smtpd.messages] == ["wake"]


# -- what a message costs ------------------------------------------------------------


def _next_xid(url: str) -> int:
    """The id of a new write transaction (it takes one itself)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def test_a_small_message_comes_with_its_claim_and_a_large_one_is_read_as_it_is_sent(
    pg_url: str,
) -> None:
    box = Outbox(pg_url)
    box.migrate()
    small = box.add(b"Subject: small\r\n\r\n" + b"x" * 1000 + b"\r\n", "a@x.org", ["b@x.net"])
    large = box.add(b"Subject: large\r\n\r\n" + b"y" * 100_000 + b"\r\n", "a@x.org", ["b@x.net"])
    claims = box.claim_many([small.id, large.id])
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what is read from now on
        conn.execute("DELETE FROM smtpmail_chunks")
    by_id = {c.message.id: c for c in claims}
    assert by_id[small.id].content.read().endswith(b"x" * 1000 + b"\r\n")  # no query needed
    with pytest.raises(OSError, match="missing"):
        by_id[large.id].content.read()
    for claim in claims:
        claim.release()
    box.close()


def test_each_message_costs_one_commit_its_mark_carrying_the_outcome_before_it(
    pg_url: str, smtpd: RecordingServer
) -> None:
    count = 20
    box = Outbox(pg_url)
    box.migrate()
    for i in range(count):
        box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("smtpmail_messages", "smtpmail_recipients", "smtpmail_chunks"):
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    before = _next_xid(pg_url)
    stats = Worker(box, port=smtpd.port, connections=1, batch=count).run()
    box.close()
    commits = _next_xid(pg_url) - before - 1  # write transactions (each takes an id)
    assert stats.delivered == count and len(smtpd.messages) == count
    # One claim, one transaction per message (its end-of-data mark and the
    # outcomes settled by then), and the last outcomes when the batch ends:
    # not a mark and an outcome each (2 * count + 1).
    assert commits <= count + 2, commits
    assert all(m.status == "delivered" and m.inflight is None for m in Outbox(pg_url).messages())


class _TracedOutbox(PostgresOutbox):
    """The database store with libpq's trace of the protocol on each connection."""

    def __init__(self, url: str, folder: Path) -> None:
        super().__init__(url)
        self.folder = folder

    def connect(self) -> psycopg.Connection[Any]:
        conn = super().connect()
        path = self.folder / f"trace-{len(list(self.folder.glob('trace-*')))}"
        # (the trace's FILE owns the descriptor: closed with the connection's trace)
        conn.pgconn.trace(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        return conn

    def round_trips(self) -> int:
        """The server's answers so far: each round trip ends with a ReadyForQuery."""
        return sum(
            line.startswith("B\t5\tReadyForQuery\t")
            for path in self.folder.glob("trace-*")
            for line in path.read_text(errors="replace").splitlines()
        )


def test_each_message_costs_one_round_trip_to_the_database(
    pg_url: str, smtpd: RecordingServer, tmp_path: Path
) -> None:
    count = 20
    with Outbox(pg_url) as box:
        box.migrate()
        for i in range(count):
            box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"])
    traced = _TracedOutbox(pg_url, tmp_path)
    stats = Worker(traced, port=smtpd.port, connections=1, batch=count).run()
    trips = traced.round_trips()
    traced.close()
    assert stats.delivered == count and len(smtpd.messages) == count
    # Each message: one statement with its end-of-data mark and the outcome
    # before it (not BEGIN, an UPDATE per row, COMMIT). Per run, a dozen more:
    # setting up the connections, the schema check, routing, the claim, the
    # shared backoff, a connection slot, the last outcome.
    assert trips <= count + 12, trips


# -- kill -9 -----------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    from smtpmail.errors import OutboxError
    from smtpmail.outbox import Outbox, Worker
    from smtpmail.outbox.schedule import RetrySchedule
    box = Outbox(sys.argv[1], lease=1.5, schedule=RetrySchedule(first=0.2, maximum=0.5))
    worker = Worker(box, port=int(sys.argv[2]), connections=2, batch=5)
    while True:
        try:
            worker.run()
        except OutboxError:
            pass  # the database went away: the leases expire, the marks stay
        time.sleep(0.1)
    """
)


def test_workers_killed_at_random_and_a_server_crash_lose_nothing(
    tmp_path: Path, postgres: PostgresServer, pg_url: str, smtpd: RecordingServer
) -> None:
    box = Outbox(pg_url)
    box.migrate()
    count = 200
    ids = {
        box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"]).id
        for i in range(count)
    }
    box.close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    rng = random.Random(16)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), pg_url, str(smtpd.port)], stderr=subprocess.DEVNULL
        )

    workers = [start() for _ in range(4)]
    kills = killed_at = 0
    restarted = False
    try:
        # Kill while mail flows, each time a few more messages have arrived (by
        # progress, not by the clock: fast workers could otherwise finish before
        # the faults); the database crashes once, between two kills.
        while len(smtpd.messages) < count and kills < 30:
            time.sleep(rng.uniform(0.005, 0.05))
            received_now = len(smtpd.messages)
            if received_now - killed_at < rng.randint(3, 12):
                continue
            killed_at = received_now
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            workers[victim] = start()
            kills += 1
            if kills == 4:
                postgres.restart_immediate()
                restarted = True
        with Outbox(pg_url) as check:
            wait_for(
                "every message to be done",
                lambda: all(m.done for m in check.messages()),
                limit=90,
            )
    finally:
        for w in workers:
            w.kill()
            w.wait()
    received: dict[str, int] = {}
    for m in smtpd.messages:
        subject = _subject(m.content)
        received[subject] = received.get(subject, 0) + 1
    with Outbox(pg_url) as check:
        records = {m.id: m for m in check.messages()}
    assert set(records) == ids
    assert all(m.status == "delivered" for m in records.values())  # 0 lost
    assert set(received) == {f"m{i}" for i in range(count)}
    duplicates = [s for s, n in received.items() if n > 1]
    by_subject = {m.subject: m for m in records.values()}
    for subject in duplicates:  # every copy beyond the first is marked
        assert by_subject[subject].recipients[0].possibly_delivered, subject
    assert restarted and kills >= 4


# -- limits across workers ---------------------------------------------------------

PACED_WORKER = textwrap.dedent(
    """
    import sys
    from smtpmail.outbox import Outbox, Worker
    rate = float(sys.argv[3]) if sys.argv[3] != "-" else None
    box = Outbox(sys.argv[1])
    Worker(box, port=int(sys.argv[2]), connections=3, per_server=3, batch=4,
           per_server_rate=rate).run()
    """
)


def _four_workers(tmp_path: Path, url: str, port: int, rate: float | None) -> None:
    script = tmp_path / "paced.py"
    script.write_text(PACED_WORKER)
    workers = [
        subprocess.Popen([sys.executable, str(script), url, str(port), str(rate or "-")])
        for _ in range(4)
    ]
    for w in workers:
        assert w.wait(timeout=120) == 0


def test_four_workers_never_open_more_than_three_connections_to_one_server(
    tmp_path: Path, pg_url: str, smtpd: RecordingServer
) -> None:
    box = Outbox(pg_url)
    box.migrate()
    for i in range(120):
        box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"])
    _four_workers(tmp_path, pg_url, smtpd.port, None)  # 4 x 3 wanted, 3 allowed
    assert all(m.status == "delivered" for m in box.messages())
    assert len(smtpd.messages) == 120
    assert 1 <= smtpd.connections.peak <= 3
    box.close()


def test_the_rate_per_server_holds_across_four_workers(
    tmp_path: Path, pg_url: str, smtpd: RecordingServer
) -> None:
    rate, count = 10.0, 41
    box = Outbox(pg_url)
    box.migrate()
    for i in range(count):
        box.add(f"Subject: m{i}\r\n\r\n{i}\r\n".encode(), "a@example.org", ["b@x.net"])
    _four_workers(tmp_path, pg_url, smtpd.port, rate)
    assert all(m.status == "delivered" for m in box.messages())
    times = sorted(m.at for m in smtpd.messages)
    assert len(times) == count
    # Starts are spaced 1/rate apart by all four workers together: the messages
    # cannot arrive faster than that (10% for the spread of each one's sending).
    observed = (count - 1) / (times[-1] - times[0])
    assert observed <= rate * 1.1, observed
    box.close()


def test_a_busy_signal_pauses_the_server_for_every_worker(
    pg_url: str, smtpd: RecordingServer
) -> None:
    smtpd.handler.refuse = {"b@x.net": "421 4.7.0 too many messages, slow down"}
    first = Outbox(pg_url)
    first.migrate()
    first.add(b"Subject: 1\r\n\r\n1\r\n", "a@example.org", ["b@x.net"])
    stats = Worker(first, port=smtpd.port, busy_backoff=600).run()
    assert stats.busy_signals == 1
    connections = len(smtpd.wire)
    with Outbox(pg_url) as other:  # another worker (on another machine: the same database)
        later = other.add(b"Subject: 2\r\n\r\n2\r\n", "a@example.org", ["c@x.net"])
        Worker(other, port=smtpd.port).run()
        assert len(smtpd.wire) == connections  # it did not even connect
        record = other.load(later.id)
        assert record.status == "deferred" and "slow down" in (record.last_error or "")
        assert record.next_attempt > time.time() + 500  # until the shared pause ends
    first.close()


def test_merge_and_the_config_files_queue_key_use_the_database(
    tmp_path: Path, pg_url: str, smtpd: RecordingServer
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'queue = "{pg_url}"\n')
    assert _run(tmp_path, ["queue", "migrate"], SMTPMAIL_CONFIG=str(config))[0] == 0
    (tmp_path / "letter.eml").write_text(
        "From: a@example.org\nTo: {{name}} <{{email}}>\nSubject: Hi {{name}}\n\nHello.\n"
    )
    (tmp_path / "people.csv").write_text("name,email\nBob,bob@example.net\nAnn,ann@example.net\n")
    merge = ["merge", "--template", str(tmp_path / "letter.eml")]
    merge += ["--data", str(tmp_path / "people.csv"), "--port", str(smtpd.port)]
    status, _, err = _run(tmp_path, merge, SMTPMAIL_CONFIG=str(config))
    assert status == 0, err
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == ["ann@example.net", "bob@example.net"]
    # Run again: every row's key is in the database, nothing is queued or sent twice.
    status, _, err = _run(tmp_path, merge, SMTPMAIL_CONFIG=str(config))
    assert status == 0 and "2 row(s) already queued" in err
    assert len(smtpd.messages) == 2
    with Outbox(pg_url) as box:
        assert sorted(m.subject or "" for m in box.messages()) == ["Hi Ann", "Hi Bob"]


def test_run_watch_outlives_a_database_restart(
    postgres: PostgresServer, pg_url: str, smtpd: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker kept running (``queue run --watch``) waits for the database to
    come back, then delivers what is queued after the restart."""
    box = Outbox(pg_url)
    box.migrate()
    worker = Worker(box, port=smtpd.port)
    done = threading.Thread(target=worker.run_forever, kwargs={"poll": 0.2})
    done.start()
    try:
        postgres.crash()
        try:
            wait_for(
                "a pass to fail",
                lambda: "the next pass in" in caplog.text or not done.is_alive(),
            )
        finally:
            postgres.start()
        assert done.is_alive()
        with Outbox(pg_url) as other:
            queued = other.add(b"Subject: after\r\n\r\nx\r\n", "a@example.org", ["b@example.net"])
            wait_for("the message to be delivered", lambda: other.load(queued.id).done)
    finally:
        worker.stop()
        done.join()
        box.close()
    assert [_subject(m.content) for m in smtpd.messages] == ["after"]
