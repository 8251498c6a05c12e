"""deliver(), deliver_async() and the outbox's direct mode through a real SOCKS 5 proxy.

The DNS lookups (MX, addresses) stay local (dnsmasq, mxworld.py); every SMTP
connection goes through microsocks, which connects from its own egress
address: what each server sees as the peer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpmail
from smtpmail.delivery import DeliveryStatus
from smtpmail.outbox import Outbox, RetrySchedule, State, Worker
from support.delivery.mxworld import OK, OK2, MXWorld, StartServer
from support.proxies import (
    EGRESS,
    PASSWORD,
    USER,
    ProxyProcess,
    dante,
    microsocks,
    quote,
    running,
)
from support.servers import PeerRecorder

pytestmark = pytest.mark.timeout(60)

MESSAGE = b"From: a@sender.test\r\nSubject: direct\r\n\r\nHello MX.\r\n"
SENDER = "a@sender.test"


@pytest.fixture(scope="module")
def socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with running(microsocks(tmp_path_factory.mktemp("socks"))) as proxy:
        yield proxy


@pytest.mark.parametrize("use_async", [False, True])
async def test_deliver_through_a_socks5_proxy(
    world: MXWorld, start: StartServer, socks: ProxyProcess, use_async: bool
) -> None:
    """failover.test's first MX is down and its second says 421: the proxy
    reports the refused connection, and the flow moves on as without a proxy."""
    ok, other = start(OK, PeerRecorder()), start(OK2, PeerRecorder())
    kw = dict(
        nameservers=world.nameservers,
        mta_sts=False,
        ehlo_name="client.test",
        proxy=socks.url(USER, PASSWORD, "socks5"),
    )
    rcpts = ["x@failover.test", "y@other.test"]
    if use_async:
        report = await smtpmail.deliver_async(MESSAGE, SENDER, rcpts, **kw)  # type: ignore[arg-type]
    else:
        report = smtpmail.deliver(MESSAGE, SENDER, rcpts, **kw)  # type: ignore[arg-type]
    assert report.ok, report
    assert {r: o.status for r, o in report.recipients.items()} == {
        r: DeliveryStatus.DELIVERED for r in rcpts
    }
    for server in (ok, other):
        assert len(server.messages) == 1
        assert server.handler.peers == [EGRESS["microsocks"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("use_async", [False, True])
async def test_deliver_through_socks4_skips_the_ipv6_addresses(
    tmp_path: Path, world: MXWorld, start: StartServer, use_async: bool
) -> None:
    """SOCKS 4 carries IPv4 addresses only: an MX host's IPv6 addresses (tried
    first) are skipped, not a reason to bounce the message; an MX host with
    IPv6 addresses alone cannot be reached this way: deferred, not failed."""
    ok = start(OK, PeerRecorder())
    with running(dante(tmp_path)) as proxy:
        kw = dict(
            nameservers=world.nameservers,
            mta_sts=False,
            ehlo_name="client.test",
            proxy=proxy.url(scheme="socks4"),
        )
        rcpts = ["x@dual.test", "y@v6only.test"]
        if use_async:
            report = await smtpmail.deliver_async(MESSAGE, SENDER, rcpts, **kw)  # type: ignore[arg-type]
        else:
            report = smtpmail.deliver(MESSAGE, SENDER, rcpts, **kw)  # type: ignore[arg-type]
    dual, v6only = report.recipients.values()
    assert dual.delivered and dual.address == world.ip(OK), dual
    assert ok.handler.peers == [EGRESS["dante"]]  # type: ignore[attr-defined]
    assert v6only.status is DeliveryStatus.DEFERRED, v6only
    assert v6only.mx == "mx.v6only.test" and "IPv6" in v6only.text


def test_deliver_with_a_bad_proxy_url_fails_before_any_lookup(world: MXWorld) -> None:
    with pytest.raises(smtpmail.InvalidArgument, match="scheme") as caught:
        smtpmail.deliver(MESSAGE, SENDER, ["x@other.test"], proxy=f"ftp://u:{quote(PASSWORD)}@h:1")
    assert PASSWORD not in str(caught.value) and quote(PASSWORD) not in str(caught.value)


def test_deliver_through_a_dead_proxy_defers(tmp_path: Path, world: MXWorld) -> None:
    """Every connection fails, the MTA-STS policy fetch's too: deferred, nothing raised."""
    from smtpmail.delivery import MTASTS

    with running(microsocks(tmp_path)) as proxy:
        url = proxy.url(USER, PASSWORD)
    rcpts = ["y@other.test", "x@sts-good.test"]
    report = smtpmail.deliver(
        MESSAGE, SENDER, rcpts, nameservers=world.nameservers,
        mta_sts=MTASTS(ca_file=world.ca_file), ehlo_name="client.test", proxy=url,
    )  # fmt: skip
    for rcpt in rcpts:
        outcome = report.recipients[rcpt]
        assert outcome.status is DeliveryStatus.DEFERRED
        assert "cannot be reached" in outcome.text
    assert world.https.peers == []


