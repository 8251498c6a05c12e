"""The outbox worker in direct mode: to each recipient domain's MX hosts, via real DNS.

Uses the loopback Internet of mxworld.py (dnsmasq and aiosmtpd on port 25).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mxworld import OK, MXWorld

from conftest import StartServer
from smtpmail.outbox import Outbox, RetrySchedule, State, Worker

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

    from clirun import fake_env
    from smtpmail.cli import main

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
