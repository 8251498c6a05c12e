"""What operators watch: ``queue run --metrics`` (Prometheus, scraped over HTTP
while a real run delivers to a real server) and ``--log-format`` (one line per
attempt), on both stores."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smtpmail.cli.exits import EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE
from smtpmail.outbox import Observers, Outbox, State, Worker
from smtpmail.outbox.attemptlog import AttemptLog
from smtpmail.outbox.metrics import Metrics
from smtpmail.outbox.postgres import PostgresOutbox
from support.clirun import run_cli
from support.postfix import wait_for
from support.servers import RecordingServer, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(port: int) -> Samples | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return _samples(r.read().decode())
    except OSError:
        return None  # not serving yet


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(params=["folder", "postgresql"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], Outbox]]:
    """The CLI's location options and the same outbox opened here."""
    if request.param == "folder":
        where = ["--queue-dir", str(tmp_path / "q")]
        box = Outbox(tmp_path / "q")
    else:
        url = request.getfixturevalue("pg_url")
        where = ["--queue-url", url]
        box = Outbox(url)
        box.migrate()
    yield where, box
    box.close()


def test_metrics_are_served_while_a_run_delivers_and_each_attempt_is_logged(
    queue: tuple[list[str], Outbox], smtpd: RecordingServer
) -> None:
    where, box = queue
    smtpd.handler.refuse = {"nobody@x.net": "550 5.1.1 no such user"}
    box.add(b"Subject: 0\r\n\r\n0\r\n", "a@example.org", ["b@x.net"])
    split = box.add(
        b"Subject: 1\r\nBcc: hidden@x.net\r\n\r\n1\r\n",
        "a@example.org",
        ["b@x.net", "nobody@x.net", "hidden@x.net"],
    )
    box.add(b"Subject: 2\r\n\r\n2\r\n", "a@example.org", ["c@x.net"])
    port = free_port()
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smtpmail",
            "queue",
            *where,
            "run",
            "--watch",
            "--poll",
            "0.2",
            "--port",
            str(smtpd.port),
            "--metrics",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Scraped from the running worker: the queue's depth read from the store.
        def drained() -> Samples | None:
            assert run.poll() is None, run.communicate()
            s = _scrape(port)
            if s is None:
                return None
            # The depth is read from the store, the counters follow each outcome saved.
            tried = sum(v for (name, _), v in s.items() if name == "smtpmail_outbox_attempts_total")
            done = _value(s, "smtpmail_outbox_messages", state="delivered") == 2 and tried == 3
            return s if done else None

        samples = wait_for("the metrics to show the queue drained", drained, limit=60)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
    assert run.returncode == EX_UNAVAILABLE, err  # a recipient failed
    dest = f"127.0.0.1:{smtpd.port}"
    assert _value(samples, "smtpmail_outbox_messages", state="failed") == 1
    assert _value(samples, "smtpmail_outbox_messages", state="queued") == 0
    attempts = "smtpmail_outbox_attempts_total"
    assert _value(samples, attempts, destination=dest, outcome="delivered") == 2
    assert _value(samples, attempts, destination=dest, outcome="partial") == 1
    recipients = "smtpmail_outbox_recipients_total"
    assert _value(samples, recipients, destination=dest, code="250", state="delivered") == 4
    assert _value(samples, recipients, destination=dest, code="550", state="failed") == 1
    assert _value(samples, "smtpmail_outbox_send_seconds_count", destination=dest) == 3
    assert _value(samples, "smtpmail_outbox_lease_expiries_total") == 0

    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    attempts_logged = {line["id"]: line for line in lines if line["event"] == "attempt"}
    assert len(attempts_logged) == 3, err
    line = attempts_logged[split.id]
    assert line["destination"] == dest
    assert line["recipients"] == 3 and line["codes"] == [250, 550]
    assert line["outcome"] == "partial" and line["possibly_delivered"] is False
    assert line["message_id"] == box.load(split.id).message_id
    assert line["latency"] > 0 and line["time"].endswith("Z") and line["worker"]
    assert "hidden@x.net" not in err and "nobody@x.net" not in err  # no addresses, no Bcc
    if "--queue-url" in where:
        assert "postgresql://" not in err  # the URL may hold a password


def test_a_lease_taken_over_counts_an_expiry_and_a_possible_duplicate(pg_url: str) -> None:
    first = PostgresOutbox(pg_url, lease=0.5)
    first.migrate()
    queued = first.add(b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@example.net"])
    claim = first.claim(queued.id)
    assert claim is not None
    claim.message.inflight = {"since": 1.0, "pid": 1, "recipients": ["b@example.net"]}
    claim.save()
    first.close()  # cut off: its lease runs out, its in-flight mark stays
    second = PostgresOutbox(pg_url, lease=30)
    metrics = Metrics(second)
    lines: list[str] = []
    log = AttemptLog(lines.append, worker="second")
    second.observer = Observers(metrics, log)
    taken = wait_for("the lease to expire", lambda: second.claim(queued.id))
    taken.release()
    served = metrics.serve("127.0.0.1:0")
    try:
        samples = _scrape(served.port)
    finally:
        served.close()
    assert samples is not None
    assert _value(samples, "smtpmail_outbox_lease_expiries_total") == 1
    assert _value(samples, "smtpmail_outbox_possibly_delivered_total", how="abandoned") == 1
    assert _value(samples, "smtpmail_outbox_messages", state="queued") == 1
    assert [line.split()[1] for line in lines] == ["event=lease_expired", "event=abandoned"]
    assert all(line.endswith("worker=second\n") for line in lines)
    second.close()


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([State.DELIVERED, State.DELIVERED], "delivered"),
        ([State.DEFERRED, State.QUEUED], "deferred"),
        ([State.FAILED, State.DELIVERED], "failed"),
        ([State.QUEUED, State.QUEUED], "queued"),
    ],
)
def test_the_depth_in_sql_agrees_with_the_message_status(
    pg_url: str, states: list[State], expected: str
) -> None:
    box = PostgresOutbox(pg_url)
    box.migrate()
    queued = box.add(b"x", "a@example.org", ["b@x.net", "c@x.net"])
    claim = box.claim(queued.id)
    assert claim is not None
    for r, state in zip(claim.message.recipients, states, strict=True):
        r.state = state
    claim.save()
    claim.release()
    assert box.load(queued.id).status == expected
    depth = box.depth()
    assert depth[expected] == 1 and sum(depth.values()) == 1
    box.close()


def test_an_attempt_whose_connection_failed_still_names_its_destination(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q")
    box.add(b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@x.net"])
    lines: list[str] = []
    box.observer = AttemptLog(lines.append, format="json")
    port = free_port()  # nothing listens there
    Worker(box, "127.0.0.1", port).run()
    (line,) = [json.loads(text) for text in lines]
    assert line["destination"] == f"127.0.0.1:{port}"
    assert line["outcome"] == "deferred" and line["codes"] == [] and line["recipients"] == 1
    assert line["latency"] is None  # it never went out


def test_a_bad_or_taken_metrics_address_is_refused_clearly(tmp_path: Path) -> None:
    queue = ["queue", "--queue-dir", str(tmp_path / "q"), "run", "--port", "9"]
    result = run_cli(*queue, "--metrics", "9464")
    assert result.status == EX_USAGE and "HOST:PORT" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_cli(*queue, "--metrics", address)
    assert result.status == EX_TEMPFAIL
    assert f"cannot serve metrics on {address}" in result.stderr
