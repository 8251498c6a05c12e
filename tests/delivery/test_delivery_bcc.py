"""deliver() and the outbox in direct mode keep Bcc and Resent-Bcc off the wire.

Real DNS and real aiosmtpd MX hosts (mxworld.py): the blind recipients of
two domains each get the message, and no MX host sees a Bcc field.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpmail
from smtpmail.outbox import Outbox, Worker
from support.delivery.mxworld import OK, OK2, MXWorld, StartServer
from support.dkimcheck import ALGORITHMS, verify_dns

pytestmark = pytest.mark.timeout(60)

MESSAGE = (
    b"From: a@sender.test\r\n"
    b"To: to@failover.test\r\n"
    b"Bcc: blind@failover.test,\r\n"
    b" blind@other.test\r\n"
    b"Subject: blind copies\r\n"
    b"\r\n"
    b"Bcc: body text stays\r\n"
)
SENT = MESSAGE.replace(b"Bcc: blind@failover.test,\r\n blind@other.test\r\n", b"")
RECIPIENTS = ["to@failover.test", "blind@failover.test", "blind@other.test"]


def _options(world: MXWorld) -> dict[str, object]:
    return {"nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deliver_removes_bcc_for_every_domain(
    world: MXWorld, start: StartServer, mode: str
) -> None:
    ok, ok2 = start(OK), start(OK2)
    if mode == "sync":
        report = smtpmail.deliver(MESSAGE, "a@sender.test", RECIPIENTS, **_options(world))  # type: ignore[arg-type]
    else:
        report = asyncio.run(
            smtpmail.deliver_async(MESSAGE, "a@sender.test", RECIPIENTS, **_options(world))  # type: ignore[arg-type]
        )
    assert report.ok, report
    (first,), (second,) = ok.messages, ok2.messages
    assert first.content == second.content == SENT
    assert sorted(first.rcpt_tos) == ["blind@failover.test", "to@failover.test"]
    assert second.rcpt_tos == ["blind@other.test"]


def test_deliver_email_message_and_keep_bcc(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    msg = EmailMessage()
    msg["From"] = "a@sender.test"
    msg["To"] = "to@failover.test"
    msg["Bcc"] = "blind@failover.test"
    msg.set_content("hello\n")
    assert smtpmail.deliver(msg, **_options(world)).ok  # type: ignore[arg-type]
    recipients = ["to@failover.test"]
    assert smtpmail.deliver(
        MESSAGE, "a@sender.test", recipients, keep_bcc=True, **_options(world)
    ).ok  # type: ignore[arg-type]
    removed, kept = ok.messages
    assert b"blind@" not in removed.content
    assert sorted(removed.rcpt_tos) == ["blind@failover.test", "to@failover.test"]
    assert kept.content == MESSAGE


def test_outbox_direct_mode(tmp_path: Path, world: MXWorld, start: StartServer) -> None:
    ok, ok2 = start(OK), start(OK2)
    box = Outbox(tmp_path)
    box.add(MESSAGE, "a@sender.test", RECIPIENTS)
    Worker(box, direct=_options(world)).run()
    (first,), (second,) = ok.messages, ok2.messages
    assert b"blind@" not in first.content + second.content
    assert first.content.endswith(b"\r\n\r\nBcc: body text stays\r\n")
    assert second.rcpt_tos == ["blind@other.test"]


def test_send_direct_message_file(tmp_path: Path, world: MXWorld, start: StartServer) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env

    ok, ok2 = start(OK), start(OK2)
    (address, port) = world.nameservers[0]
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    argv = ["send", "--message", str(eml), "--direct", "--dns-server", f"{address}#{port}"]
    argv += ["--no-mta-sts", "--ehlo-name", "client.test"]
    assert main(env=fake_env(tmp_path, argv)) == 0
    assert main(env=fake_env(tmp_path, [*argv, "--keep-bcc"])) == 0
    removed, kept = ok.messages
    assert removed.content == SENT and kept.content == MESSAGE
    assert [m.rcpt_tos for m in ok2.messages] == [["blind@other.test"]] * 2


# -- DKIM: signed after the Bcc rule, verified with the key served by the test DNS ------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deliver_signs_what_it_sends(
    world: MXWorld, start: StartServer, mode: str, algorithm: str
) -> None:
    ok, ok2 = start(OK), start(OK2)
    key = world.dkim[algorithm]
    options = {**_options(world), "dkim": key}
    if mode == "sync":
        report = smtpmail.deliver(MESSAGE, "a@sender.test", RECIPIENTS, **options)  # type: ignore[arg-type]
    else:
        report = asyncio.run(
            smtpmail.deliver_async(MESSAGE, "a@sender.test", RECIPIENTS, **options)  # type: ignore[arg-type]
        )
    assert report.ok, report
    (first,), (second,) = ok.messages, ok2.messages
    assert first.content == second.content  # signed once, the same bytes to each domain
    assert first.content.endswith(SENT) and b"blind@" not in first.content
    assert first.content.startswith(b"DKIM-Signature: v=1; a=" + algorithm.encode())
    assert verify_dns(first.content, world.nameservers[0])
    assert not verify_dns(first.content.replace(b"body text", b"body texT"), world.nameservers[0])


def test_outbox_direct_mode_signs(tmp_path: Path, world: MXWorld, start: StartServer) -> None:
    ok, ok2 = start(OK), start(OK2)
    box = Outbox(tmp_path)
    queued = box.add(MESSAGE, "a@sender.test", RECIPIENTS)
    stored = box.eml_path(queued.id).read_bytes()
    Worker(box, direct={**_options(world), "dkim": world.dkim["ed25519-sha256"]}).run()
    for got in (*ok.messages, *ok2.messages):
        assert verify_dns(got.content, world.nameservers[0])
        assert b"blind@" not in got.content
    assert box.eml_path(queued.id).read_bytes() == stored and b"DKIM" not in stored


def test_send_direct_with_dkim_flags(tmp_path: Path, world: MXWorld, start: StartServer) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env
    from support.dkimcheck import key_file

    ok, ok2 = start(OK), start(OK2)
    (address, port) = world.nameservers[0]
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    argv = ["send", "--message", str(eml), "--direct", "--dns-server", f"{address}#{port}"]
    argv += ["--no-mta-sts", "--ehlo-name", "client.test", "--dkim-selector", "rsa"]
    argv += [
        "--dkim-domain",
        "sender.test",
        "--dkim-key",
        str(key_file(world.workdir, "rsa-sha256")),
    ]
    assert main(env=fake_env(tmp_path, argv)) == 0
    for got in (*ok.messages, *ok2.messages):
        assert verify_dns(got.content, world.nameservers[0])
    assert len(ok.messages) == len(ok2.messages) == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_opendkim_verifies_with_the_key_from_dns(
    tmp_path: Path, world: MXWorld, start: StartServer, algorithm: str
) -> None:
    """OpenDKIM looks the key up on the test DNS server."""
    from support.dkimcheck import opendkim_dns_config, opendkim_verifies

    ok = start(OK)
    report = smtpmail.deliver(
        MESSAGE,
        "a@sender.test",
        ["to@failover.test"],
        dkim=world.dkim[algorithm],
        **_options(world),
    )  # type: ignore[arg-type]
    assert report.ok, report
    (got,) = ok.messages
    config = opendkim_dns_config(tmp_path, world.nameservers[0][0])
    assert opendkim_verifies(got.content, tmp_path, config)
    assert not opendkim_verifies(got.content.replace(b"stays", b"goes"), tmp_path, config)
