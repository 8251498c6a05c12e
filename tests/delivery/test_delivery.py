"""Direct delivery against real DNS (dnsmasq) and real SMTP servers on loopback port 25.

See tests/mxworld.py for the loopback Internet these tests build.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import threading
from typing import Any

import pytest

import smtpmail
from smtpmail.delivery import (
    MTASTS,
    DeliveryStatus,
    PolicyCache,
    Resolver,
)
from smtpmail.transport.tls import TLSOptions
from support.delivery.mxworld import BUSY, OK, OK2, TLS_BAD, TLS_GOOD, MXWorld, StartServer
from support.hostile.scripted import (
    ScriptedServer,
    close,
    ehlo_reply,
    expect,
    plain,
    respond,
    send,
)
from support.servers import Recorder, RecordingServer

pytestmark = pytest.mark.timeout(60)

MESSAGE = b"From: a@sender.test\r\nSubject: direct\r\n\r\nHello MX.\r\n"
SENDER = "a@sender.test"


class Busy(Recorder):
    """Answers EHLO with 421, as an overloaded MX does."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return ["421 4.3.2 too busy, try another host"]


def deliver(world: MXWorld, recipients: list[str], **kw: Any) -> smtpmail.DeliveryReport:
    kw.setdefault("mta_sts", False)
    kw.setdefault("ehlo_name", "client.test")
    return smtpmail.deliver(MESSAGE, SENDER, recipients, nameservers=world.nameservers, **kw)


async def deliver_async(
    world: MXWorld, recipients: list[str], **kw: Any
) -> smtpmail.DeliveryReport:
    kw.setdefault("mta_sts", False)
    kw.setdefault("ehlo_name", "client.test")
    return await smtpmail.deliver_async(
        MESSAGE, SENDER, recipients, nameservers=world.nameservers, **kw
    )


# -- MX failover ---------------------------------------------------------------------


def _check_failover(
    world: MXWorld, report: smtpmail.DeliveryReport, busy: RecordingServer, ok: RecordingServer
) -> None:
    assert report.ok, report
    for rcpt in ("x@failover.test", "y@failover.test"):
        outcome = report.recipients[rcpt]
        assert outcome.status is DeliveryStatus.DELIVERED
        assert (outcome.mx, outcome.address, outcome.code) == (
            "ok.failover.test",
            world.ip(OK),
            250,
        )
        # Preference order: the host that is down (both its addresses), then the 421 one.
        hosts = [a.split("[")[0] for a in outcome.attempts]
        assert hosts == ["down.failover.test"] * (len(hosts) - 1) + ["busy.failover.test"]
        # Each host's addresses, IPv6 first.
        assert outcome.attempts[0].startswith("down.failover.test[::1]")
        assert outcome.attempts[1].startswith(f"down.failover.test[{world.ip(2)}]")
        assert "421" in outcome.attempts[-1]
    # The busy host was asked (EHLO) and took nothing; the message arrived once.
    assert any(c.startswith(b"EHLO") for c in busy.commands())
    assert busy.messages == []
    assert len(ok.messages) == 1
    assert ok.messages[0].rcpt_tos == ["x@failover.test", "y@failover.test"]
    assert ok.messages[0].content.endswith(b"Hello MX.\r\n")


def test_failover_skips_a_down_host_and_a_421_host(world: MXWorld, start: StartServer) -> None:
    busy, ok = start(BUSY, Busy()), start(OK)
    report = deliver(world, ["x@failover.test", "y@failover.test"])
    _check_failover(world, report, busy, ok)


async def test_failover_async(world: MXWorld, start: StartServer) -> None:
    busy, ok = start(BUSY, Busy()), start(OK)
    report = await deliver_async(world, ["x@failover.test", "y@failover.test"])
    _check_failover(world, report, busy, ok)


