"""The outbox worker in direct mode: to each recipient domain's MX hosts, via real DNS.

Uses the loopback Internet of mxworld.py (dnsmasq and aiosmtpd on port 25).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smtpmail.outbox import Outbox, RetrySchedule, State, Worker
from support.delivery.mxworld import OK, OK2, MXWorld, StartServer
from support.diskfull import LONG_REPLY, check_full_disk_then_space
from support.hostile.scripted import ScriptedServer, drop_after_dot, plain

pytestmark = pytest.mark.timeout(60)


def test_outbox_delivers_to_mx_hosts_and_keeps_per_recipient_state(
    tmp_path: Path, world: MXWorld, start: StartServer
) -> None:
    ok = start(OK)
    ok.handler.refuse.update(
        {"bad@failover.test": "550 5.1.1 no such user", "later@failover.test": ["452 4.2.2 full"]}
    )
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    queued = box.add(
        b"Subject: direct\r\n\r\nHello MX.\r\n",
        "a@sender.test",
        ["good@failover.test", "bad@failover.test", "later@failover.test"],
    )
    direct = {"nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False}
    stats = Worker(box, direct=direct).run()
    assert (stats.delivered, stats.deferred, stats.failed) == (1, 1, 1)
    msg = box.load(queued.id)
    states = {r.address: r.state for r in msg.recipients}
    assert states == {
        "good@failover.test": State.DELIVERED,
        "bad@failover.test": State.FAILED,
        "later@failover.test": State.DEFERRED,
    }
    good = msg.recipient("good@failover.test")
    assert good is not None and good.reply is not None and "ok.failover.test" in good.reply
    # The retry goes to the deferred recipient only, through DNS again.
    Worker(box, direct=direct).run()
    msg = box.load(queued.id)
    assert msg.done and msg.count(State.DELIVERED) == 2
    assert [m.rcpt_tos for m in ok.messages] == [["good@failover.test"], ["later@failover.test"]]


def test_send_queue_direct_and_queue_run_direct(
    tmp_path: Path, world: MXWorld, start: StartServer
) -> None:
    import io

    from smtpmail.cli import main
    from support.clirun import fake_env

    ok = start(OK)
    ok.handler.refuse.update({"later@failover.test": ["451 4.3.0 try later"]})
    (address, port) = world.nameservers[0]
    direct = ["--direct", "--dns-server", f"{address}#{port}", "--no-mta-sts"]
    direct += ["--ehlo-name", "client.test"]
    qdir = ["--queue-dir", str(tmp_path / "q")]
    send = ["send", "--from", "a@sender.test", "--to", "later@failover.test", "--body", "x"]
    env = fake_env(tmp_path, [*send, "--queue", *qdir, *direct])
    assert main(env=env) == 0  # deferred, but safe in the outbox
    assert isinstance(env.stderr, io.StringIO) and "queued as" in env.stderr.getvalue()
    box = Outbox(tmp_path / "q")
    assert [m.status for m in box.messages()] == ["deferred"]
    box.retry()
    env = fake_env(tmp_path, ["queue", *qdir, "run", *direct])
    assert main(env=env) == 0
    assert [m.status for m in box.messages()] == ["delivered"]
    assert [m.rcpt_tos for m in ok.messages] == [["later@failover.test"]]


DIRECT = {"ehlo_name": "client.test", "mta_sts": False}


def test_a_hang_up_after_the_dot_is_possibly_delivered_and_the_retry_marked(
    tmp_path: Path, world: MXWorld
) -> None:
    """The rule the relay path follows (test_outbox_worker.py), through MX delivery."""
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    queued = box.add(b"Subject: direct\r\n\r\nHello MX.\r\n", "a@sender.test", ["x@other.test"])
    worker = Worker(box, direct={**DIRECT, "nameservers": world.nameservers})
    with ScriptedServer(drop_after_dot(), then=[plain()], host=world.ip(OK2), port=25) as mx:
        stats = worker.run()
        assert (stats.deferred, stats.possibly_delivered) == (1, 1)
        msg = box.load(queued.id)
        (r,) = msg.recipients
        assert r.state is State.DEFERRED and r.possibly_delivered
        assert msg.possible_duplicates == 1 and r.reply and "mx.other.test" in r.reply
        worker.run()
        msg = box.load(queued.id)
        (r,) = msg.recipients
        assert r.state is State.DELIVERED and r.possibly_delivered  # the retry stays marked
        assert msg.possible_duplicates == 1
        # Two copies went out, the same bytes: the same Message-ID.
        assert len(mx.messages) == 2 and mx.messages[0] == mx.messages[1]
        assert f"Message-ID: {msg.message_id}".encode() in mx.messages[0]


def test_queue_run_direct_reports_possibly_delivered(tmp_path: Path, world: MXWorld) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env

    (address, port) = world.nameservers[0]
    direct = ["--direct", "--dns-server", f"{address}#{port}", "--no-mta-sts"]
    qdir = ["--queue-dir", str(tmp_path / "q")]
    box = Outbox(tmp_path / "q")
    queued = box.add(b"Subject: direct\r\n\r\nHello MX.\r\n", "a@sender.test", ["x@other.test"])

    def cli(*argv: str) -> tuple[int, str]:
        env = fake_env(tmp_path, ["queue", *qdir, *argv])
        status = main(env=env)
        return status, env.stdout.getvalue()  # type: ignore[attr-defined]

    with ScriptedServer(drop_after_dot(), host=world.ip(OK2), port=25) as mx:
        status, out = cli("run", *direct)
        assert status == 75
        assert f"{queued.id} <a@sender.test>: 1 deferred, possibly delivered" in out
        assert "1 possibly delivered" in out
        out = cli("show", queued.id)[1]
        assert "<x@other.test>  deferred (possibly delivered already)" in out
        (line,) = [x for x in out.splitlines() if "<x@other.test>" in x]
        assert line.endswith(")") and "  (next: in " in line  # its own next attempt
        assert "duplicates:  1 attempt(s) may have delivered it already" in out
        (shown,) = json.loads(cli("show", "--json", queued.id)[1])["messages"]
        assert shown["recipients"][0]["possibly_delivered"]
        # The retry is marked too; given up on, the report says it may have arrived.
        cli("retry")
        assert cli("run", *direct, "--give-up", "0")[0] == 69
        msg = box.load(queued.id)
        assert msg.status == "failed" and msg.possible_duplicates == 2
        assert "an earlier attempt may have delivered it" in cli("report")[1]
        (entry,) = json.loads(cli("report", "--json")[1])["failures"]
        assert entry["possibly_delivered"] is True
        assert len(mx.messages) == 2 and mx.messages[0] == mx.messages[1]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", ["mark", "outcome"])
def test_queue_run_direct_on_a_full_disk(tmp_path: Path, world: MXWorld, fault: str) -> None:
    """tests/outbox/test_outbox_disk.py's check, through the MX hosts (Worker(direct=...))."""
    box = Outbox(tmp_path)
    for i in range(5):
        box.add(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), "a@sender.test", [f"r{i}@other.test"])
    (address, port) = world.nameservers[0]
    direct = ["--direct", "--dns-server", f"{address}#{port}", "--no-mta-sts"]
    with ScriptedServer(plain(data_reply=LONG_REPLY), host=world.ip(OK2), port=25) as mx:
        check_full_disk_then_space(tmp_path, fault, direct, lambda: list(mx.messages))


def test_a_552_to_rcpt_is_deferred_not_bounced_in_direct_delivery(
    tmp_path: Path, world: MXWorld, start: StartServer
) -> None:
    """RFC 5321 §4.5.3.1.10: a 552 to RCPT is the old "too many recipients",
    temporary, whether others of the transaction were taken or not."""
    ok = start(OK)
    old = "552 5.5.3 too many recipients"
    ok.handler.refuse.update({"later@failover.test": [old, old]})
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    shared = box.add(
        b"Subject: a\r\n\r\nx\r\n", "a@sender.test", ["good@failover.test", "later@failover.test"]
    )
    alone = box.add(b"Subject: b\r\n\r\nx\r\n", "a@sender.test", ["later@failover.test"])
    direct = {"nameservers": world.nameservers, **DIRECT}
    Worker(box, direct=direct).run()
    for queued in (shared, alone):
        later = box.load(queued.id).recipient("later@failover.test")
        assert later is not None and later.state is State.DEFERRED and later.code == 552
    Worker(box, direct=direct).run()
    assert all(m.done and m.count(State.DELIVERED) == len(m.recipients) for m in box.messages())