def test_outbox_direct_through_a_proxy(
    tmp_path: Path, world: MXWorld, start: StartServer, socks: ProxyProcess
) -> None:
    other = start(OK2, PeerRecorder())
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    queued = box.add(MESSAGE, SENDER, ["y@other.test"])
    direct = {
        "nameservers": world.nameservers,
        "ehlo_name": "client.test",
        "mta_sts": False,
        "proxy": socks.url(USER, PASSWORD, "socks5h"),
    }
    assert Worker(box, direct=direct).run().delivered == 1
    assert box.load(queued.id).recipients[0].state is State.DELIVERED
    assert other.handler.peers == [EGRESS["microsocks"]]  # type: ignore[attr-defined]


def test_cli_send_direct_through_a_proxy(
    tmp_path: Path, world: MXWorld, start: StartServer, socks: ProxyProcess
) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env

    other = start(OK2, PeerRecorder())
    (address, port) = world.nameservers[0]
    argv = ["send", "--from", SENDER, "--to", "y@other.test", "--body", "x", "--direct",
            "--dns-server", f"{address}#{port}", "--no-mta-sts", "--ehlo-name", "client.test",
            "--proxy", socks.url(USER, PASSWORD, "socks5h")]  # fmt: skip
    env = fake_env(tmp_path, argv)
    assert main(env=env) == 0
    assert other.handler.peers == [EGRESS["microsocks"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("use_async", [False, True])
async def test_mta_sts_policy_is_fetched_through_the_proxy(
    world: MXWorld, start: StartServer, socks: ProxyProcess, use_async: bool
) -> None:
    """The HTTPS policy fetch is a connection of the delivery too: through the proxy."""
    from smtpmail.delivery import MTASTS
    from smtpmail.transport.tls import TLSOptions
    from support.delivery.mxworld import TLS_GOOD

    server = start(TLS_GOOD, PeerRecorder(), tls_context=world.server_tls("mx.sts-good.test"))
    kw = dict(
        nameservers=world.nameservers,
        ehlo_name="client.test",
        mta_sts=MTASTS(ca_file=world.ca_file),
        tls_options=TLSOptions(ca_file=world.ca_file),
        proxy=socks.url(USER, PASSWORD, "socks5h"),
    )
    deliver = smtpmail.deliver_async if use_async else smtpmail.deliver
    report = deliver(MESSAGE, SENDER, ["x@sts-good.test"], **kw)  # type: ignore[operator, arg-type]
    if use_async:
        report = await report  # type: ignore[misc]
    outcome = report.recipients["x@sts-good.test"]
    assert outcome.delivered and outcome.mta_sts == "enforce", outcome
    assert world.https.peers == [EGRESS["microsocks"]]
    assert server.handler.peers == [EGRESS["microsocks"]]  # type: ignore[attr-defined]