def test_each_recipient_gets_its_own_outcome(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    ok.handler.refuse.update(
        {"bad@failover.test": "550 5.1.1 no such user", "later@failover.test": "452 4.2.2 full"}
    )
    report = deliver(world, ["good@failover.test", "bad@failover.test", "later@failover.test"])
    good, bad, later = report.recipients.values()
    assert good.status is DeliveryStatus.DELIVERED and good.code == 250
    assert (bad.status, bad.code, bad.enhanced_status) == (DeliveryStatus.FAILED, 550, "5.1.1")
    assert bad.mx == "ok.failover.test" and "no such user" in bad.text
    assert (later.status, later.code, later.enhanced_status) == (
        DeliveryStatus.DEFERRED,
        452,
        "4.2.2",
    )
    assert report.delivered == ["good@failover.test"]
    assert report.failed == ["bad@failover.test"]
    assert report.deferred == ["later@failover.test"]
    assert [m.rcpt_tos for m in ok.messages] == [["good@failover.test"]]


def test_recipients_over_the_hosts_limit_are_delivered_in_further_transactions(
    world: MXWorld, start: StartServer
) -> None:
    # RFC 5321 §4.5.3.1.10: the rest on the same connection, not deferred.
    ok = start(OK, handler=Recorder(rcpt_limit=2))
    rcpts = [f"r{i}@failover.test" for i in range(5)]
    report = deliver(world, rcpts)
    assert report.ok, report
    assert report.delivered == rcpts
    assert {r.code for r in report.recipients.values()} == {250}
    assert [m.rcpt_tos for m in ok.messages] == [rcpts[0:2], rcpts[2:4], rcpts[4:]]
    assert len([w for w in ok.wire if w]) == 1  # one connection


async def test_recipients_over_the_hosts_limit_async(world: MXWorld, start: StartServer) -> None:
    ok = start(OK, handler=Recorder(rcpt_limit=1))
    rcpts = ["x@failover.test", "y@failover.test"]
    report = await smtpmail.deliver_async(
        MESSAGE, SENDER, rcpts, nameservers=world.nameservers, mta_sts=False,
        ehlo_name="client.test",
    )  # fmt: skip
    assert report.delivered == rcpts
    assert [m.rcpt_tos for m in ok.messages] == [["x@failover.test"], ["y@failover.test"]]


def test_4xx_to_every_recipient_tries_the_next_host(world: MXWorld, start: StartServer) -> None:
    first, second = start(BUSY), start(OK)
    first.handler.refuse["x@failover.test"] = "451 4.3.0 try later"
    report = deliver(world, ["x@failover.test"])
    outcome = report.recipients["x@failover.test"]
    assert outcome.delivered and outcome.mx == "ok.failover.test"
    assert first.messages == [] and len(second.messages) == 1


def test_4xx_to_some_recipients_keeps_them_for_the_next_host(
    world: MXWorld, start: StartServer
) -> None:
    """As Postfix (smtp_rcpt_fail): a host that takes the message for some
    recipients and says 4xx to others has them tried at the next host; each
    recipient gets the message once."""
    first, second = start(BUSY), start(OK)
    first.handler.refuse["later@failover.test"] = "451 4.7.1 greylisted"
    report = deliver(world, ["now@failover.test", "later@failover.test"])
    now, later = report.recipients["now@failover.test"], report.recipients["later@failover.test"]
    assert now.delivered and now.mx == "busy.failover.test"
    assert later.delivered and later.mx == "ok.failover.test"
    assert [m.rcpt_tos for m in first.messages] == [["now@failover.test"]]
    assert [m.rcpt_tos for m in second.messages] == [["later@failover.test"]]
    assert any("not for <later@failover.test> 451" in line for line in later.attempts)


def test_4xx_to_a_recipient_at_the_last_host_defers_with_its_own_reply(
    world: MXWorld, start: StartServer
) -> None:
    only = start(OK2)  # other.test's only MX
    only.handler.refuse["later@other.test"] = "451 4.7.1 greylisted"
    report = deliver(world, ["now@other.test", "later@other.test"])
    now, later = report.recipients["now@other.test"], report.recipients["later@other.test"]
    assert now.delivered
    assert (later.status, later.mx) == (DeliveryStatus.DEFERRED, "mx.other.test")
    assert later.reply is not None and later.reply.code == 451
    assert later.rcpt_reply is later.reply and "greylisted" in later.text
    assert [m.rcpt_tos for m in only.messages] == [["now@other.test"]]


def test_5xx_to_a_recipient_is_final(world: MXWorld, start: StartServer) -> None:
    first, second = start(BUSY), start(OK)
    first.handler.refuse["x@failover.test"] = "550 5.1.1 unknown user"
    report = deliver(world, ["x@failover.test"])
    outcome = report.recipients["x@failover.test"]
    assert outcome.is_permanent and outcome.mx == "busy.failover.test"
    assert second.raw == b""  # the next MX was never spoken to


def test_no_host_reachable_defers(world: MXWorld) -> None:
    report = deliver(world, ["x@failover.test"])
    outcome = report.recipients["x@failover.test"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert outcome.enhanced_status == "4.4.1"
    hosts = {a.split("[")[0] for a in outcome.attempts}
    assert hosts == {"down.failover.test", "busy.failover.test", "ok.failover.test"}


def test_a_file_is_left_as_given_to_be_given_again(world: MXWorld, start: StartServer) -> None:
    """Every attempt sends the bytes read once, before any: the file goes back
    where it was given, so that delivering it again, for the recipients
    deferred, sends it whole (it went empty, or without its header fields)."""
    f = io.BytesIO(b"skipped by the caller" + MESSAGE)
    f.seek(len(b"skipped by the caller"))
    report = smtpmail.deliver(
        f, SENDER, ["x@failover.test"], nameservers=world.nameservers, mta_sts=False
    )
    assert report.recipients["x@failover.test"].status is DeliveryStatus.DEFERRED
    assert f.tell() == len(b"skipped by the caller")
    ok = start(OK)
    again = smtpmail.deliver(
        f, SENDER, ["x@failover.test"], nameservers=world.nameservers, mta_sts=False
    )
    assert again.ok, again
    (got,) = ok.messages
    assert got.content == MESSAGE


# -- routing: domains, DNS outcomes -----------------------------------------------------


class Concurrency(Recorder):
    """Counts transactions in progress across servers; holds each one a moment."""

    lock = threading.Lock()
    now = 0
    peak = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            Concurrency.now += 1
            Concurrency.peak = max(Concurrency.peak, Concurrency.now)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.2)  # widen the window in which a second connection would show
        with self.lock:
            Concurrency.now -= 1
        return await super().handle_DATA(server, session, envelope)


RECIPIENTS = ["one@failover.test", "two@other.test", "three@implicit.test", "jörg@other.test"]


def _check_grouping(report: smtpmail.DeliveryReport, ok: RecordingServer, ok2: RecordingServer):
    assert report.ok, report
    assert list(report.recipients) == RECIPIENTS
    assert report.recipients["three@implicit.test"].mx == "implicit.test"  # implicit MX
    # One transaction per domain, each with only that domain's recipients.
    assert sorted(m.rcpt_tos for m in ok.messages) == [
        ["one@failover.test"],
        ["three@implicit.test"],
    ]
    assert [m.rcpt_tos for m in ok2.messages] == [["two@other.test", "jörg@other.test"]]
    assert "SMTPUTF8" in ok2.messages[0].mail_options


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_domains_are_grouped_and_connections_bounded(
    world: MXWorld, start: StartServer, mode: str
) -> None:
    Concurrency.now = Concurrency.peak = 0
    ok, ok2 = start(OK, Concurrency()), start(OK2, Concurrency())
    kw: dict[str, Any] = {"nameservers": world.nameservers, "mta_sts": False}
    if mode == "sync":
        report = smtpmail.deliver(MESSAGE, SENDER, RECIPIENTS, max_connections=1, **kw)
    else:
        report = asyncio.run(
            smtpmail.deliver_async(MESSAGE, SENDER, RECIPIENTS, max_connections=1, **kw)
        )
    _check_grouping(report, ok, ok2)
    assert Concurrency.peak == 1


def test_domains_in_parallel(world: MXWorld, start: StartServer) -> None:
    Concurrency.now = Concurrency.peak = 0
    ok, ok2 = start(OK, Concurrency()), start(OK2, Concurrency())
    report = deliver(world, RECIPIENTS, max_connections=3)
    _check_grouping(report, ok, ok2)
    assert Concurrency.peak <= 3


def test_idna_domain_is_looked_up_as_a_label(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    report = deliver(world, ["leser@bücher.test"])
    (outcome,) = report.recipients.values()
    assert outcome.delivered and outcome.domain == "xn--bcher-kva.test"
    assert ok.messages[0].rcpt_tos == ["leser@xn--bcher-kva.test"]


def test_dns_outcomes(world: MXWorld) -> None:
    report = deliver(
        world,
        ["a@nullmx.test", "b@nosuch.test", "c@deadhost.test", "d@example.invalid"],
    )
    null, nx, dead, refused = report.recipients.values()
    assert (null.status, null.enhanced_status) == (DeliveryStatus.FAILED, "5.1.10")
    assert "null MX" in null.text
    assert (nx.status, nx.enhanced_status) == (DeliveryStatus.FAILED, "5.1.2")
    # An MX without an address, a refusing DNS server: may be fixed, so later.
    assert dead.status is DeliveryStatus.DEFERRED and "nowhere.deadhost.test" in dead.text
    assert (refused.status, refused.enhanced_status) == (DeliveryStatus.DEFERRED, "4.4.3")
    assert all(o.mx is None and o.reply is None for o in (null, nx, refused))


def test_bad_input_fails_before_any_lookup(world: MXWorld) -> None:
    with pytest.raises(smtpmail.InvalidAddress):
        deliver(world, ["Name <x@failover.test>"])
    with pytest.raises(smtpmail.InvalidArgument):
        deliver(world, ["x@failover.test"], max_connections=0)
    with pytest.raises(smtpmail.InvalidArgument):
        deliver(world, ["x@failover.test"], ehlo_name="bad\r\nname")
    # A name server that is not an address and port (dnspython would send to it
    # for the whole lookup timeout, and defer as if DNS were down).
    for bad in ("dns.example", "127.0.0.1:53", ("127.0.0.1", 70000)):
        with pytest.raises(smtpmail.InvalidArgument, match="name server"):
            smtpmail.deliver(MESSAGE, SENDER, ["x@failover.test"], nameservers=[bad])
        with pytest.raises(smtpmail.InvalidArgument, match="name server"):
            Resolver([bad])


# -- MTA-STS ----------------------------------------------------------------------------


def sts(world: MXWorld, **kw: Any) -> MTASTS:
    return MTASTS(ca_file=world.ca_file, **kw)


def test_sts_enforce_defers_when_no_mx_is_listed(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    report = deliver(world, ["x@sts-unlisted.test"], mta_sts=sts(world))
    outcome = report.recipients["x@sts-unlisted.test"]
    assert outcome.status is DeliveryStatus.DEFERRED
    assert (outcome.mta_sts, outcome.enhanced_status) == ("enforce", "4.7.5")
    assert ok.raw == b""  # not a word to the unlisted host
    assert world.https.fetches["mta-sts.sts-unlisted.test"] == 1


def test_sts_testing_reports_but_delivers(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    report = deliver(world, ["x@sts-testing.test"], mta_sts=sts(world))
    outcome = report.recipients["x@sts-testing.test"]
    assert outcome.delivered and outcome.mta_sts == "testing"
    assert any("would be skipped" in a for a in outcome.attempts)
    assert len(ok.messages) == 1


def test_sts_enforce_never_falls_back_to_plain_text(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)  # listed by the policy, but offers no STARTTLS
    report = deliver(world, ["x@sts-plain.test"], mta_sts=sts(world))
    outcome = report.recipients["x@sts-plain.test"]
    assert outcome.status is DeliveryStatus.DEFERRED and outcome.mta_sts == "enforce"
    assert ok.messages == []
    # Without the policy the same host gets the message in clear text.
    assert deliver(world, ["x@sts-plain.test"], mta_sts=False).ok
    assert len(ok.messages) == 1


def test_sts_policy_is_cached_for_its_max_age(world: MXWorld, start: StartServer) -> None:
    start(OK)
    clock = [1000.0]
    policies = sts(world, cache=PolicyCache(clock=lambda: clock[0]))
    for _ in range(2):
        report = deliver(world, ["x@sts-unlisted.test"], mta_sts=policies)
        assert report.recipients["x@sts-unlisted.test"].mta_sts == "enforce"
    assert world.https.fetches["mta-sts.sts-unlisted.test"] == 1
    # The policy host disappears: the cached policy still applies (no downgrade).
    world.https.serve("sts-unlisted.test", "gone", status=404)
    report = deliver(world, ["x@sts-unlisted.test"], mta_sts=policies)
    assert report.recipients["x@sts-unlisted.test"].mta_sts == "enforce"
    assert world.https.fetches["mta-sts.sts-unlisted.test"] == 1
    # Past max_age the cache entry is gone; the failed fetch then means no policy.
    clock[0] += 86401
    report = deliver(world, ["x@sts-unlisted.test"], mta_sts=policies)
    assert report.recipients["x@sts-unlisted.test"].mta_sts is None
    assert report.ok
    assert world.https.fetches["mta-sts.sts-unlisted.test"] == 2


def test_sts_policy_served_wrongly_is_ignored(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    world.https.serve("sts-plain.test", "version: STSv1\nmode: enforce\n", kind="text/html")
    report = deliver(world, ["x@sts-plain.test"], mta_sts=sts(world))
    assert report.ok and report.recipients["x@sts-plain.test"].mta_sts is None
    assert len(ok.messages) == 1


def test_sts_policy_host_certificate_must_verify(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    untrusting = MTASTS()  # the system store does not know the test CA
    report = deliver(world, ["x@sts-unlisted.test"], mta_sts=untrusting)
    # The policy could not be fetched safely, so none applies.
    assert report.recipients["x@sts-unlisted.test"].mta_sts is None
    assert len(ok.messages) == 1


def test_sts_enforce_delivers_over_verified_tls(world: MXWorld, start: StartServer) -> None:
    server = start(TLS_GOOD, tls_context=world.server_tls("mx.sts-good.test"))
    report = deliver(
        world,
        ["x@sts-good.test"],
        mta_sts=sts(world),
        tls_options=TLSOptions(ca_file=world.ca_file),
    )
    outcome = report.recipients["x@sts-good.test"]
    assert outcome.delivered and outcome.mta_sts == "enforce", outcome
    assert outcome.tls is not None and outcome.tls.startswith("TLSv1.")
    assert b"STARTTLS" in server.commands()
    assert len(server.messages) == 1


def test_sts_enforce_refuses_a_certificate_that_does_not_verify(
    world: MXWorld, start: StartServer
) -> None:
    server = start(TLS_BAD, tls_context=world.server_tls("wrong-name.test"))
    report = deliver(
        world,
        ["x@sts-badcert.test"],
        mta_sts=sts(world),
        tls_options=TLSOptions(ca_file=world.ca_file),
    )
    outcome = report.recipients["x@sts-badcert.test"]
    assert outcome.status is DeliveryStatus.DEFERRED and outcome.mta_sts == "enforce"
    assert server.messages == []
    assert b"STARTTLS" in server.commands()  # it tried, and refused the certificate


def test_opportunistic_tls_is_used_without_verification(world: MXWorld, start: StartServer) -> None:
    server = start(TLS_BAD, tls_context=world.server_tls("wrong-name.test"))
    # No policy: an unverifiable certificate still encrypts (RFC 7435).
    report = deliver(world, ["x@sts-badcert.test"], mta_sts=False)
    assert report.ok, report
    outcome = report.recipients["x@sts-badcert.test"]
    assert outcome.tls is not None and outcome.attempts == ()
    assert b"STARTTLS" in server.commands()
    assert len(server.messages) == 1


def test_opportunistic_checks_a_given_ca_against_the_mx_host_name(
    world: MXWorld, start: StartServer, kind: str
) -> None:
    # tls_options (a private CA) without require_tls: the certificate is checked
    # against the MX host's name, as with require_tls, not against the address
    # connected to (which failed, then cost a second, unverified connection).
    server = start(TLS_GOOD, tls_context=world.server_tls("mx.sts-good.test"))
    kw: dict[str, Any] = {
        "nameservers": world.nameservers, "ehlo_name": "client.test", "mta_sts": False,
        "tls_options": TLSOptions(ca_file=world.ca_file),
    }  # fmt: skip
    rcpts = ["x@sts-good.test"]
    if kind == "sync":
        report = smtpmail.deliver(MESSAGE, SENDER, rcpts, **kw)
    else:
        report = asyncio.run(smtpmail.deliver_async(MESSAGE, SENDER, rcpts, **kw))
    outcome = report.recipients["x@sts-good.test"]
    assert outcome.delivered and outcome.tls is not None, outcome
    assert outcome.attempts == ()
    assert len([w for w in server.wire if w]) == 1
    assert len(server.messages) == 1


def test_opportunistic_relaxes_a_failed_certificate_check(
    world: MXWorld, start: StartServer
) -> None:
    server = start(TLS_BAD, tls_context=world.server_tls("wrong-name.test"))
    # Verification asked for but TLS not mandatory: retried on a new connection, unverified.
    report = deliver(
        world, ["x@sts-badcert.test"], mta_sts=False, tls_options=TLSOptions(ca_file=world.ca_file)
    )
    outcome = report.recipients["x@sts-badcert.test"]
    assert outcome.delivered and outcome.tls is not None
    assert "retrying without certificate checks" in outcome.attempts[0]
    clients = [bytes(w) for w in server.wire if w]
    assert len(clients) == 2 and all(b"STARTTLS" in c for c in clients)
    assert len(server.messages) == 1


def test_opportunistic_falls_back_to_plain_text_on_a_new_connection(
    world: MXWorld, start: StartServer
) -> None:
    # A server whose handshake fails for us whatever we check: it demands a client
    # certificate (TLS 1.2, so the refusal comes within the handshake).
    tls = world.server_tls("mx.sts-badcert.test")
    tls.maximum_version = ssl.TLSVersion.TLSv1_2
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_verify_locations(world.ca_file)
    server = start(TLS_BAD, tls_context=tls)
    report = deliver(world, ["x@sts-badcert.test"], mta_sts=False)
    outcome = report.recipients["x@sts-badcert.test"]
    assert outcome.delivered and outcome.tls is None
    assert "retrying without TLS" in outcome.attempts[0]
    clients = [bytes(w) for w in server.wire if w]
    assert len(clients) == 2
    assert b"STARTTLS" in clients[0] and b"STARTTLS" not in clients[1]
    assert len(server.messages) == 1


def test_sts_testing_reports_a_bad_certificate_and_delivers(
    world: MXWorld, start: StartServer
) -> None:
    policy = "version: STSv1\nmode: testing\nmx: mx.sts-testing.test\nmax_age: 600\n"
    world.https.serve("sts-testing.test", policy)
    server = start(OK, tls_context=world.server_tls("wrong-name.test"))
    report = deliver(
        world,
        ["x@sts-testing.test"],
        mta_sts=sts(world),
        tls_options=TLSOptions(ca_file=world.ca_file),
    )
    outcome = report.recipients["x@sts-testing.test"]
    assert outcome.delivered and outcome.mta_sts == "testing" and outcome.tls is not None
    assert (
        "certificate" in outcome.attempts[0] and "without certificate checks" in outcome.attempts[0]
    )
    assert len(server.messages) == 1


def test_required_tls_never_falls_back(world: MXWorld, start: StartServer) -> None:
    server = start(TLS_BAD, tls_context=world.server_tls("wrong-name.test"))
    plain = start(OK)
    report = deliver(
        world,
        ["x@sts-badcert.test", "y@sts-plain.test"],
        mta_sts=False,
        require_tls=True,
        tls_options=TLSOptions(ca_file=world.ca_file),
    )
    assert report.deferred == ["x@sts-badcert.test", "y@sts-plain.test"]
    assert server.messages == [] and plain.messages == []
    assert len([w for w in server.wire if w]) == 1  # no second, clear-text connection


def test_utf8_local_part_needs_an_mx_with_smtputf8(world: MXWorld, start: StartServer) -> None:
    ascii_only = start(OK2, enable_SMTPUTF8=False)
    report = deliver(world, ["jörg@other.test", "plain@other.test"])
    outcome = report.recipients["jörg@other.test"]
    # Refused before any byte of its transaction: the MX offers no SMTPUTF8 (RFC 6531 §3.2).
    assert (outcome.status, outcome.enhanced_status) == (DeliveryStatus.FAILED, "5.6.7")
    assert outcome.mx == "mx.other.test"
    # The ASCII recipient needs no SMTPUTF8: it goes in a transaction of its own.
    assert report.recipients["plain@other.test"].delivered
    assert [m.rcpt_tos for m in ascii_only.messages] == [["plain@other.test"]]
    assert not any("jörg".encode() in c for c in ascii_only.commands())


def test_utf8_headers_need_an_mx_with_smtputf8(world: MXWorld, start: StartServer) -> None:
    ascii_only = start(OK2, enable_SMTPUTF8=False)
    message = "From: jörg@other.test\r\nSubject: x\r\n\r\nhi\r\n".encode()
    report = smtpmail.deliver(
        message, SENDER, ["plain@other.test"], nameservers=world.nameservers, mta_sts=False
    )
    outcome = report.recipients["plain@other.test"]
    assert (outcome.status, outcome.enhanced_status) == (DeliveryStatus.FAILED, "5.6.7")
    assert ascii_only.messages == []


class HangsUpAfterData(Recorder):
    """Takes the message, then drops the connection before the reply (fault injection)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await super().handle_DATA(server, session, envelope)
        server.transport.abort()
        return "250 never sent"


def test_lost_reply_after_data_is_not_sent_again_elsewhere(
    world: MXWorld, start: StartServer
) -> None:
    first, second = start(BUSY, HangsUpAfterData()), start(OK)
    report = deliver(world, ["x@failover.test"])
    outcome = report.recipients["x@failover.test"]
    assert outcome.status is DeliveryStatus.DEFERRED and outcome.enhanced_status == "4.4.2"
    assert "may have been delivered" in outcome.text and outcome.mx == "busy.failover.test"
    assert len(first.messages) == 1
    assert second.raw == b""  # no second copy through the next MX


def test_message_refused_after_data(world: MXWorld, start: StartServer) -> None:
    first, second = start(BUSY), start(OK)
    first.handler.data_reply = "554 5.7.1 looks like spam"
    report = deliver(world, ["x@failover.test", "y@failover.test"])
    assert report.failed == ["x@failover.test", "y@failover.test"]
    assert report.recipients["y@failover.test"].enhanced_status == "5.7.1"
    assert second.raw == b""


@pytest.mark.parametrize("when", ["DATA", "end of data"])
def test_4xx_to_the_data_tries_the_next_host(
    world: MXWorld, start: StartServer, kind: str, when: str
) -> None:
    # RFC 5321 §5.1 (the hosts are tried "until a delivery attempt succeeds"), as
    # Postfix: a 4xx to DATA or to the end of data took nothing, so the next MX
    # host is tried at once instead of the domain being deferred.
    refusal = b"451 4.3.0 queue full, try later\r\n"
    if when == "DATA":  # greylisting at DATA, once every recipient is known
        script = [respond(stop_at=b"DATA"), send(refusal), respond()]
    else:
        script = plain(data_reply=refusal)
    second = start(OK)
    kw: dict[str, Any] = {"nameservers": world.nameservers, "ehlo_name": "client.test",
                          "mta_sts": False}  # fmt: skip
    rcpts = ["x@failover.test", "y@failover.test"]
    with ScriptedServer(script, host=world.ip(BUSY), port=25) as first:
        if kind == "sync":
            report = smtpmail.deliver(MESSAGE, SENDER, rcpts, **kw)
        else:
            report = asyncio.run(smtpmail.deliver_async(MESSAGE, SENDER, rcpts, **kw))
    assert report.delivered == rcpts, report
    assert all(o.mx == "ok.failover.test" for o in report.recipients.values())
    assert "451 4.3.0 queue full" in report.recipients["x@failover.test"].attempts[-1]
    assert len(first.connections) == 1
    assert [m.rcpt_tos for m in second.messages] == [rcpts]  # once, by the next host


def test_4xx_to_the_data_at_the_last_host_defers(world: MXWorld, start: StartServer) -> None:
    start(OK2, Recorder(data_reply="452 4.3.1 insufficient storage"))
    report = deliver(world, ["x@other.test"])  # its only MX
    outcome = report.recipients["x@other.test"]
    assert (outcome.status, outcome.code, outcome.enhanced_status) == (
        DeliveryStatus.DEFERRED, 452, "4.3.1",
    )  # fmt: skip
    assert outcome.mx == "mx.other.test" and "insufficient storage" in outcome.text


async def test_sts_enforce_async(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    report = await smtpmail.deliver_async(
        MESSAGE,
        SENDER,
        ["x@sts-unlisted.test", "y@sts-testing.test"],
        nameservers=world.nameservers,
        mta_sts=sts(world),
    )
    unlisted, testing = report.recipients.values()
    assert (unlisted.status, unlisted.mta_sts) == (DeliveryStatus.DEFERRED, "enforce")
    assert testing.delivered and testing.mta_sts == "testing"
    assert [m.rcpt_tos for m in ok.messages] == [["y@sts-testing.test"]]


def test_dns_timeout_defers(world: MXWorld) -> None:
    # A name server that never answers: a UDP socket nobody reads.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = Resolver([("127.0.0.1", silent.getsockname()[1])], timeout=0.3)
        report = smtpmail.deliver(
            MESSAGE, SENDER, ["x@failover.test"], resolver=resolver, mta_sts=False
        )
    outcome = report.recipients["x@failover.test"]
    assert (outcome.status, outcome.enhanced_status) == (DeliveryStatus.DEFERRED, "4.4.3")
    assert "Timeout" in outcome.text


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_requiretls_defers_when_the_network_cuts_the_handshake(world: MXWorld, kind: str) -> None:
    """REQUIRETLS (RFC 8689 §4.2.1) bounces a message no host can take over
    verified TLS (5.7.10); a connection lost under the handshake says nothing
    about the host's TLS: the message is deferred, as any lost connection."""
    hello = [expect(b"EHLO"), send(ehlo_reply([b"STARTTLS", b"REQUIRETLS"]))]
    script = [*hello, expect(b"STARTTLS"), send(b"220 go\r\n"), close()]
    kw: dict[str, Any] = {"nameservers": world.nameservers, "mta_sts": False,
                          "require_tls_extension": True}  # fmt: skip
    rcpts = ["x@sts-badcert.test"]
    with ScriptedServer(script, host=world.ip(TLS_BAD), port=25) as mx:
        if kind == "sync":
            report = smtpmail.deliver(MESSAGE, SENDER, rcpts, **kw)
        else:
            report = asyncio.run(smtpmail.deliver_async(MESSAGE, SENDER, rcpts, **kw))
    outcome = report.recipients["x@sts-badcert.test"]
    assert outcome.status is DeliveryStatus.DEFERRED, outcome
    assert "TLS handshake" in outcome.text
    assert len(mx.connections) >= 1 and mx.connections[0].data == []


class _SlowData(Recorder):
    """Takes a while over each end of data (the message is stored after the pause)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(1.0)
        return await super().handle_DATA(server, session, envelope)


async def test_deliver_async_lets_every_domain_finish_before_an_error_is_raised(
    world: MXWorld, start: StartServer
) -> None:
    # As deliver() does (its thread pool ends every job first): a domain whose
    # delivery raises (here the caller's transcript hook) is raised only once the
    # others have ended, never leaving them running unattended behind the error.
    slow = start(OK, _SlowData())
    start(OK2)

    def hook(who: str, line: str) -> None:
        if "other.test" in line:
            raise RuntimeError("the caller's hook failed")

    with pytest.raises(Exception, match="hook failed"):
        await deliver_async(world, ["x@failover.test", "y@other.test"], transcript=hook)
    assert [m.rcpt_tos for m in slow.messages] == [["x@failover.test"]]
